"""The simulated world and its optics, usable without any ADB.

``profiles`` holds the phone models, ``scene`` builds layered 3-D scenes textured with real
photographs, ``render`` images them through each camera and computes ground-truth flow, ``rig``
places the cameras, ``timing`` models phone clocks (drift and wander) and USB link profiles,
``sensor`` a camera HAL's frame stream, ``phase_align`` the phone's phase-alignment algorithm,
``syncboard`` renders the LED sync board (``hzsr.sync.board``) through a rolling shutter,
``defects`` the crew's bad shots, ``world`` is the one scene both virtual phones look at, and
``simsession`` writes whole session folders (``hzsr sim session``) without any phone.
``hzsr.vphone`` (the virtual phones) and later stages' tests build on it; it imports only ``core``
and the real sync board's spec (``hzsr.sync.board``).
"""
