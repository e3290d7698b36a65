"""Shared vocabulary for every stage: session/capture/frame records, errors, atomic I/O.

Nothing here imports torch, OpenCV or adbutils, so every stage can depend on it cheaply.
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
