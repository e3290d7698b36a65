"""Benchmark: render one full-resolution (4000x3000) W/T/reference triplet on one core.

Goal (issue 2): median under 3 s. The baseline, measured in the same run, is the cost of the
unavoidable I/O-side work on the same pixels: JPEG-encoding three 12 MP frames. Prints JSON.
"""

from __future__ import annotations

import json
import statistics
import time

import cv2
import numpy as np

from hzsr.sim.profiles import FULL_RES, VPHONE_5X
from hzsr.sim.rig import RigGeometry, render_frame
from hzsr.sim.scene import SCENE_KINDS, make_scene


def main(repeats: int = 5) -> dict:
    cv2.setNumThreads(1)  # "on one core"
    rng = np.random.default_rng(0)
    rig = RigGeometry.random(VPHONE_5X, FULL_RES, rng)
    fx_t = VPHONE_5X.camera("T").fx_native()
    scenes = [make_scene(k, i, rng, fx_t) for i, k in enumerate(SCENE_KINDS)]
    render_frame(rig, scenes[0], "main_W", 0.0, 0.3, rng)  # warm texture caches
    times, per_kind = [], {}
    for i in range(repeats):
        sc = scenes[i % len(scenes)]
        focus = 1 / sc.layer(sc.subject).depth_m
        t0 = time.perf_counter()
        for slot in ("main_W", "main_T", "ref_T"):
            render_frame(rig, sc, slot, 0.0, focus, rng)
        dt = time.perf_counter() - t0
        times.append(dt)
        per_kind.setdefault(sc.kind, []).append(round(dt, 3))
    img = np.random.default_rng(1).integers(0, 255, (FULL_RES[1], FULL_RES[0], 3), np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 2)
    base = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(3):
            cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        base.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "benchmark": "sim_render_full_res_triplet",
        "size": list(FULL_RES),
        "threads": 1,
        "repeats": repeats,
        "median_s": round(med, 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "per_kind_s": per_kind,
        "baseline_jpeg_encode_3x12MP_median_s": round(statistics.median(base), 3),
        "ratio_to_baseline": round(med / statistics.median(base), 2),
        "goal_s": 3.0,
        "meets_goal": med < 3.0,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
