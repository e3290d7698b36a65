"""Constants of the capture-agent protocol (``docs/agent-protocol.md``), shared by the host side
and the virtual phones so that neither can drift from the other."""

#: Version 2 adds 3A control (``set_3a``, ``get_3a``) and per-frame 3A metadata.
PROTOCOL_VERSION = 2
#: Versions the host can drive; a v1 agent works without 3A control.
SUPPORTED_VERSIONS = (1, 2)
#: Per-frame fields a v2 agent adds to ``meta.json`` (all optional in ``capture.json``).
FRAME_3A_FIELDS = ("ae_mode", "ae_state", "awb_mode", "awb_state", "wb_gains", "ccm", "f_number",
                   "focal_length_mm", "af_mode", "frame_duration_ns", "distortion")
#: The abstract UNIX socket the agent serves; adb reaches it as ``localabstract:hzsr_agent``.
AGENT_SOCKET = "hzsr_agent"
#: The agent may also listen on this TCP port on the phone's loopback.
AGENT_TCP_PORT = 38765
#: Where the agent writes captures: ``<AGENT_FILES>/<session>/<capture_id>/``.
AGENT_FILES = "/sdcard/Android/data/org.hzsr.agent/files"
#: Cameras the host asks each phone for: the reference phone's W is not part of a triplet.
CAMERAS_PER_ROLE = {"main": ["W", "T"], "reference": ["T"]}
