"""Write one shard crash-safely, and read a capture's metadata back from it.

A shard is written under a hidden temp name in ``shards/``, flushed, fsync'd, then renamed to
``shard-NNNNN.h5`` and the folder fsync'd; a reader therefore never sees a half-written shard
(HDF5 files are not crash-safe themselves). A pack killed mid-shard leaves only a temp file,
which the next pack deletes.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hzsr.core.errors import DatasetError
from hzsr.core.fileio import commit_file
from hzsr.core.imageio import check_image_size
from hzsr.dataset.codecs import CHUNK_HW, chunk_shape, filter_kwargs, register_plugins
from hzsr.dataset.phash import phash
from hzsr.dataset.schema import (
    CAPTURE_STR_FIELDS,
    FORMAT,
    READABLE_SCHEMAS,
    SCHEMA_VERSION,
    SLOTS,
    dumps,
    get_attrs,
    plain,
    put_attrs,
)
from hzsr.dataset.sources import CaptureSource, SessionSource
from hzsr.dataset.truth_arrays import GROUP as TRUTH_GROUP
from hzsr.dataset.truth_arrays import write_truth

#: Test hook: SIGKILL this process right after it has written this many captures (counted per
#: process). Fires on an event, never a timer, so the crash test is deterministic.
KILL_ENV = "HZSR_DATASET_KILL_AFTER_CAPTURES"
_written_in_process = 0

TMP_PREFIX = ".tmp-"
#: The one frame whose pHash a capture stores (``phash_main_W``); the others' are not computed.
PHASH_SLOT = "main_W"
#: Captures decoded ahead of the one being written when there are decode threads. One is enough:
#: writing a capture takes longer than decoding the next on the other threads, and each frame
#: more in flight is 36 MB more memory that a process touches for the first time, dear on a VM
#: (docs/benchmarks.md, Pack, fourth pass).
AHEAD = 1


#: OpenCV >= 4.10 decodes straight to RGB (identical pixels to BGR + cvtColor; tests/dataset/test_pack_speed.py).
_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.h5"


def decode_jpeg(path: str | Path, expect_sha256: str | None = None) -> np.ndarray:
    """Decode a JPEG as OpenCV does, as RGB uint8 (H, W, 3); an unreadable file is an error.

    With ``expect_sha256`` (capture.json's ``sha256``, computed on the phone) the file's bytes are
    checked first, so a file damaged after capture is never packed as if it were good.
    """
    if not Path(path).is_file():
        raise DatasetError("image file not found", file=path, unreadable=True)
    check_image_size(path)  # size before decode (hzsr.core.imageio): a 400 MP header is refused, not decoded
    data = np.fromfile(str(path), dtype=np.uint8)
    if expect_sha256 is not None and hashlib.sha256(data.data).hexdigest() != expect_sha256:
        raise DatasetError("file changed since capture: its sha256 differs from capture.json's "
                           "(run `hzsr session validate`)", file=path, field="sha256")
    if _IMREAD_RGB is not None:  # libjpeg-turbo writes RGB itself: the same pixels, one 36 MB pass fewer
        img = cv2.imdecode(data, _IMREAD_RGB)
        if img is None:
            raise DatasetError("cannot decode image", file=path)
        return img
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


def _load_slot(path: str, expect_sha256: str | None = None, with_phash: bool = True
               ) -> tuple[np.ndarray, str, str | None]:
    """Decode, hash and (``with_phash``) pHash one frame (runs in a worker thread: OpenCV and hashlib drop the GIL)."""
    arr = decode_jpeg(path, expect_sha256)
    return arr, array_sha256(arr), phash(arr) if with_phash else None


def _sha(src: CaptureSource, slot: str) -> str | None:
    return (src.meta["frames"].get(slot) or {}).get("sha256")


#: One decoded frame: (RGB array, its array_sha256, its pHash or None).
Loaded = tuple[np.ndarray, str, str | None]


def write_capture(h5, src: CaptureSource, codec: str,
                  loaded: dict[str, Loaded | Future[Loaded]] | None = None) -> None:
    """Write one capture's group: arrays (chunked, compressed, hashed) and typed attributes.

    A frame of ``loaded`` may still be decoding (a ``Future``): it is waited for only when its
    array is written, so the writer starts on main_W while the other frames decode.
    """
    m = src.meta
    if loaded is None:
        loaded = {s: _load_slot(p, _sha(src, s), s == PHASH_SLOT) for s, p in src.paths.items() if p is not None}
    g = h5.require_group("captures").create_group(src.dataset_id)
    put_attrs(g, {k: m.get(k) for k in CAPTURE_STR_FIELDS})
    put_attrs(g, {"scene_tags": list(m["scene_tags"]), "trigger_host_ns": m.get("trigger_host_ns"),
                  "has_reference": bool(m["has_reference"]), "capture_json": src.capture_json})
    kw = filter_kwargs(codec)
    for slot in SLOTS:
        if slot not in loaded:
            continue
        frame = loaded[slot]
        arr, digest, ph = frame.result() if isinstance(frame, Future) else frame
        path = src.paths[slot]
        fm = m["frames"][slot]
        if fm.get("width") is None:  # ingested frames learn their size from the decoder
            fm["width"], fm["height"] = int(arr.shape[1]), int(arr.shape[0])
        if arr.shape[:2] != (int(fm["height"]), int(fm["width"])):
            raise DatasetError(f"decodes to {arr.shape[1]}x{arr.shape[0]}, capture.json says "
                               f"{fm['width']}x{fm['height']}", file=path, field=f"frames.{slot}.width")
        d = g.create_dataset(slot, data=arr, chunks=chunk_shape(*arr.shape[:2]), **kw)
        put_attrs(d, _frame_attrs(fm))
        d.attrs["array_sha256"] = digest
        if slot == PHASH_SLOT:
            g.attrs["phash_main_W"] = ph
    for name in ("sync", "qa"):
        if m.get(name):
            put_attrs(g.create_group(name), m[name])
    write_truth(g, src, codec)  # optional ground truth (pack --truth)
    _maybe_die()


def write_shard(path: str | Path, captures: list[CaptureSource], sessions: dict[str, SessionSource],
                codec: str, threads: int | None = None) -> Path:
    """Write ``captures`` into a new shard at ``path`` atomically (temp, fsync, rename, fsync dir).

    ``threads`` is the number of threads that work (default: up to 4, one per core). With one,
    each capture is decoded, hashed and written in turn on this thread: one core's worth, and on
    one core nothing gains from a second thread but switching. With more, ``threads`` decode, hash
    and pHash the next captures' JPEGs (cv2 and hashlib release the GIL) while this thread writes
    one; HDF5 chunks and checksums each array in C, and its tile-by-tile appends reach the disk in
    large ``O_DIRECT`` writes (``hzsr.core.directfile``: no page-cache copy, no writeback; the same
    file byte for byte). Freed frames are reused rather than mapped afresh (``hzsr.core.bulkio``).
    """
    import h5py

    from hzsr.core.bulkio import release_freed_buffers, reuse_freed_buffers, share_one_heap
    from hzsr.core.directfile import DirectAppendFile

    register_plugins()
    reuse_freed_buffers()
    threads = threads or max(1, min(4, os.cpu_count() or 1))
    if threads > 1:
        share_one_heap()  # frames decoded on pool threads, freed on this one, reused by the next decode
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{path.name}.{os.getpid()}"
    try:
        # Large direct writes rather than one page-cache write per tile (hzsr.core.directfile). No
        # chunk cache: every array is written whole, chunk by chunk, and caching them only copies (5 %).
        with DirectAppendFile(tmp) as raw, h5py.File(raw, "w", rdcc_nbytes=0) as h5:
            put_attrs(h5, {"format": FORMAT, "schema_version": SCHEMA_VERSION, "shard": path.name,
                           "compression": codec, "chunk": list(CHUNK_HW),
                           "captures": [c.dataset_id for c in captures]})
            for sid in sorted({c.session_id for c in captures}):
                put_attrs(h5.require_group("sessions").create_group(sid), sessions[sid].attrs)
            with closing(_loaded_captures(captures, threads)) as loads:  # an error stops the decoding at once
                for c, loaded in loads:
                    write_capture(h5, c, codec, loaded)
                    del loaded  # its frames go back to the heap before the next capture's decode
        commit_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        release_freed_buffers()
    return path


def _loaded_captures(captures: list[CaptureSource], threads: int
                     ) -> Iterator[tuple[CaptureSource, dict[str, Loaded | Future[Loaded]]]]:
    """Each capture with its frames decoded, hashed and pHashed, in order.

    One thread: in turn, on the caller's thread. More: a pool decodes ahead, at most ``AHEAD``
    captures beyond the one being written (bounded memory: ``AHEAD + 1`` triplets), and a capture
    is handed over with its frames still decoding (futures, in ``SLOTS`` order): the writer
    waits for each frame only when it writes it, not for the whole triplet. That shortens the
    pipeline's fill (the first capture's write starts after one frame's decode, not three) and
    lets a frame's write overlap its neighbours' decode.
    """
    if threads <= 1:
        for c in captures:
            yield c, {s: _load_slot(p, _sha(c, s), s == PHASH_SLOT) for s, p in c.paths.items() if p is not None}
        return
    with ThreadPoolExecutor(threads) as pool:

        def submit(c: CaptureSource) -> tuple[CaptureSource, dict[str, Future[Loaded]]]:
            return c, {s: pool.submit(_load_slot, c.paths[s], _sha(c, s), s == PHASH_SLOT)
                       for s in _slot_order(c)}

        todo = iter(captures)
        ahead = deque(submit(c) for c in itertools.islice(todo, AHEAD))
        current: dict[str, Future[Loaded]] = {}
        try:
            while ahead:
                c, current = ahead.popleft()
                nxt = next(todo, None)
                if nxt is not None:
                    ahead.append(submit(nxt))
                yield c, dict(current)
        finally:
            for futs in [current, *(f for _, f in ahead)]:  # an error or a kill: nothing more is decoded
                for f in futs.values():
                    f.cancel()


def _slot_order(c: CaptureSource) -> list[str]:
    """The capture's frames in the order ``write_capture`` writes them (``SLOTS``), then any other."""
    have = [s for s, p in c.paths.items() if p is not None]
    return [s for s in SLOTS if s in have] + [s for s in have if s not in SLOTS]


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
    meta["phash_main_W"] = a.get("phash_main_W")
    if TRUTH_GROUP in g:  # provenance of the optional truth arrays (hzsr/dataset/truth_arrays.py)
        meta["truth"] = get_attrs(g[TRUTH_GROUP])
    return meta


def shard_header(h5, path: Path) -> list[str]:
    """Check a shard's format and schema; return its capture ids in order."""
    a = h5.attrs
    if plain(a.get("format")) != FORMAT:
        raise DatasetError(f"not an hzsr shard (format {plain(a.get('format'))!r})", file=path, field="format")
    if plain(a.get("schema_version")) not in READABLE_SCHEMAS:
        raise DatasetError(f"unsupported schema {plain(a.get('schema_version'))}; this hzsr reads "
                           f"{', '.join(map(str, READABLE_SCHEMAS))} (update hzsr, or repack the sessions)",
                           file=path, field="schema_version")
    return [str(x) for x in plain(a.get("captures", []))]


def session_attrs(h5, session_id: str) -> dict[str, Any]:
    return get_attrs(h5["sessions"][session_id])


__all__ = ["write_shard", "read_meta", "shard_header", "decode_jpeg", "array_sha256", "shard_name", "dumps"]
