"""hzsr: tooling for hybrid-zoom super-resolution data sets captured with a two-phone rig.

The data path is the folder layout::

    capture/  ->  session folder  ->  sync/  ->  qa/  ->  dataset/  ->  baseline_model/

``hzsr.core`` holds the shared vocabulary (records, errors, atomic I/O) that every stage imports.
"""

__version__ = "0.1.0"
