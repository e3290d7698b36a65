"""The virtual rig: a scene and camera simulator, usable without any ADB.

``profiles`` holds the phone models, ``scene`` builds layered 3-D scenes textured with real
photographs, ``render`` images them through each camera and computes ground-truth flow, and
``simsession`` writes whole session folders (``hzsr sim session``).
"""
