"""One capture of ``hzsr qa check``, in its own worker process or in the caller's.

The worker's side of ``hzsr.qa.check``: analyse a capture, write its maps and thumbnails, return
the row. Kept apart from ``hzsr.qa.check`` (which imports pandas for the CSV and the summary) so
that the fork server preloads only what a worker needs (``_mp_context``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hzsr.core.bulkio import reuse_freed_buffers
from hzsr.qa.capture_qa import CaptureQA, analyse_capture
from hzsr.qa.forkserver import qa_context


def _encode(img: np.ndarray, ext: str, quality: int = 85) -> bytes:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"cannot encode {ext}")
    return buf.tobytes()


def overlay(base_rgb: np.ndarray, maps: dict[str, np.ndarray]) -> np.ndarray:
    """A grey version of ``base_rgb`` with occlusion in red, rejection in green, defocus in blue."""
    g = cv2.cvtColor(base_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) * 0.55
    out = np.stack([g, g, g], -1)
    h, w = g.shape
    for ch, key in ((0, "occlusion"), (1, "reject"), (2, "defocus")):
        m = maps.get(key)
        if m is not None:
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            out[..., ch] += m * (200.0 / 255.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def _write_derived(path: Path, data: bytes) -> None:
    """Atomic (temp file + rename) but not fsync'd: maps are derived and a rerun remakes them, and
    twenty fsyncs per capture would cost more than the QA itself on slow disks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_images(q: CaptureQA, maps_dir: Path) -> dict[str, bytes]:
    """Write ``q``'s maps and thumbnails; return the report's thumbnails as JPEG bytes."""
    d = maps_dir / q.capture_id
    thumbs: dict[str, bytes] = {}
    for name, img in q.images.items():
        if name.startswith("map_"):
            _write_derived(d / f"{name[4:]}.png", _encode(img, ".png"))
        else:
            data = _encode(img, ".jpg")
            _write_derived(d / f"{name[4:]}.jpg", data)
    small = {k: v for k, v in q.images.items() if k in ("img_main_W_crop", "img_main_T", "img_ref_T")}
    for k, v in small.items():
        thumbs[k[4:]] = _encode(_thumb(v, 240), ".jpg", 80)
    for pair in ("wt", "wr"):
        base = q.images.get("img_main_W_crop")
        if base is None:
            continue
        maps = {k.split("_", 2)[2]: v for k, v in q.images.items() if k.startswith(f"map_{pair}_")}
        if maps:
            ov = overlay(base, maps)
            _write_derived(d / f"{pair}_overlay.jpg", _encode(ov, ".jpg"))
            thumbs[f"{pair}_overlay"] = _encode(_thumb(ov, 240), ".jpg", 80)
    return thumbs


def _thumb(img: np.ndarray, n: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(1.0, n / max(h, w))
    return img if s >= 1 else cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _work(args: tuple) -> tuple[dict[str, Any], list[tuple[str, str, str]], dict]:
    """One capture, in a worker process: analyse, write its maps, return the row and thumbnails.

    ``args``: capture folder, config, quick, maps folder, and optionally the session's focus
    offsets (``capture_qa.focus_offsets_of``)."""
    capture_dir, cfg, quick, maps_dir = args[:4]
    q = analyse_capture(capture_dir, cfg, quick=quick, thumbs=maps_dir is not None,
                        focus_offsets=args[4] if len(args) > 4 else None)
    thumbs = _write_images(q, Path(maps_dir)) if maps_dir is not None else {}
    q.row["verdict"] = q.verdict
    return q.row, [(r.level, r.code, r.message) for r in q.reasons], thumbs


def _mp_context():
    """A fork server with this module preloaded (``hzsr.qa.forkserver``): workers start fast, and
    never fork a process whose OpenCV thread pool is running (a forked child would deadlock on its
    first parallel call).

    This module, not ``hzsr.qa.check``: a worker forked from the server has everything its
    captures need already imported. Before (issue 18), the server preloaded only
    ``capture_qa`` and every worker imported ``hzsr.qa.check`` itself (pandas, pyarrow, tqdm:
    1.8-2.4 s to a worker's first capture at load 9, 0.05 s with it preloaded), in series before
    its share of the captures."""
    return qa_context()


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would only contend
    # Each capture's 12 MP frames and temporaries: without this glibc hands every array above its
    # mmap threshold back to the kernel when freed, and the next capture faults in and zeroes
    # fresh pages (hzsr.core.bulkio; 24-48 thousand page faults a 12 MP capture, ~0.1-0.2 s of
    # kernel time). The worker ends with the run, which frees its heap.
    reuse_freed_buffers()
