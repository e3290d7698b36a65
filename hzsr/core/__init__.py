"""Shared vocabulary for every stage: session/capture/frame records and their validation, the
error hierarchy and exit codes, atomic I/O, the journal, the session lock, YAML configs, the W-crop
geometry, the clock-drift fit and proofs of which process is ours (``process``).

Nothing here imports torch or adbutils, and OpenCV only inside the function of ``validate`` that
decodes images, so every stage can depend on it cheaply.
"""

from hzsr.core.errors import ConfigError, HzsrError, SessionFormatError
from hzsr.core.fileio import atomic_write_bytes, atomic_write_json, sha256_file
from hzsr.core.journal import Journal
from hzsr.core.records import (
    SCHEMA_VERSION,
    CameraInfo,
    CaptureRecord,
    ClockSample,
    DeviceClock,
    DeviceInfo,
    FrameRecord,
    SessionRecord,
)

__all__ = [
    "SCHEMA_VERSION",
    "CameraInfo",
    "CaptureRecord",
    "ClockSample",
    "ConfigError",
    "DeviceClock",
    "DeviceInfo",
    "FrameRecord",
    "HzsrError",
    "Journal",
    "SessionFormatError",
    "SessionRecord",
    "atomic_write_bytes",
    "atomic_write_json",
    "sha256_file",
]
