"""Typed records of the session folder: ``session.json`` and ``captures/<id>/capture.json``.

The field comments are the documentation (``docs/session-format.md`` mirrors them). Clock domains:
``*_ns`` sensor timestamps are in the phone's boot-time clock (CLOCK_BOOTTIME, Android
``elapsedRealtimeNanos``); ``host_ns`` values are the host's CLOCK_MONOTONIC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from hzsr.core.errors import SessionFormatError
from hzsr.core.fileio import atomic_write_json, read_text
from hzsr.core.schema import Problem, parse_dataclass, parse_or_raise, to_plain

#: Bumped on any incompatible change of session.json or capture.json.
SCHEMA_VERSION = 1

#: Upper bound of any clock reading in ns (boot-time or monotonic): about 31 years of uptime.
#: Larger values (1e30) are corrupt, and would lose all precision in float64 arithmetic.
MAX_CLOCK_NS = 10**18

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


R = TypeVar("R", bound="FolderRecord")


class FolderRecord:
    """A record kept as one JSON file (``FILE``) in its folder: load, save, schema version.

    ``session.json`` and ``capture.json`` follow the same rules, so they are written once here.
    """

    FILE: str = ""  # the file name inside the folder; set by each record

    def schema_problems(self) -> list[Problem]:
        """The one schema rule: ``schema_version`` is the version this code reads."""
        v = getattr(self, "schema_version", None)
        return [] if v == SCHEMA_VERSION else [Problem("schema_version", f"unsupported {v}, expected {SCHEMA_VERSION}")]

    @classmethod
    def load(cls: type[R], folder: str | Path) -> R:
        """Read ``<folder>/FILE``; a missing, unreadable or ill-typed file is a ``SessionFormatError``."""
        path = Path(folder) / cls.FILE
        return parse_or_raise(cls, read_json(path), file=str(path), error=SessionFormatError)

    def save(self, folder: str | Path) -> None:
        """Write ``<folder>/FILE`` atomically."""
        atomic_write_json(Path(folder) / self.FILE, to_plain(self))


def _find(items: list[Any], key: str, value: Any) -> Any:
    """The first item whose attribute ``key`` is ``value``; ``KeyError(value)`` if there is none."""
    found = next((x for x in items if getattr(x, key) == value), None)
    if found is None:
        raise KeyError(value)
    return found


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

    def check(self) -> list[Problem]:
        out = []
        if not 0 <= self.host_ns < MAX_CLOCK_NS:
            out.append(Problem("host_ns", f"outside 0 .. {MAX_CLOCK_NS:.0e} ns (about 31 years of uptime)"))
        if abs(self.offset_ns) >= MAX_CLOCK_NS:
            out.append(Problem("offset_ns", f"|offset| beyond {MAX_CLOCK_NS:.0e} ns"))
        if not 0 <= self.rtt_ns < 60 * 10**9:
            out.append(Problem("rtt_ns", "outside 0 .. 60 s"))
        return out


@dataclass
class ClockCalibration:
    """A phone's link asymmetry, measured optically (``hzsr sync calibrate``; docs/sync.md)."""

    offset_correction_ns: int  # subtracted from every SNTP offset estimate of this phone
    base_half_rtt_ns: int  # least error bound seen while calibrating: the link's symmetric part
    uncertainty_ns: int  # what the correction may leave (3 sigma of the calibration's residuals)
    source: str = ""  # the sync-board session(s) it came from, comma-separated
    calibrated_utc: str = ""  # when `hzsr sync calibrate` wrote it (ISO 8601, UTC)
    captures: int = 0  # decoded board captures it rests on


