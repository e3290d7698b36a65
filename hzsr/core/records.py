"""Typed records of the session folder: ``session.json`` and ``captures/<id>/capture.json``.

The field comments are the documentation (``docs/session-format.md`` mirrors them). Clock domains:
``*_ns`` sensor timestamps are in the phone's boot-time clock (CLOCK_BOOTTIME, Android
``elapsedRealtimeNanos``); ``host_ns`` values are the host's CLOCK_MONOTONIC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hzsr.core.errors import SessionFormatError
from hzsr.core.fileio import atomic_write_json
from hzsr.core.schema import Problem, parse_dataclass, parse_or_raise, to_plain

#: Bumped on any incompatible change of session.json or capture.json.
SCHEMA_VERSION = 1

#: The three frames of a training triplet, named after where they come from: the phone's role on
#: the rig and the camera. main_W is the source, main_T the target, ref_T the reference.
SLOT_SOURCES = {"main_W": ("main", "W"), "main_T": ("main", "T"), "ref_T": ("reference", "T")}
FRAME_SLOTS = tuple(SLOT_SOURCES)

TimestampSource = Literal["REALTIME", "UNKNOWN"]
SyncType = Literal["APPROXIMATE", "CALIBRATED"]
CameraRole = Literal["W", "T"]
DeviceRole = Literal["main", "reference"]
FocusCalibration = Literal["UNCALIBRATED", "APPROXIMATE", "CALIBRATED"]
AfState = Literal[
    "INACTIVE",
    "PASSIVE_SCAN",
    "PASSIVE_FOCUSED",
    "ACTIVE_SCAN",
    "FOCUSED_LOCKED",
    "NOT_FOCUSED_LOCKED",
    "PASSIVE_UNFOCUSED",
]
CaptureStatus = Literal["complete", "incomplete", "discarded"]


def _is_sha256(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)


@dataclass
class Intrinsics:
    """Pinhole intrinsics in pixels of the stored image: ``u = fx * X / Z + cx``."""

    fx: float
    fy: float
    cx: float
    cy: float

    def check(self) -> list[Problem]:
        return [Problem(n, "must be > 0") for n in ("fx", "fy") if getattr(self, n) <= 0]


@dataclass
class CameraInfo:
    """One physical camera of a phone, as the agent's ``hello`` reports it."""

    camera_id: str  # Camera2 id the agent opens (logical or physical)
    role: CameraRole  # W (wide, 1x) or T (tele)
    physical_id: str  # Camera2 physical camera id behind the logical multi-camera
    focal_length_mm: float
    f_number: float
    pixel_size_um: float
    width: int  # full sensor output used for captures, pixels
    height: int
    intrinsics: Intrinsics
    timestamp_source: TimestampSource  # SENSOR_INFO_TIMESTAMP_SOURCE; UNKNOWN defeats sub-ms sync


@dataclass
class ClockSample:
    """One kept SNTP-style exchange: the phone clock minus the host clock at ``host_ns``."""

    host_ns: int  # host CLOCK_MONOTONIC at the middle of the exchange
    offset_ns: int  # phone_boottime - host_monotonic
    rtt_ns: int  # round trip minus the phone's turnaround; rtt/2 bounds the offset error


@dataclass
class ClockCalibration:
    """A phone's link asymmetry, measured optically (``hzsr sync calibrate``; docs/sync.md)."""

    offset_correction_ns: int  # subtracted from every SNTP offset estimate of this phone
    base_half_rtt_ns: int  # least error bound seen while calibrating: the link's symmetric part
    uncertainty_ns: int  # what the correction may leave (3 sigma of the calibration's residuals)
    source: str = ""  # the sync-board session it came from


@dataclass
class DeviceClock:
    """Clock-sync results for one phone over a session."""

    samples: list[ClockSample] = field(default_factory=list)  # kept best-rtt sample per sync round
    drift_ppm: float | None = None  # fitted slope of offset over host time, parts per million
    drift_ppm_stderr: float | None = None  # standard error of that slope
    calibration: ClockCalibration | None = None  # applied to the samples' offsets, when present


@dataclass
class DeviceInfo:
    """One phone of the rig."""

    serial: str  # adb serial
    role: DeviceRole  # main (W source + T target) or reference (T reference)
    model: str  # ro.product.model
    build: str  # ro.build.fingerprint
    agent_version: str  # capture agent version from hello
    sync_type: SyncType  # logical multi-camera sensor sync type
    cameras: list[CameraInfo] = field(default_factory=list)
    clock: DeviceClock = field(default_factory=DeviceClock)


