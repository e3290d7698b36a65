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

import pandas as pd

from hzsr.core.errors import DatasetError, SessionFormatError
from hzsr.core.records import CaptureRecord, SessionRecord, read_json
from hzsr.core.schema import to_plain
from hzsr.dataset.schema import SLOTS, scene_kind, table_row_attrs

VERDICT_RANK = {"pass": 0, "warn": 1, "fail": 2}


def norm_verdict(v: Any) -> str | None:
    """Verdicts as pass/warn/fail (sessions checked by an older ``sync check`` say ``ok`` for pass)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    v = str(v).strip().lower()
    return {"ok": "pass", "pass": "pass", "warn": "warn", "fail": "fail"}.get(v, v)


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


def _read_table(path: Path) -> dict[str, dict[str, Any]]:
    """Rows of a sync.csv / qa.csv keyed by capture_id; an unreadable table is an error."""
    if not path.is_file():
        return {}
    try:
        df = pd.read_csv(path, keep_default_na=True)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read: {exc}", file=path, unreadable=True) from None
    if "capture_id" not in df.columns:
        raise DatasetError("missing column", file=path, field="capture_id")
    out = {}
    for row in df.to_dict("records"):
        out[str(row["capture_id"])] = table_row_attrs(row)
    return out


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
    session = SessionRecord.load(root)
    sid = session.session_id
    sync_rows = _read_table(root / "sync" / "sync.csv")
    qa_rows = _read_table(root / "qa" / "qa.csv")
    sess_attrs: dict[str, Any] = {
        "session_id": sid, "source": session.source, "created_utc": session.created_utc,
        "session_json": json.dumps(to_plain(session), sort_keys=True),
        "session_dir": str(root.resolve()),
        "sync_summary_json": _summary(root / "sync" / "summary.json"),
        "qa_summary_json": _summary(root / "qa" / "summary.json"),
    }
    caps: list[CaptureSource] = []
    skipped: list[str] = []
    cap_root = root / "captures"
    for d in sorted(p for p in cap_root.iterdir() if p.is_dir()) if cap_root.is_dir() else []:
        try:
            rec = CaptureRecord.load(d)
        except SessionFormatError as exc:
            skipped.append(exc.one_line())
            continue
        if rec.status != "complete":
            skipped.append(f"{d / 'capture.json'}: status: {rec.status}, not packed")
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
    vs = [norm_verdict((meta.get(k) or {}).get("verdict")) for k in ("sync", "qa")]
    vs = [v for v in vs if v in VERDICT_RANK]
    return max(vs, key=VERDICT_RANK.__getitem__) if vs else None
