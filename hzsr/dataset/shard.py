"""Write one shard crash-safely, and read a capture's metadata back from it.

A shard is written under a hidden temp name in ``shards/``, flushed, fsync'd, then renamed to
``shard-NNNNN.h5`` and the folder fsync'd; a reader therefore never sees a half-written shard
(HDF5 files are not crash-safe themselves). A pack killed mid-shard leaves only a temp file,
which the next pack deletes.
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hzsr.core.fileio import fsync_dir
from hzsr.dataset.codecs import CHUNK_HW, filter_kwargs, register_plugins
from hzsr.dataset.schema import (
    CAPTURE_STR_FIELDS,
    FORMAT,
    SCHEMA_VERSION,
    SLOTS,
    dumps,
    get_attrs,
    plain,
    put_attrs,
)
from hzsr.dataset.sources import CaptureSource, DatasetError, SessionSource

#: Test hook: SIGKILL this process right after it has written this many captures (counted per
#: process). Fires on an event, never a timer, so the crash test is deterministic.
KILL_ENV = "HZSR_DATASET_KILL_AFTER_CAPTURES"
_written_in_process = 0

TMP_PREFIX = ".tmp-"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def decode_jpeg(path: str | Path) -> np.ndarray:
    """Decode a JPEG as OpenCV does, as RGB uint8 (H, W, 3); an unreadable file is an error."""
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise DatasetError("image file not found", file=path)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError("cannot decode image", file=path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def array_sha256(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).data).hexdigest()


def _maybe_die() -> None:
    global _written_in_process
    _written_in_process += 1
    at = os.environ.get(KILL_ENV)
    if at and _written_in_process == int(at):
        os.kill(os.getpid(), signal.SIGKILL)


def _frame_attrs(fm: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in fm.items() if k not in ("intrinsics", "af_roi")}
    if fm.get("af_roi") is not None:
        out["af_roi"] = [int(v) for v in fm["af_roi"]]
    if fm.get("intrinsics") is not None:
        k = fm["intrinsics"]
        out["intrinsics"] = [float(k["fx"]), float(k["fy"]), float(k["cx"]), float(k["cy"])]
    return out


def write_capture(h5, src: CaptureSource, codec: str) -> None:
    """Write one capture's group: arrays (chunked, compressed, hashed) and typed attributes."""
    m = src.meta
    g = h5.require_group("captures").create_group(src.dataset_id)
    put_attrs(g, {k: m.get(k) for k in CAPTURE_STR_FIELDS})
    put_attrs(g, {"scene_tags": list(m["scene_tags"]), "trigger_host_ns": m.get("trigger_host_ns"),
                  "has_reference": bool(m["has_reference"]), "capture_json": src.capture_json})
    kw = filter_kwargs(codec)
    for slot in SLOTS:
        path = src.paths.get(slot)
        if path is None:
            continue
        arr = decode_jpeg(path)
        fm = m["frames"][slot]
        if arr.shape[:2] != (int(fm["height"]), int(fm["width"])):
            raise DatasetError(f"decodes to {arr.shape[1]}x{arr.shape[0]}, capture.json says "
                               f"{fm['width']}x{fm['height']}", file=path, field=f"frames.{slot}.width")
        chunks = (min(CHUNK_HW[0], arr.shape[0]), min(CHUNK_HW[1], arr.shape[1]), 3)
        d = g.create_dataset(slot, data=arr, chunks=chunks, **kw)
        put_attrs(d, _frame_attrs(fm))
        d.attrs["array_sha256"] = array_sha256(arr)
    for name in ("sync", "qa"):
        if m.get(name):
            put_attrs(g.create_group(name), m[name])
    _maybe_die()


def write_shard(path: str | Path, captures: list[CaptureSource], sessions: dict[str, SessionSource],
                codec: str) -> Path:
    """Write ``captures`` into a new shard at ``path`` atomically (temp, fsync, rename, fsync dir)."""
    import h5py

    register_plugins()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as h5:
            put_attrs(h5, {"format": FORMAT, "schema_version": SCHEMA_VERSION, "shard": path.name,
                           "compression": codec, "chunk": list(CHUNK_HW),
                           "captures": [c.dataset_id for c in captures]})
            for sid in sorted({c.session_id for c in captures}):
                put_attrs(h5.require_group("sessions").create_group(sid), sessions[sid].attrs)
            for c in captures:
                write_capture(h5, c, codec)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def read_meta(h5, capture_id: str, shard: str) -> dict[str, Any]:
    """The metadata of one capture, in the shape of ``CaptureSource.meta``."""
    g = h5["captures"][capture_id]
    a = get_attrs(g)
    meta: dict[str, Any] = {k: a.get(k) for k in CAPTURE_STR_FIELDS}
    meta["scene_tags"] = [str(t) for t in a.get("scene_tags", [])]
    meta["trigger_host_ns"] = a.get("trigger_host_ns")
    meta["has_reference"] = bool(a.get("has_reference", "ref_T" in g))
    frames = {}
    for slot in SLOTS:
        if slot not in g:
            continue
        fa = get_attrs(g[slot])
        fa.pop("array_sha256", None)
        if "intrinsics" in fa:
            fx, fy, cx, cy = fa["intrinsics"]
            fa["intrinsics"] = {"fx": fx, "fy": fy, "cx": cx, "cy": cy}
        if "af_roi" in fa:
            fa["af_roi"] = [int(v) for v in fa["af_roi"]]
        fa.setdefault("frame_number", None)
        frames[slot] = fa
    meta["frames"] = frames
    for name in ("sync", "qa"):
        meta[name] = get_attrs(g[name]) if name in g else None
    meta["shard"] = shard
    return meta


def shard_header(h5, path: Path) -> list[str]:
    """Check a shard's format and schema; return its capture ids in order."""
    a = h5.attrs
    if plain(a.get("format")) != FORMAT:
        raise DatasetError(f"not an hzsr shard (format {plain(a.get('format'))!r})", file=path, field="format")
    if plain(a.get("schema_version")) != SCHEMA_VERSION:
        raise DatasetError(f"unsupported schema {plain(a.get('schema_version'))}, expected {SCHEMA_VERSION}",
                           file=path, field="schema_version")
    return [str(x) for x in plain(a.get("captures", []))]


def session_attrs(h5, session_id: str) -> dict[str, Any]:
    return get_attrs(h5["sessions"][session_id])


__all__ = ["write_shard", "read_meta", "shard_header", "decode_jpeg", "array_sha256", "shard_name", "dumps"]
