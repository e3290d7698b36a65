"""hzsr: tooling for hybrid-zoom super-resolution data sets captured with a two-phone rig.

The data path is the folder layout::

    capture/  ->  session folder  ->  sync/  ->  qa/  ->  dataset/  ->  baseline_model/

``hzsr.core`` holds the shared vocabulary (records, errors, atomic I/O, the capture agent's protocol)
that every stage imports. Where no phones are plugged in, ``hzsr.vphone``'s virtual phones stand in
for them, looking at ``hzsr.sim``'s world; ``capture`` reaches them only over ADB.
"""

__version__ = "0.1.0"
