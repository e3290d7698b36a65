"""Constants of the capture-agent protocol (``docs/agent-protocol.md``), shared by the host side
and the virtual phones so that neither can drift from the other."""

PROTOCOL_VERSION = 1
#: The abstract UNIX socket the agent serves; adb reaches it as ``localabstract:hzsr_agent``.
AGENT_SOCKET = "hzsr_agent"
#: The agent may also listen on this TCP port on the phone's loopback.
AGENT_TCP_PORT = 38765
#: Where the agent writes captures: ``<AGENT_FILES>/<session>/<capture_id>/``.
AGENT_FILES = "/sdcard/Android/data/org.hzsr.agent/files"
#: Cameras the host asks each phone for: the reference phone's W is not part of a triplet.
CAMERAS_PER_ROLE = {"main": ["W", "T"], "reference": ["T"]}
