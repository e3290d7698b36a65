"""The capture-agent protocol's definitions (``docs/agent-protocol.md``), in one place.

Three parties speak the protocol: the host (``hzsr.capture``), the virtual phones' agent
(``hzsr.vphone.agent``) and the checker of a real phone's agent (``hzsr rig conformance``,
``hzsr.capture.conformance``). Each imports its versions, names, fields and error codes from here,
so none of them can drift from the others. What an agent chooses for itself (its app version, the
shortest lead it can schedule, which it reports as ``min_lead_ns``) is the agent's, not the
protocol's, and stays with the agent.
"""

from __future__ import annotations

from typing import get_args

from hzsr.core.records import SyncType, TimestampSource

#: Version 2 adds 3A control (``set_3a``, ``get_3a``) and per-frame 3A metadata.
PROTOCOL_VERSION = 2
#: Versions the host can drive; a v1 agent works without 3A control.
SUPPORTED_VERSIONS = (1, 2)

# -- transport -------------------------------------------------------------------------------
#: The abstract UNIX socket the agent serves; adb reaches it as ``localabstract:hzsr_agent``.
AGENT_SOCKET = "hzsr_agent"
#: The agent may also listen on this TCP port on the phone's loopback.
AGENT_TCP_PORT = 38765
#: Where the agent writes captures: ``<AGENT_FILES>/<session>/<capture_id>/``.
AGENT_FILES = "/sdcard/Android/data/org.hzsr.agent/files"

#: Every ``error.code`` an agent may answer with (the table under "Transport").
ERROR_CODES = frozenset({"bad_json", "bad_request", "unknown_cmd", "target_in_past", "target_too_far", "exists",
                         "storage_full", "busy", "not_found", "io_error", "pending", "internal"})
#: The farthest ahead a ``capture`` target may be (``target_too_far`` beyond): a mistaken target an
#: hour ahead would otherwise hold the camera and the id until then. The host aims 0.3-1 s ahead.
MAX_LEAD_NS = 10_000_000_000

# -- messages --------------------------------------------------------------------------------
#: Fields of the ``hello`` reply.
HELLO_FIELDS = ("protocol_version", "agent_version", "model", "build", "serial", "sync_type", "frame_period_ns",
                "cameras")
#: Fields of each entry of ``hello.cameras``.
CAMERA_FIELDS = ("camera_id", "physical_id", "focal_length_mm", "f_number", "pixel_size_um", "width", "height",
                 "intrinsics", "timestamp_source")
#: ``hello.sync_type``: Camera2's LOGICAL_MULTI_CAMERA_SENSOR_SYNC_TYPE (as ``session.json`` records it).
SYNC_TYPES: tuple[str, ...] = get_args(SyncType)
#: ``timestamp_source``: Camera2's SENSOR_INFO_TIMESTAMP_SOURCE (only REALTIME is boot time).
TIMESTAMP_SOURCES: tuple[str, ...] = get_args(TimestampSource)
#: Fields of the ``status`` reply.
STATUS_FIELDS = ("boottime_ns", "frame_period_ns", "phase_ns", "pending", "storage_free_bytes")
#: Fields of the ``capture`` reply (sent at once, before the frame exists).
CAPTURE_ACK_FIELDS = ("capture_id", "frame_timestamp_ns", "frame_number", "dir")
#: Per-frame fields of ``meta.json``.
FRAME_FIELDS = ("file", "camera_id", "physical_id", "role", "sensor_timestamp_ns", "timestamp_source",
                "frame_number", "exposure_time_ns", "iso", "focus_distance_diopters", "focus_calibration",
                "af_state", "af_roi", "intrinsics", "width", "height", "sha256", "size_bytes")
#: Per-frame capture-result fields any agent may add to ``meta.json`` (optional in ``capture.json``):
#: SENSOR_ROLLING_SHUTTER_SKEW, first to last row, which the sync board's decoder needs.
FRAME_TIMING_FIELDS = ("rolling_shutter_skew_ns",)
#: Per-frame fields a v2 agent adds to ``meta.json`` (all optional in ``capture.json``).
FRAME_3A_FIELDS = ("ae_mode", "ae_state", "awb_mode", "awb_state", "wb_gains", "ccm", "f_number",
                   "focal_length_mm", "af_mode", "frame_duration_ns", "distortion")

#: Cameras the host asks each phone for: the reference phone's W is not part of a triplet.
CAMERAS_PER_ROLE = {"main": ["W", "T"], "reference": ["T"]}
