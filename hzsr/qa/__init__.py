"""Registration and image quality of each capture, its verdict, and the curator's report.

``align`` and ``maps`` are HZSR's alignment and blending maps, torch-free (coarse W crop and
global shift, DIS flow both ways, warps; occlusion, defocus, flow uncertainty, rejection;
``docs/method.md``), which ``hzsr.baseline_model`` reuses; ``register`` runs them on one pair;
``quality`` measures sharpness, exposure and noise; ``capture_qa`` turns one capture's three
registrations and its metadata into a ``qa.csv`` row with a ``pass``/``warn``/``fail`` verdict
and reasons; ``check`` runs that over a session (``hzsr qa check``) and ``report`` writes its
self-contained ``report.html``; ``config`` holds every parameter with its default. See
``docs/qa.md``.
"""