@dataclass
class DeviceClock:
    """Clock-sync results for one phone over a session."""

    samples: list[ClockSample] = field(default_factory=list)  # kept best-rtt sample per sync round; append-only
    drift_ppm: float | None = None  # fitted slope of offset over host time, parts per million
    drift_ppm_stderr: float | None = None  # standard error of that slope
    # Indices into samples where the phone's clock stepped (a jump): sample k starts segment
    # i + 1. Each segment is mapped on its own; the drift is fitted with one intercept per segment.
    segment_starts: list[int] = field(default_factory=list)

    calibration: ClockCalibration | None = None  # applied to the samples' offsets, when present

    def check(self) -> list[Problem]:
        n = len(self.samples)
        if any(not 0 < k < n for k in self.segment_starts) or self.segment_starts != sorted(set(self.segment_starts)):
            return [Problem("segment_starts", f"expected increasing sample indices in 1..{n - 1}")]
        return []


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
class SessionRecord(FolderRecord):
    """``session.json``: the rig, its clock sync and the config the session ran with."""

    FILE = "session.json"

    schema_version: int
    session_id: str
    created_utc: str  # ISO 8601
    source: str  # "adb" (real or virtual phones through adb), "sim" (renderer only), "ingest:<name>"
    host_clock: str = "CLOCK_MONOTONIC"
    devices: list[DeviceInfo] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # snapshot of the capture config

    def check(self) -> list[Problem]:
        out = self.schema_problems()
        roles = [d.role for d in self.devices]
        for role in set(roles):
            if roles.count(role) > 1:
                out.append(Problem("devices", f"two devices with role {role!r}"))
        serials = [d.serial for d in self.devices]
        if len(set(serials)) != len(serials):
            out.append(Problem("devices", "duplicate serial"))
        return out

    def device(self, role: DeviceRole) -> DeviceInfo:
        return _find(self.devices, "role", role)

    def device_by_serial(self, serial: str) -> DeviceInfo | None:
        return next((d for d in self.devices if d.serial == serial), None)



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
    rolling_shutter_skew_ns: int | None = None  # SENSOR_ROLLING_SHUTTER_SKEW: first to last row's exposure start
    # 3A metadata (agent protocol 2; absent from sessions of protocol-1 agents). Camera2 names.
    ae_mode: str | None = None  # CONTROL_AE_MODE: ON (auto, maybe locked) | OFF (manual)
    ae_state: str | None = None  # CONTROL_AE_STATE: CONVERGED | LOCKED | INACTIVE (manual) | ...
    awb_mode: str | None = None  # CONTROL_AWB_MODE: AUTO | OFF (manual gains)
    awb_state: str | None = None  # CONTROL_AWB_STATE: CONVERGED | LOCKED | INACTIVE | ...
    wb_gains: list[float] | None = None  # COLOR_CORRECTION_GAINS (R, G_even, G_odd, B)
    ccm: list[float] | None = None  # COLOR_CORRECTION_TRANSFORM, 3x3 row-major
    f_number: float | None = None  # LENS_APERTURE
    focal_length_mm: float | None = None  # LENS_FOCAL_LENGTH
    af_mode: str | None = None  # CONTROL_AF_MODE: AUTO (on af_roi) | OFF (fixed focus distance)
    frame_duration_ns: int | None = None  # SENSOR_FRAME_DURATION
    distortion: list[float] | None = None  # LENS_DISTORTION (k1, k2, k3, p1, p2), stored-image pixels

    def check(self) -> list[Problem]:
        out = []
        for name, n in (("wb_gains", 4), ("ccm", 9), ("distortion", 5)):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                out.append(Problem(name, f"expected {n} numbers, got {len(v)}"))
        if self.slot not in FRAME_SLOTS:
            out.append(Problem("slot", f"expected one of {FRAME_SLOTS}, got {self.slot!r}"))
        if not _is_sha256(self.sha256):
            out.append(Problem("sha256", "not a lowercase hex sha256"))
        if len(self.af_roi) != 4 or any(v < 0 for v in self.af_roi):
            out.append(Problem("af_roi", "expected [x, y, w, h] with non-negative values"))
        for name in ("width", "height", "exposure_time_ns", "iso", "size_bytes"):
            if getattr(self, name) <= 0:
                out.append(Problem(name, "must be > 0"))
        # Ranges no camera leaves: beyond them a value is corrupt, not unusual.
        for name, hi, what in (("sensor_timestamp_ns", MAX_CLOCK_NS, "about 31 years of uptime"),
                               ("exposure_time_ns", 600 * 10**9, "10 minutes"),
                               ("iso", 10**6, "ISO 1,000,000"),
                               ("width", 100_000, "100,000 px"), ("height", 100_000, "100,000 px"),
                               ("size_bytes", 2**40, "1 TiB"),
                               ("focus_distance_diopters", 1000.0, "1000 diopters (1 mm)")):
            if getattr(self, name) > hi:
                out.append(Problem(name, f"{getattr(self, name):.4g} is beyond {what}"))
        if self.sensor_timestamp_ns < 0:
            out.append(Problem("sensor_timestamp_ns", "must be >= 0 (boot-time ns)"))
        if self.rolling_shutter_skew_ns is not None and not 0 <= self.rolling_shutter_skew_ns <= 10**9:
            out.append(Problem("rolling_shutter_skew_ns", "must be in 0 .. 1e9 ns (1 s)"))
        if self.frame_number is not None and not 0 <= self.frame_number < 2**63:
            out.append(Problem("frame_number", "must be in 0 .. 2^63"))
        if self.focus_distance_diopters < 0:
            out.append(Problem("focus_distance_diopters", "must be >= 0"))
        if "/" in self.file or "\\" in self.file or self.file.startswith("."):
            out.append(Problem("file", "must be a plain file name inside the capture folder"))
        return out


