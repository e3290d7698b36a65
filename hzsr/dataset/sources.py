"""What goes into a shard: captures found in session folders, with their sync and QA rows.

A ``CaptureSource`` is plain data (paths, dicts), so it pickles to worker processes and dask
tasks. Its ``meta`` is exactly the dict ``ShardReader.meta`` returns for the packed capture, so a
round trip compares one to the other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hzsr.core.errors import DatasetError, SessionFormatError
from hzsr.core.records import CaptureRecord, SessionRecord, read_json
from hzsr.core.schema import to_plain
from hzsr.core.session import CaptureState, SessionPaths, captures
from hzsr.core.tables import QA_TABLE, SYNC_TABLE, Table
from hzsr.core.verdict import Verdict, worst
from hzsr.dataset.schema import SLOTS, scene_kind, table_row_attrs


@dataclass
class CaptureSource:
    """One capture to pack, with the metadata that will be stored beside its pixels."""

    dataset_id: str  # "<session_id>/<capture_id>"
    session_id: str
    paths: dict[str, str | None]  # slot -> JPEG path; None when the slot has no image (no reference phone)
    meta: dict[str, Any]  # what the reader returns as .meta (see hzsr.dataset.schema)
    capture_json: str = ""  # verbatim, for provenance
    raw_bytes: int = 0  # decoded size of all its arrays, for planning shards by size


@dataclass
class SessionSource:
    """Session-level metadata stored once per shard that holds any of its captures."""

    session_id: str
    attrs: dict[str, Any] = field(default_factory=dict)


def _read_table(table: Table, path: Path) -> dict[str, dict[str, Any]]:
    """Rows of a sync.csv / qa.csv as shard attributes, keyed by capture_id; a bad table is an error."""
    if not path.is_file():
        return {}
    try:
        df = table.read_frame(path)
    except SessionFormatError as exc:
        raise DatasetError(exc.message, file=exc.file, field=exc.field, unreadable=exc.unreadable) from None
    return {str(row["capture_id"]): table_row_attrs(row) for row in df.to_dict("records")}


def _summary(path: Path) -> str | None:
    if not path.is_file():
        return None
    return json.dumps(read_json(path), sort_keys=True)


def frame_meta(frame: dict[str, Any], session: SessionRecord | None) -> dict[str, Any]:
    """A frame's capture.json fields plus the camera and device facts from session.json."""
    out = dict(frame)
    dev = session.device_by_serial(frame["device"]) if session else None
    if dev is not None:
        for k in ("model", "build", "sync_type"):
            out[k] = getattr(dev, k)
        cam = next((c for c in dev.cameras if c.camera_id == frame.get("camera_id")
                    and c.role == frame.get("camera_role")), None)
        if cam is not None:
            for k in ("physical_id", "focal_length_mm", "f_number", "pixel_size_um"):
                if out.get(k) is None:  # the frame's own value (LENS_APERTURE, ...) wins over the camera's
                    out[k] = getattr(cam, k)
    return out


def _file_problem(capture_dir: Path, rec: CaptureRecord) -> str | None:
    """A missing or resized frame file (cheap to see before packing): the reason, else None."""
    for i, f in enumerate(rec.frames):
        p = capture_dir / f.file
        if not p.is_file():
            return f"{p}: frames[{i}].file: missing; capture not packed"
        if p.stat().st_size != f.size_bytes:
            return (f"{p}: frames[{i}].size_bytes: file has {p.stat().st_size} bytes, capture.json says "
                    f"{f.size_bytes}; capture not packed")
    return None


def session_sources(session_dir: str | Path) -> tuple[SessionSource, list[CaptureSource], list[str]]:
    """Every complete capture of a session folder; returns (session, captures, skipped reasons)."""
    root = Path(session_dir)
    if not root.is_dir():
        raise DatasetError("session folder not found", file=root, unreadable=True)
    paths = SessionPaths(root)
    session = SessionRecord.load(root)
    sid = session.session_id
    sync_rows = _read_table(SYNC_TABLE, paths.sync_csv)
    qa_rows = _read_table(QA_TABLE, paths.qa_csv)
    sess_attrs: dict[str, Any] = {
        "session_id": sid, "source": session.source, "created_utc": session.created_utc,
        "session_json": json.dumps(to_plain(session), sort_keys=True),
        "session_dir": str(root.resolve()),
        "sync_summary_json": _summary(root / "sync" / "summary.json"),
        "qa_summary_json": _summary(root / "qa" / "summary.json"),
    }
    caps: list[CaptureSource] = []
    skipped: list[str] = []
    for cap in captures(root):
        d = cap.dir
        if cap.state is not CaptureState.COMPLETE:
            skipped.append(f"{d}: {cap.state}: {cap.reason}; not packed")
            continue
        try:
            rec = CaptureRecord.load(d)
        except SessionFormatError as exc:
            skipped.append(exc.one_line())
            continue
        bad = _file_problem(d, rec)
        if bad:
            skipped.append(bad)
            continue
        caps.append(capture_source(root, session, rec, sync_rows.get(rec.capture_id), qa_rows.get(rec.capture_id)))
    return SessionSource(sid, sess_attrs), caps, skipped


def capture_source(root: Path, session: SessionRecord, rec: CaptureRecord, sync: dict | None,
                   qa: dict | None) -> CaptureSource:
    sid = session.session_id
    frames = {f.slot: frame_meta(to_plain(f), session) for f in rec.frames}
    paths = {s: (str(root / "captures" / rec.capture_id / frames[s]["file"]) if s in frames else None)
             for s in SLOTS}
    meta = {
        "capture_id": f"{sid}/{rec.capture_id}", "session_id": sid, "source_capture_id": rec.capture_id,
        "scene_id": rec.scene_id, "scene_kind": scene_kind(rec.scene_id, rec.scene_tags),
        "scene_tags": list(rec.scene_tags), "notes": rec.notes, "status": rec.status,
        "trigger_host_ns": rec.trigger_host_ns, "source": session.source,
        "has_reference": paths["ref_T"] is not None,
        "frames": frames, "sync": sync, "qa": qa,
    }
    raw = sum(int(f["width"]) * int(f["height"]) * 3 for f in frames.values())
    return CaptureSource(meta["capture_id"], sid, paths, meta, json.dumps(to_plain(rec), sort_keys=True), raw)


def combined_verdict(meta: dict[str, Any]) -> str | None:
    """The worst of the sync and QA verdicts (None when neither ran)."""
    v = worst(_verdict((meta.get(k) or {}).get("verdict")) for k in ("sync", "qa"))
    return None if v is None else v.value


def _verdict(v: Any) -> Verdict | None:
    """A stored verdict, or None where it is missing or not one (an older or foreign table)."""
    try:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else Verdict.parse(v)
    except SessionFormatError:
        return None
