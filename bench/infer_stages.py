"""Profile: single-thread CPU of the non-network stages of ``hzsr model infer`` on one capture (issue 19).

Where the CPU outside the UNet goes, piece by piece, in one thread (``cv2.setNumThreads(1)``,
``time.thread_time``: CPU seconds, which a loaded machine inflates far less than wall time), each
piece ``--reps`` times, the minimum reported (the first call pays page faults and lazy loading):

- decode: ``read_rgb`` of W and of T;
- ``coarse_align`` whole, and its pieces: the reference at the keypoints' size (``_grid(ref, small)``),
  the W crop at that size (``crop_w_to_t``), the keypoint translation (``global_translation``),
  the full-resolution bicubic warp of W onto T's frame (``cv2.warpAffine``, INTER_CUBIC);
- the flow grid's two downscales (``_grid(src, g)``, ``_grid(ref, g)``);
- ``align`` whole (coarse align, dense flow, maps);
- ``fuse`` with an identity stand-in for the UNet (``x[:, :1] * 0.5``): colour, blending, denoise
  and tiling, no network; and ``unet_inputs`` alone over every tile window;
- the flow's per-window sampling (``sample_grid`` of the two-channel flow) through float maps (as
  shipped) and through OpenCV's fixed-point maps (``cv2.convertMaps``, CV_16SC2: the same bits),
  interleaved, ``--reps`` rounds: the tried alternative of issue19x's second pass.

Usage: ``python bench/infer_stages.py --capture DIR [--reps 3] [--out FILE]`` with DIR a capture
folder (``main_W.jpg``, ``ref_T.jpg``, ``capture.json``), e.g. the one ``bench/infer.py --keep K``
renders (``K/session/captures/c00000``). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hzsr.baseline_model.pipeline import sample_grid, sample_maps


def _cpu_min(f: Callable[[], Any], reps: int) -> float:
    """Minimum thread CPU seconds of ``f`` over ``reps`` calls."""
    best = float("inf")
    for _ in range(reps):
        t = time.thread_time()
        f()
        best = min(best, time.thread_time() - t)
    return best


def _fixed_maps_sample(arr: np.ndarray, full: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """``sample_grid`` through OpenCV's fixed-point maps (the same bits for a two-channel float grid)."""
    mx, my = sample_maps(arr.shape, full, y0, y1, x0, x1)
    fx, fy = cv2.convertMaps(mx, my, cv2.CV_16SC2)
    return cv2.remap(arr, fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class _Identity:
    """A stand-in for the UNet: numpy in and out, no network cost."""

    takes_numpy = True
    tiles_in_flight = 1
    size_multiple = 16

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x[:, :1] * np.float32(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture", required=True, help="capture folder: main_W.jpg, ref_T.jpg, capture.json")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    from hzsr.baseline_model import align as A
    from hzsr.baseline_model.config import PipelineConfig
    from hzsr.baseline_model.geometry_source import resolve_geometry
    from hzsr.baseline_model.infer import read_meta, read_rgb
    from hzsr.baseline_model.pipeline import HZSRPipeline, unet_inputs
    from hzsr.baseline_model.tiling import tile_cores
    from hzsr.qa.align import global_translation

    cv2.setNumThreads(1)
    c = Path(args.capture)
    w = read_rgb(c / "main_W.jpg", "SOURCE")
    r = read_rgb(c / "ref_T.jpg", "--ref")
    meta = read_meta(c / "capture.json")
    cfg = PipelineConfig()
    q = cfg.qa
    geom = resolve_geometry(meta, w, r, assumed_ratio=cfg.focal_ratio)
    n = args.reps
    cpu: dict[str, float] = {}
    load = [float(open("/proc/loadavg").read().split()[0])]
    cpu["decode_W"] = _cpu_min(lambda: read_rgb(c / "main_W.jpg", "SOURCE"), n)
    cpu["decode_T"] = _cpu_min(lambda: read_rgb(c / "ref_T.jpg", "--ref"), n)
    cpu["coarse_align"] = _cpu_min(lambda: A.coarse_align(w, r, geom, q), n)
    t_size = (r.shape[1], r.shape[0])
    small = min(1.0, q.align.keypoint_long_side / max(t_size))
    ts = (max(8, round(t_size[0] * small)), max(8, round(t_size[1] * small)))
    k_ts = np.diag([small, small, 1.0]) @ geom.k_t
    ref_small = A._grid(r, small)
    crop_small, rect0 = A.crop_w_to_t(w, geom.k_w, k_ts, ts)
    cpu["coarse_align.ref_small"] = _cpu_min(lambda: A._grid(r, small), n)
    cpu["coarse_align.crop_w_to_t"] = _cpu_min(lambda: A.crop_w_to_t(w, geom.k_w, k_ts, ts), n)
    o = min(1.0, rect0.width / ts[0])
    cpu["coarse_align.global_translation"] = _cpu_min(lambda: global_translation(crop_small, ref_small, q,
                                                                                  optical_scale=o), n)
    src, rect, _, _ = A.coarse_align(w, r, geom, q)
    m = rect.crop_to_w()[:2]
    cpu["coarse_align.warp_cubic_full"] = _cpu_min(
        lambda: cv2.warpAffine(w, m, t_size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE), n)
    g = A.flow_grid_scale(src.shape, q)
    cpu["dense_flow.grid_src"] = _cpu_min(lambda: A._grid(src, g), n)
    cpu["dense_flow.grid_ref"] = _cpu_min(lambda: A._grid(r, g), n)
    pipe = HZSRPipeline(None, runtime="openvino", runner=_Identity())
    cpu["align"] = _cpu_min(lambda: pipe.align(w, r, meta), n)
    al = pipe.align(w, r, meta)
    cpu["fuse_without_network"] = _cpu_min(lambda: pipe.fuse(al), n)
    h, wd = al.src.shape[:2]
    halo = pipe.cfg.halo
    wins = [(max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(wd, x1 + halo))
            for y0, y1, x0, x1 in tile_cores(h, wd, pipe.cfg.tile)]
    cpu["unet_inputs_all_windows"] = _cpu_min(lambda: [unet_inputs(al, *v) for v in wins], n)
    same = all(np.array_equal(sample_grid(al.flow_fwd, (h, wd), *v),
                              _fixed_maps_sample(al.flow_fwd, (h, wd), *v)) for v in wins)
    rounds: dict[str, list[float]] = {"float_maps": [], "fixed_maps": []}
    for i in range(max(3, n)):
        order = [("float_maps", sample_grid), ("fixed_maps", _fixed_maps_sample)]
        for name, f in order if i % 2 == 0 else order[::-1]:
            t = time.thread_time()
            for v in wins:
                f(al.flow_fwd, (h, wd), *v)
            rounds[name].append(time.thread_time() - t)
    load.append(float(open("/proc/loadavg").read().split()[0]))
    res = {
        "capture": str(c), "size": [wd, h], "tiles": len(wins), "flow_grid": list(al.flow_fwd.shape),
        "reps": n, "load_1min_before_after": load, "cpu_s_min": {k: round(v, 4) for k, v in cpu.items()},
        "flow_sample": {"identical_bits": same, "rounds_cpu_s": rounds,
                        "float_over_fixed_median": statistics.median(
                            a / b for a, b in zip(rounds["float_maps"], rounds["fixed_maps"], strict=True))},
    }
    text = json.dumps(res, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
