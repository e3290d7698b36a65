"""Benchmark: the first page of ``hzsr dataset browse`` over a 10,000-capture data set.

Builds a simulated data set of ``--captures`` (10,000) captures, written with the project's own
shard writer (``hzsr.dataset.shard.write_capture``) and manifest (``manifest_row``,
``write_manifest``), with ``splits.csv`` and a ``labels.csv`` of 300 labels, so the index the
gallery loads is a real one of that size (the manifest carries the ~130 columns a QA-checked
data set has). The captures of the first page (``--page``, 60, as the page asks for) have
full-resolution 4000x3000 W frames with the vphone-5x intrinsics (T sees W's central 800x600),
textured from scikit-image's photographs plus sensor-like noise; their T and reference T are
1000x750, which the first page never reads. The other captures have 64x48 frames and only the QA
verdict in their shard (their manifest rows have every column): the first page opens only its
own captures' shards (counted in the output).

The first page, as a browser loads it: ``GET /``, ``GET /api/captures`` (manifest, splits and
labels read, facets counted, 60 rows), then the 60 thumbnails over 6 connections at a time
(Chromium's limit per host), each from a cold server (new ``Browser``, empty caches). Against
the simplest alternative in the same run: the same server whose thumbnails decode the whole
W frame (``g["main_W"][()]``) and crop it. Rounds are interleaved (tiled, naive, tiled, ...),
figures are medians of ``--rounds`` (3); the ratio is paired per round. Prints JSON with the
load average. Goal: the tiled first page within 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import functools
import http.client
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hzsr.browse.server import Browser, BrowseServer
from hzsr.browse.tiles import TileStore, _jpeg
from hzsr.dataset.codecs import DEFAULT_CODEC, register_plugins
from hzsr.dataset.labels import LABELS
from hzsr.dataset.manifest import manifest_row, write_manifest
from hzsr.dataset.phash import phash
from hzsr.dataset.schema import FORMAT, SCHEMA_VERSION, put_attrs
from hzsr.dataset.shard import array_sha256, shard_name, write_capture
from hzsr.dataset.sources import CaptureSource
from hzsr.dataset.splits import SplitConfig, assign_splits, write_splits

KINDS = ("portrait", "landscape", "architecture", "night", "moving")
FX_W, FX_T = 3158.0, 15800.0  # vphone-5x at 4000 px wide (hzsr/sim/profiles.py): a focal ratio of 5
QA_KEYS = [f"{p}_{k}" for p in ("wt", "wr", "tt") for k in (
    "psnr_db", "ssim", "mae", "shift_dx", "shift_dy", "shift_px", "inliers", "matches", "valid_frac",
    "occluded_frac", "rejected_frac", "uncertain_frac", "flow_residual_median_px", "flow_residual_p95_px",
    "defocus_frac", "subject_dx", "subject_dy", "subject_shift_px")] + [
    f"{s}_{k}" for s in ("main_W", "main_T", "ref_T") for k in (
        "brightness", "clipped_frac", "dark_frac", "mean_r", "mean_g", "mean_b", "noise_sigma", "sharpness",
        "roi_sharpness")]


@functools.cache
def _photo(k: int) -> np.ndarray:
    from skimage import data

    return [data.astronaut, data.coffee, data.chelsea, data.rocket][k]()


def _texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A photograph (scikit-image's), scaled to ``size`` at a random zoom and offset, plus noise."""
    img = _photo(int(rng.integers(4)))
    w, h = size
    z = rng.uniform(1.0, 1.3)
    big = cv2.resize(img, (int(w * z), int(h * z)), interpolation=cv2.INTER_CUBIC)
    x0, y0 = int(rng.integers(big.shape[1] - w + 1)), int(rng.integers(big.shape[0] - h + 1))
    out = big[y0:y0 + h, x0:x0 + w].astype(np.int16)
    out += rng.integers(-3, 4, size=out.shape, dtype=np.int16)  # sensor noise survives JPEG at ISO 50-400
    return np.clip(out, 0, 255).astype(np.uint8)


