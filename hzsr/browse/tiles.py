"""Pixels for the gallery, read from the shards a few tiles at a time, and cached.

- A **thumbnail** is the W crop (the part of W that T sees: ``core/geometry.py:tele_crop_rect``
  from the two cameras' intrinsics), read with ``ShardReader.read_patch`` (only the HDF5 chunks
  under it: at 12 MP and a 5x tele about 4 % of W's tiles) and shrunk to ``thumb_px`` on its long
  side. A capture without intrinsics (an ingested one) shows W's central half.
- A **window** is ``window_px`` square of T at 1:1, at (x, y) in T pixels: main T and reference T
  read as patches, the W crop resampled onto the same T-pixel grid from the W patch under it
  (bicubic, as ``qa.align.crop_w_to_t``), and the blending maps of W->T and W->reference T
  computed on the window by ``hzsr.qa.register.register_pair`` (the code ``hzsr qa check`` runs),
  shown as ``qa.check.overlay`` draws them: occlusion red, rejection green, defocus blue. The
  data set keeps no maps, so they are computed live; a window too flat to register says why.

Both are JPEG bytes, kept in an LRU cache of ``cache_bytes``; HDF5 reads go through one lock
(h5py serialises them anyway, and the reader's handle table is not thread-safe).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hzsr.core.geometry import CropRect, intrinsics_matrix, tele_crop_rect
from hzsr.dataset.reader import ShardReader
from hzsr.dataset.schema import SLOTS


@dataclass
class TileConfig:
    """Sizes and cache of the gallery's pixels."""

    thumb_px: int = 240  # long side of a thumbnail
    window_px: int = 384  # side of the 1:1 window of T in the capture view
    jpeg_quality: int = 85
    cache_bytes: int = 256 << 20  # LRU cache of encoded JPEGs


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - a uint8 RGB array always encodes
        raise RuntimeError("cannot encode JPEG")
    return buf.tobytes()