@dataclass
class TriggerSample:
    """The clock sample that set one phone's trigger target (``hzsr capture run``; docs/sync.md)."""

    role: DeviceRole
    sample_indices: list[int]  # the samples the target was mapped with (DeviceClock.samples in session.json)
    bound_ns: int  # the offset's bound at the target instant, from those samples
    floor_ns: int  # the link's floor then (least rtt/2); tight: the fresh sample's rtt/2 <= factor floor + slack
    loose: bool  # still loose after the extra rounds: the capture fails (trigger_from_loose_sample)
    rounds: int = 1  # quick rounds taken before the trigger


@dataclass
class CaptureRecord(FolderRecord):
    """``capture.json``: one synchronized triplet."""

    FILE = "capture.json"

    schema_version: int
    capture_id: str
    scene_id: str
    frames: list[FrameRecord]
    scene_tags: list[str] = field(default_factory=list)
    notes: str = ""  # crew notes
    status: CaptureStatus = "complete"
    trigger_host_ns: int | None = None  # host CLOCK_MONOTONIC instant the capture was aimed at
    trigger_samples: list[TriggerSample] = field(default_factory=list)  # per phone, what set its target

    def check(self) -> list[Problem]:
        out = self.schema_problems()
        if self.trigger_host_ns is not None and not 0 <= self.trigger_host_ns < MAX_CLOCK_NS:
            out.append(Problem("trigger_host_ns", f"outside 0 .. {MAX_CLOCK_NS:.0e} ns"))
        slots = [f.slot for f in self.frames]
        for s in FRAME_SLOTS:
            if slots.count(s) != 1 and self.status == "complete":
                out.append(Problem("frames", f"expected exactly one {s} frame, found {slots.count(s)}"))
        return out

    def frame(self, slot: str) -> FrameRecord:
        return _find(self.frames, "slot", slot)


def read_json(path: str | Path) -> Any:
    """Read JSON; a missing or broken file is a one-line, ``unreadable`` ``SessionFormatError``.

    Broken includes not UTF-8, nested deeper than the parser's recursion limit, and integers with
    more digits than Python converts (``sys.get_int_max_str_digits``).
    """
    path = Path(path)
    return parse_json_text(read_text(path, SessionFormatError), path)


def parse_json_text(text: str, path: str | Path | None = None) -> Any:
    """``json.loads`` whose every failure is a ``SessionFormatError`` (``unreadable``)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SessionFormatError(f"invalid JSON: {exc.msg}", file=path, field=f"line {exc.lineno}",
                                 unreadable=True) from None
    except RecursionError:
        raise SessionFormatError("invalid JSON: nested too deeply", file=path, unreadable=True) from None
    except ValueError as exc:  # an integer of more than 4300 digits
        raise SessionFormatError(f"invalid JSON: {exc}", file=path, unreadable=True) from None


def parse_record(cls: type, data: Any) -> tuple[Any, list[Problem]]:
    """Like ``parse_dataclass``, exported for validators that report every problem."""
    return parse_dataclass(cls, data)