def _meta(i: int, rng: np.random.Generator, w_size: tuple[int, int], t_size: tuple[int, int]) -> dict:
    sid, cid = f"s{i // 500:03d}", f"c{i % 500:05d}"
    kind = KINDS[(i // 2) % len(KINDS)]
    frames = {}
    for slot, (sz, fx) in (("main_W", (w_size, FX_W * w_size[0] / 4000)),
                           ("main_T", (t_size, FX_T * t_size[0] / 4000)), ("ref_T", (t_size, FX_T * t_size[0] / 4000))):
        frames[slot] = {"slot": slot, "width": sz[0], "height": sz[1], "iso": int(rng.choice([50, 100, 400])),
                        "exposure_time_ns": int(rng.integers(1e6, 3e7)), "device": "VPH5X", "role": "main",
                        "intrinsics": {"fx": fx, "fy": fx, "cx": sz[0] / 2, "cy": sz[1] / 2}}
    verdict = str(rng.choice(["pass", "pass", "pass", "warn", "fail"]))
    codes = {"pass": "", "warn": "motion_blur", "fail": "large_shift;no_overlap"}[verdict]
    qa = {k: float(rng.normal()) for k in QA_KEYS}
    qa.update(verdict=verdict, codes=codes, reasons=codes.replace(";", " | "))
    sync = {"verdict": "pass", "skew_ref_main_us": float(rng.normal(0, 80)), "skew_bound_us": 150.0, "flags": ""}
    return {"capture_id": f"{sid}/{cid}", "session_id": sid, "source_capture_id": cid,
            "scene_id": f"{kind}-{i // 2:05d}", "scene_kind": kind, "scene_tags": [kind, "static"],
            "notes": "", "status": "complete", "source": "bench", "trigger_host_ns": i, "has_reference": True,
            "frames": frames, "sync": sync, "qa": qa}


def build(root: Path, n: int, page: int, seed: int = 0) -> dict:
    """Write the simulated data set; return what it holds and how long it took."""
    import h5py

    register_plugins()
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    rows, per_shard = [], {}
    order = list(range(n))
    for i in order:
        full = i < page
        k = i // 12 if full else page // 12 + 1 + (i - page) // 1000  # ~1 GiB shards at full size, as pack cuts
        per_shard.setdefault(k, []).append(i)
    small = [_texture(rng, (64, 48)) for _ in range(16)]

    def full_res(m: dict) -> bool:
        return m["frames"]["main_W"]["width"] == 4000

    for k, members in per_shard.items():
        path = root / "shards" / shard_name(k)
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as h5:
            metas = [_meta(i, rng, (4000, 3000) if i < page else (64, 48), (1000, 750) if i < page else (64, 48))
                     for i in members]
            put_attrs(h5, {"format": FORMAT, "schema_version": SCHEMA_VERSION, "shard": path.name,
                           "compression": DEFAULT_CODEC, "chunk": [128, 128],
                           "captures": [m["capture_id"] for m in metas]})
            for sid in sorted({m["session_id"] for m in metas}):
                put_attrs(h5.require_group("sessions").create_group(sid), {"source": "bench"})
            for m in metas:
                loaded = {}
                for slot, fm in m["frames"].items():
                    arr = _texture(rng, (fm["width"], fm["height"])) if full_res(m) else small[int(rng.integers(16))]
                    loaded[slot] = (arr, array_sha256(arr), phash(arr) if slot == "main_W" else "")
                # Beyond the first page, the shard keeps only the QA verdict (the manifest row has every
                # column): the first page never reads those groups, and 80 attributes each would
                # take 3 minutes to write.
                sm = m if full_res(m) else {**m, "qa": {k: m["qa"][k] for k in ("verdict", "codes", "reasons")}}
                src = CaptureSource(m["capture_id"], m["session_id"], {s: "" for s in loaded}, sm, "{}", 0)
                write_capture(h5, src, DEFAULT_CODEC, loaded)
                m["phash_main_W"] = loaded["main_W"][2]
                rows.append(manifest_row(m, path.name))
    man = pd.DataFrame(rows).sort_values("capture_id").reset_index(drop=True)
    write_manifest(root, man)
    write_splits(root / "splits.csv", assign_splits(man, SplitConfig()))
    lab = man.sample(300, random_state=seed)[["capture_id"]].assign(
        label="rejected", reason="near-duplicate", curator="bench", updated_utc="2026-01-01T00:00:00+00:00",
        schema_version=1)
    lab.sort_values("capture_id").to_csv(root / LABELS, index=False)
    return {"captures": n, "full_res_captures": page, "shards": len(per_shard), "manifest_columns": man.shape[1],
            "build_s": round(time.perf_counter() - t0, 1),
            "bytes_on_disk": sum(p.stat().st_size for p in (root / "shards").glob("*.h5"))}


class WholeFrameTiles(TileStore):
    """The naive alternative: each thumbnail decodes the whole W frame, then crops and shrinks it."""

    def thumbnail(self, cid: str) -> bytes:
        def make() -> bytes:
            r = self.crop_rect(cid)
            with self._io:
                self.reads += 1
                full = self.reader._group(cid)["main_W"][()]
            x0, y0 = int(r.x0), int(r.y0)
            img = full[y0:y0 + int(round(r.height)), x0:x0 + int(round(r.width))]
            s = self.cfg.thumb_px / max(img.shape[:2])
            img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
            return _jpeg(img, self.cfg.jpeg_quality)
        return self._cached(("thumb", cid), make)


def first_page(root: Path, naive: bool, page: int) -> dict:
    """Seconds from a cold server to the first page and all its thumbnails, as a browser fetches them."""
    t0 = time.perf_counter()
    app = Browser(root)
    if naive:
        app.tiles = WholeFrameTiles(root)
    srv = BrowseServer(app)
    srv.start()
    port = srv.server_address[1]

    def get(path: str) -> bytes:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, (path, body[:200])
        c.close()
        return body

    try:
        get("/")
        t_page = time.perf_counter()
        rows = json.loads(get(f"/api/captures?limit={page}"))["rows"]
        t_index = time.perf_counter() - t_page
        with cf.ThreadPoolExecutor(6) as pool:
            sizes = list(pool.map(lambda r: len(get(f"/img/thumb?id={r['capture_id']}")), rows))
        total = time.perf_counter() - t0
    finally:
        srv.shutdown()
        srv.server_close()
    return {"first_page_s": total, "index_s": t_index, "thumbs": len(sizes), "thumb_bytes": sum(sizes),
            "shards_opened": len(app.tiles.reader._files)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", type=int, default=10_000)
    ap.add_argument("--page", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", default=None, help="build (or reuse) the data set here instead of a temp folder")
    args = ap.parse_args()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="hzsr-bench-browse-") as tmp:
        root = Path(args.keep or tmp) / "ds"
        reuse = (root / "manifest.csv").is_file()
        built = {"reused": str(root)} if reuse else build(root, args.captures, args.page)
        tiled, naive = [], []
        for _ in range(args.rounds):
            tiled.append(first_page(root, False, args.page))
            naive.append(first_page(root, True, args.page))
        ratios = [n["first_page_s"] / t["first_page_s"] for t, n in zip(tiled, naive, strict=True)]
        med = statistics.median
        print(json.dumps({
            "bench": "browse_first_page", "dataset": built, "rounds": args.rounds, "cores": os.cpu_count(),
            "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
            "tiled_first_page_s": round(med(t["first_page_s"] for t in tiled), 3),
            "tiled_index_s": round(med(t["index_s"] for t in tiled), 3),
            "naive_first_page_s": round(med(n["first_page_s"] for n in naive), 3),
            "naive_over_tiled": round(med(ratios), 2), "paired_ratios": [round(r, 2) for r in ratios],
            "shards_opened": tiled[0]["shards_opened"], "thumbs": tiled[0]["thumbs"],
            "goal_first_page_s": 2.0, "meets_goal": med(t["first_page_s"] for t in tiled) <= 2.0,
        }, indent=2))


if __name__ == "__main__":
    main()