class TileStore:
    """Thumbnails and 1:1 windows of one data set, cached.

    Args:
        root: the data set (or subset) folder.
        cfg: sizes and cache.
    """

    def __init__(self, root: str | Path, cfg: TileConfig | None = None):
        self.cfg = cfg or TileConfig()
        self.reader = ShardReader(root)
        self._io = threading.Lock()
        self._cache: OrderedDict[tuple, Any] = OrderedDict()
        self._cached_bytes = 0
        self._metas: dict[str, dict[str, Any]] = {}
        self._cache_lock = threading.Lock()
        self.reads = 0  # patch reads so far (the benchmark reports them)

    # -- cache ----------------------------------------------------------------------------------
    def _cached(self, key: tuple, make) -> Any:
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = make()
        size = sum(len(v) for v in value.values() if isinstance(v, bytes)) if isinstance(value, dict) else len(value)
        with self._cache_lock:
            self._cache[key] = value
            self._cached_bytes += size
            while self._cached_bytes > self.cfg.cache_bytes and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= sum(len(v) for v in old.values() if isinstance(v, bytes)) \
                    if isinstance(old, dict) else len(old)
        return value

    def _patch(self, cid: str, slot: str, y: int, x: int, h: int, w: int) -> np.ndarray:
        with self._io:
            self.reads += 1
            return self.reader.read_patch(cid, slot, y, x, h, w)

    def _meta(self, cid: str) -> dict[str, Any]:
        """What the gallery needs of a capture: per frame its size and intrinsics (a few attributes,
        not ``ShardReader.meta``'s hundred-odd, which cost 30 ms a capture)."""
        with self._cache_lock:
            m = self._metas.get(cid)
        if m is None:
            with self._io:
                g = self.reader._group(cid)
                frames = {}
                for slot in SLOTS:
                    if slot in g:
                        d = g[slot]
                        k = d.attrs.get("intrinsics")
                        frames[slot] = {"width": int(d.shape[1]), "height": int(d.shape[0]),
                                        "intrinsics": dict(zip(("fx", "fy", "cx", "cy"), map(float, k), strict=True))
                                        if k is not None and len(k) == 4 else None}
            m = {"frames": frames, "has_reference": "ref_T" in frames}
            with self._cache_lock:
                self._metas[cid] = m
        return m

    # -- geometry -------------------------------------------------------------------------------
    def crop_rect(self, cid: str) -> CropRect:
        """The W crop that T sees (from the intrinsics), or W's central half without them."""
        fr = self._meta(cid)["frames"]
        fw, ft = fr["main_W"], fr["main_T"]
        size_w, size_t = (int(fw["width"]), int(fw["height"])), (int(ft["width"]), int(ft["height"]))
        if fw.get("intrinsics") and ft.get("intrinsics"):
            try:
                return tele_crop_rect(intrinsics_matrix(**fw["intrinsics"]), intrinsics_matrix(**ft["intrinsics"]),
                                      size_t, size_w)
            except ValueError:
                pass  # T wider than W: bad intrinsics; show the central half rather than nothing
        return CropRect(size_w[0] / 4, size_w[1] / 4, size_w[0] / 2, size_w[1] / 2, *size_t)

    def _w_region(self, cid: str, rect: CropRect, x: int, y: int, w: int, h: int) -> np.ndarray:
        """The W crop resampled onto T pixels ``[y:y+h, x:x+w]``, from the W patch under them."""
        m = rect.crop_to_w()
        fw = self._meta(cid)["frames"]["main_W"]
        ww, wh = int(fw["width"]), int(fw["height"])
        (u0, v0), (u1, v1) = (m @ [x, y, 1])[:2], (m @ [x + w - 1, y + h - 1, 1])[:2]
        px0, py0 = max(0, math.floor(u0) - 2), max(0, math.floor(v0) - 2)
        px1, py1 = min(ww, math.ceil(u1) + 3), min(wh, math.ceil(v1) + 3)
        patch = self._patch(cid, "main_W", py0, px0, py1 - py0, px1 - px0)
        # window pixel (i, j) -> crop grid (x + i, y + j) -> W (m) -> patch (minus its origin)
        a = m[:2] @ np.array([[1, 0, x], [0, 1, y], [0, 0, 1]], float)
        a[:, 2] -= (px0, py0)
        return cv2.warpAffine(patch, a, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    # -- answers --------------------------------------------------------------------------------
    def thumbnail(self, cid: str) -> bytes:
        """JPEG of the W crop, ``thumb_px`` on its long side (tile reads under the crop only)."""
        def make() -> bytes:
            r = self.crop_rect(cid)
            x0, y0 = max(0, int(r.x0)), max(0, int(r.y0))
            w, h = max(1, int(round(r.width))), max(1, int(round(r.height)))
            fw = self._meta(cid)["frames"]["main_W"]
            w, h = min(w, int(fw["width"]) - x0), min(h, int(fw["height"]) - y0)
            img = self._patch(cid, "main_W", y0, x0, h, w)
            s = self.cfg.thumb_px / max(w, h)
            if s < 1:
                img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            return _jpeg(img, self.cfg.jpeg_quality)
        return self._cached(("thumb", cid), make)

    def window_origin(self, cid: str, x: int | None, y: int | None) -> tuple[int, int, int, int]:
        """The window's (x, y, w, h) in T pixels: centred by default, clamped inside T."""
        ft = self._meta(cid)["frames"]["main_T"]
        tw, th = int(ft["width"]), int(ft["height"])
        w, h = min(self.cfg.window_px, tw), min(self.cfg.window_px, th)
        x = (tw - w) // 2 if x is None else min(max(0, x), tw - w)
        y = (th - h) // 2 if y is None else min(max(0, y), th - h)
        return x, y, w, h

    def window(self, cid: str, x: int | None = None, y: int | None = None) -> dict[str, Any]:
        """The 1:1 window's images (JPEG bytes: ``W``, ``T``, ``R``, ``wt``, ``wr``) and notes."""
        x, y, w, h = self.window_origin(cid, x, y)

        def make() -> dict[str, Any]:
            from hzsr.qa.check import overlay
            from hzsr.qa.register import register_pair

            rect = self.crop_rect(cid)
            imgs = {"W": self._w_region(cid, rect, x, y, w, h), "T": self._patch(cid, "main_T", y, x, h, w)}
            if self._meta(cid)["has_reference"]:
                ft = self._meta(cid)["frames"]["ref_T"]
                if (int(ft["width"]), int(ft["height"])) >= (x + w, y + h):
                    imgs["R"] = self._patch(cid, "ref_T", y, x, h, w)
            out: dict[str, Any] = {k: _jpeg(v, self.cfg.jpeg_quality) for k, v in imgs.items()}
            notes: dict[str, str] = {}
            for pair, other in (("wt", "T"), ("wr", "R")):
                if other not in imgs:
                    continue
                try:
                    reg = register_pair(imgs["W"], imgs[other], optical_scale=min(1.0, 1.0 / rect.scale))
                except (ValueError, cv2.error) as exc:
                    notes[pair] = f"not registered on this window: {str(exc).splitlines()[0][:160]}"
                    continue
                maps = {"occlusion": reg.occlusion, "reject": reg.reject}
                out[pair] = _jpeg(overlay(imgs["W"], {k: (v * 255).astype(np.uint8) for k, v in maps.items()}),
                                  self.cfg.jpeg_quality)
                s = reg.stats
                notes[pair] = (f"shift {s['shift_dx']:+.1f},{s['shift_dy']:+.1f} px; "
                               f"occluded {s['occluded_frac']:.0%}, "
                               f"rejected {s['rejected_frac']:.0%}, uncertain {s['uncertain_frac']:.0%}")
            out["notes"] = notes
            out["origin"] = [x, y, w, h]
            out["scale"] = rect.scale
            return out
        return self._cached(("window", cid, x, y), make)
