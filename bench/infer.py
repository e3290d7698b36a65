"""Benchmark: ``hzsr model infer`` on one 12 MP capture (issue 13).

Goals on the 2-core development machine: end-to-end <= 6 s and peak RSS <= 1.5 GB; peak memory
flat when the tile count doubles. The script renders its own 4000x3000 capture with ``hzsr.sim``
(so it runs anywhere with no other setup), then runs inference in fresh subprocesses, each
reporting its own peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and per-stage times:

- the default tiling, ``--repeats`` times (median);
- twice the tile count (smaller tiles), once;
- a baseline in the same process: decoding the two JPEGs plus the bicubic W crop alone, which
  any zoom pipeline pays, so ``ratio`` survives a noisy shared machine.

The output is written as JPEG (quality 95), as a phone's camera app would; a 12 MP PNG costs
about 1-2 s more in zlib alone.

Usage: ``python bench/infer.py [--device cuda] [--ckpt CKPT] [--repeats N] [--keep DIR]``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from hzsr.baseline_model.infer import infer

    t0 = time.perf_counter()
    res = infer(args.source, args.ref, args.out, ckpt=args.ckpt, meta=args.meta, device=args.device, tile=args.tile)
    wall = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "peak_rss_mb": rss_mb, "tiles": res["tiles"], "tile": res["tile"],
                      "timings_s": res["timings_s"], "warnings": res["warnings"],
                      "output_size": res["output_size"], "used_reference": res["used_reference"]}))


def _baseline(source: Path, ref: Path, meta: Path) -> float:
    """Decode both JPEGs and make the bicubic W crop (what plain digital zoom costs)."""
    import cv2

    from hzsr.baseline_model.align import camera_geometry
    from hzsr.qa.align import crop_w_to_t

    t0 = time.perf_counter()
    w = cv2.imread(str(source))
    r = cv2.imread(str(ref))
    geom = camera_geometry(json.loads(meta.read_text()), (w.shape[1], w.shape[0]), (r.shape[1], r.shape[0]))
    crop_w_to_t(w, geom.k_w, geom.k_t, (r.shape[1], r.shape[0]))
    return time.perf_counter() - t0


def _run(files: dict[str, Path], out: Path, ckpt: str | None, device: str, tile: int | None, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--source", str(files["source"]), "--ref", str(files["ref"]),
           "--meta", str(files["meta"]), "--out", str(out), "--device", device, "--threads", str(threads)]
    if ckpt:
        cmd += ["--ckpt", ckpt]
    if tile:
        cmd += ["--tile", str(tile)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"inference failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    p.add_argument("--repeats", type=int, default=2, help="runs of the default tiling (median)")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the goal is for 2 cores)")
    p.add_argument("--keep", default=None, help="keep the rendered capture and outputs in this folder")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    p.add_argument("--ref", help=argparse.SUPPRESS)
    p.add_argument("--meta", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--tile", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return

    from hzsr.baseline_model.config import PipelineConfig
    from hzsr.baseline_model.tiling import n_tiles
    from hzsr.sim.profiles import FULL_RES
    from hzsr.sim.simsession import SimConfig, simulate_session

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hzsr-bench-infer-"))
    sess = root / "session"
    if not (sess / "session.json").exists():
        t0 = time.perf_counter()
        simulate_session(sess, SimConfig(captures=1, seed=21, size=FULL_RES, kinds=("architecture",)), progress=False)
        render_s = time.perf_counter() - t0
    else:
        render_s = None
    cap = sess / "captures" / "c00000"
    files = {"source": cap / "main_W.jpg", "ref": cap / "ref_T.jpg", "meta": cap / "capture.json"}

    tile = PipelineConfig().tile
    w, h = FULL_RES
    # Twice the tile count: the largest multiple-of-16 tile whose count reaches 2x the default's.
    base_n = n_tiles(h, w, tile)
    small = tile
    while small > 16 and n_tiles(h, w, small) < 2 * base_n:
        small -= 16
    runs = [_run(files, root / f"out{i}.jpg", args.ckpt, args.device, None, args.threads) for i in range(args.repeats)]
    double = _run(files, root / "out_double.jpg", args.ckpt, args.device, small, args.threads)
    baseline_s = statistics.median(_baseline(files["source"], files["ref"], files["meta"]) for _ in range(3))

    total = statistics.median(r["timings_s"]["total"] for r in runs)
    stages = {k: statistics.median(r["timings_s"][k] for r in runs) for k in runs[0]["timings_s"]}
    peak = max(r["peak_rss_mb"] for r in runs)
    out = {
        "benchmark": "infer_12mp", "device": args.device, "threads": args.threads, "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "image": f"{w}x{h}", "render_s": render_s,
        "end_to_end_s_median": total, "stages_s_median": stages,
        "runs_total_s": [r["timings_s"]["total"] for r in runs],
        "peak_rss_mb": peak, "tiles": runs[0]["tiles"], "tile": runs[0]["tile"],
        "double_tiles": {"tiles": double["tiles"], "tile": double["tile"], "peak_rss_mb": double["peak_rss_mb"],
                         "total_s": double["timings_s"]["total"]},
        "peak_rss_ratio_double_over_default": double["peak_rss_mb"] / peak,
        "baseline_decode_bicubic_s": baseline_s, "ratio_total_over_baseline": total / baseline_s,
        "goals": {"end_to_end_le_6s": total <= 6.0, "peak_rss_le_1.5GB": peak <= 1536,
                  "flat_memory_double_tiles": double["peak_rss_mb"] <= peak * 1.1},
        "warnings": runs[0]["warnings"], "used_reference": runs[0]["used_reference"],
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
