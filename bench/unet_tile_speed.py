"""Benchmark: one fusion window through the default runtime, for candidate UNet configurations (issue 19).

Times one 832x832 window (the default 768 tile plus 2 x 32 halo) of each network through the
inference runtime path (``runtime.graph_runner`` on the exported graph, ``runtime.default_runtime``),
one thread, the candidates interleaved window by window (the first is every ratio's baseline).
Weights do not change the cost, so a candidate is an untrained network of a ``UNetConfig`` (given
as JSON, never evaluated as code) or a trained checkpoint's path.

    python bench/unet_tile_speed.py --reps 15 shipped '{"widths": [12, 16, 24, 32, 48], "stem": "unshuffle"}'

Prints JSON: per candidate the median / least wall and CPU seconds, and the median per-window
ratio of the first candidate's time to its own (> 1: cheaper than the first), with the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("HZSR_TORCH_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hzsr.baseline_model import runtime as rt  # noqa: E402
from hzsr.baseline_model.checkpoint import load_model, shipped_checkpoint_path  # noqa: E402
from hzsr.baseline_model.config import UNetConfig  # noqa: E402
from hzsr.baseline_model.unet import FusionUNet  # noqa: E402

WINDOW = 832


def candidate(spec: str) -> torch.nn.Module:
    """``shipped``, a checkpoint path, or a JSON object of ``UNetConfig`` fields (untrained network)."""
    if spec == "shipped":
        return load_model(shipped_checkpoint_path()).model
    if spec.lstrip().startswith("{"):
        try:
            fields = json.loads(spec)
            torch.manual_seed(0)
            return FusionUNet(UNetConfig(**{"residual_on": "reference", **fields}))
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            sys.exit(f"unet_tile_speed: candidate {spec!r}: {e}")
    return load_model(spec).model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidates", nargs="+", help="shipped | CHECKPOINT.pt | JSON UNetConfig fields")
    ap.add_argument("--reps", type=int, default=15, help="windows per candidate, interleaved")
    a = ap.parse_args()
    torch.set_num_threads(1)
    runners = []
    for spec in a.candidates:
        m = candidate(spec).eval()
        graph = rt.onnx_bytes(m, m.size_multiple)
        runners.append(rt.graph_runner(graph, m.size_multiple, rt.default_runtime("cpu"), 1))
    x = np.random.default_rng(0).random((1, 3, WINDOW, WINDOW), dtype=np.float32)
    for r in runners:
        r.run(x)  # warm: the first run compiles
    n = len(runners)
    wall: list[list[float]] = [[] for _ in runners]
    cpu: list[list[float]] = [[] for _ in runners]
    load0 = os.getloadavg()[0]
    for rep in range(a.reps):
        for i in [*range(rep % n, n), *range(rep % n)]:  # rotate who goes first
            t0, c0 = time.perf_counter(), time.process_time()
            runners[i].run(x)
            wall[i].append(time.perf_counter() - t0)
            cpu[i].append(time.process_time() - c0)
    out = {"runtime": rt.default_runtime("cpu"), "window": WINDOW, "reps": a.reps,
           "load_before": round(load0, 2), "load_after": round(os.getloadavg()[0], 2), "candidates": {}}
    for spec, w, c in zip(a.candidates, wall, cpu, strict=True):
        out["candidates"][spec] = {
            "wall_median_s": round(statistics.median(w), 4), "wall_min_s": round(min(w), 4),
            "cpu_median_s": round(statistics.median(c), 4),
            "first_over_this_wall": round(statistics.median(b / t for b, t in zip(wall[0], w, strict=True)), 3),
            "first_over_this_cpu": round(statistics.median(b / t for b, t in zip(cpu[0], c, strict=True)), 3)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