@dataclass
class SessionRecord:
    """``session.json``: the rig, its clock sync and the config the session ran with."""

    schema_version: int
    session_id: str
    created_utc: str  # ISO 8601
    source: str  # "adb" (real or virtual phones through adb), "sim" (renderer only), "ingest:<name>"
    host_clock: str = "CLOCK_MONOTONIC"
    devices: list[DeviceInfo] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # snapshot of the capture config

    def check(self) -> list[Problem]:
        out = []
        if self.schema_version != SCHEMA_VERSION:
            out.append(Problem("schema_version", f"unsupported {self.schema_version}, expected {SCHEMA_VERSION}"))
        roles = [d.role for d in self.devices]
        for role in set(roles):
            if roles.count(role) > 1:
                out.append(Problem("devices", f"two devices with role {role!r}"))
        serials = [d.serial for d in self.devices]
        if len(set(serials)) != len(serials):
            out.append(Problem("devices", "duplicate serial"))
        return out

    def device(self, role: DeviceRole) -> DeviceInfo:
        for d in self.devices:
            if d.role == role:
                return d
        raise KeyError(role)

    def device_by_serial(self, serial: str) -> DeviceInfo | None:
        return next((d for d in self.devices if d.serial == serial), None)

    # -- I/O -------------------------------------------------------------------------------
    @classmethod
    def load(cls, session_dir: str | Path) -> SessionRecord:
        path = Path(session_dir) / "session.json"
        return parse_or_raise(cls, read_json(path), file=str(path), error=SessionFormatError)

    def save(self, session_dir: str | Path) -> None:
        atomic_write_json(Path(session_dir) / "session.json", to_plain(self))


@dataclass
class FrameRecord:
    """One image of a capture, with everything the phone said about it."""

    slot: str  # main_W (source), main_T (target) or ref_T (reference)
    file: str  # file name inside the capture folder
    device: str  # adb serial of the phone that took it
    role: DeviceRole
    camera_role: CameraRole
    camera_id: str
    sensor_timestamp_ns: int  # SENSOR_TIMESTAMP: start of exposure, in the phone's clock
    timestamp_source: TimestampSource
    exposure_time_ns: int
    iso: int
    focus_distance_diopters: float  # LENS_FOCUS_DISTANCE; 0 = infinity
    focus_calibration: FocusCalibration  # LENS_INFO_FOCUS_DISTANCE_CALIBRATION
    af_state: AfState
    af_roi: list[int]  # [x, y, w, h] in image pixels
    intrinsics: Intrinsics
    width: int
    height: int
    sha256: str  # of the file, as computed on the phone
    size_bytes: int
    frame_number: int | None = None  # the agent's stream frame counter, if it has one

    def check(self) -> list[Problem]:
        out = []
        if self.slot not in FRAME_SLOTS:
            out.append(Problem("slot", f"expected one of {FRAME_SLOTS}, got {self.slot!r}"))
        if not _is_sha256(self.sha256):
            out.append(Problem("sha256", "not a lowercase hex sha256"))
        if len(self.af_roi) != 4 or any(v < 0 for v in self.af_roi):
            out.append(Problem("af_roi", "expected [x, y, w, h] with non-negative values"))
        for name in ("width", "height", "exposure_time_ns", "iso", "size_bytes"):
            if getattr(self, name) <= 0:
                out.append(Problem(name, "must be > 0"))
        if self.focus_distance_diopters < 0:
            out.append(Problem("focus_distance_diopters", "must be >= 0"))
        if "/" in self.file or "\\" in self.file or self.file.startswith("."):
            out.append(Problem("file", "must be a plain file name inside the capture folder"))
        return out


@dataclass
class CaptureRecord:
    """``capture.json``: one synchronized triplet."""

    schema_version: int
    capture_id: str
    scene_id: str
    frames: list[FrameRecord]
    scene_tags: list[str] = field(default_factory=list)
    notes: str = ""  # crew notes
    status: CaptureStatus = "complete"
    trigger_host_ns: int | None = None  # host CLOCK_MONOTONIC instant the capture was aimed at

    def check(self) -> list[Problem]:
        out = []
        if self.schema_version != SCHEMA_VERSION:
            out.append(Problem("schema_version", f"unsupported {self.schema_version}, expected {SCHEMA_VERSION}"))
        slots = [f.slot for f in self.frames]
        for s in FRAME_SLOTS:
            if slots.count(s) != 1 and self.status == "complete":
                out.append(Problem("frames", f"expected exactly one {s} frame, found {slots.count(s)}"))
        return out

    def frame(self, slot: str) -> FrameRecord:
        for f in self.frames:
            if f.slot == slot:
                return f
        raise KeyError(slot)

    @classmethod
    def load(cls, capture_dir: str | Path) -> CaptureRecord:
        path = Path(capture_dir) / "capture.json"
        return parse_or_raise(cls, read_json(path), file=str(path), error=SessionFormatError)

    def save(self, capture_dir: str | Path) -> None:
        atomic_write_json(Path(capture_dir) / "capture.json", to_plain(self))


def read_json(path: str | Path) -> Any:
    """Read JSON; a missing or broken file is a one-line ``SessionFormatError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SessionFormatError("file not found", file=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SessionFormatError(f"cannot read: {exc}", file=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SessionFormatError(f"invalid JSON: {exc.msg}", file=path, field=f"line {exc.lineno}") from None


def parse_record(cls: type, data: Any) -> tuple[Any, list[Problem]]:
    """Like ``parse_dataclass``, exported for validators that report every problem."""
    return parse_dataclass(cls, data)
