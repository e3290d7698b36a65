"""Benchmark: the serial path of ``hzsr model infer`` around the tiles, paired against another tree (issue19wall).

On two shared cores the process wall of a 12 MP inference (``bench/infer.py``) moves by +-20 %
from round to round with the other processes' load, mostly in the tiles (the network), which
hides changes of a few tenths of a second around them. This script measures the part around the
tiles directly: each round runs ``hzsr model infer`` in a fresh process (``hzsr.cli.main``, as the
command does), once from this tree and once from ``--base-tree`` (interleaved, the order
alternating), with ``HZSRPipeline.fuse`` and ``_denoise`` wrapped to read the clocks, and reports
per process:

- ``main_cpu_before_tiles_s``: the main thread's CPU from interpreter start to the tiles (imports,
  parser, thread policy, the main thread's share of decoding and alignment, and the reference's
  noise sigma where the tree measures it before the tiles);
- ``main_cpu_after_tiles_s``: its CPU after the tiles (the output denoiser, encoding, OUT.json);
- ``wall_to_tiles_s`` / ``wall_after_tiles_s``: the wall from spawn to the tiles and from the tiles
  to the process's end.

Thread CPU (``time.thread_time``) of the main thread is the serial path's work: on idle cores it
is what the wall cannot go below; under load it is less disturbed by the other processes than the
wall. Ratios are base / this per round, then the median; the 1-minute load average is recorded.

Usage: ``python bench/infer_serial.py --capture DIR --base-tree DIR [--rounds 4] [--threads 2]``
(DIR: a capture folder with ``main_W.jpg``, ``ref_T.jpg``, ``capture.json``, e.g. the one
``bench/infer.py --keep K`` renders in ``K/session/captures/c00000``). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _child(args: argparse.Namespace) -> None:
    spawn = float(os.environ["HZSR_BENCH_SPAWN"])
    import contextlib
    import io

    import hzsr.cli
    from hzsr.baseline_model.pipeline import HZSRPipeline

    mark: dict[str, float] = {}
    fuse, denoise = HZSRPipeline.fuse, HZSRPipeline._denoise

    def timed_fuse(self, *a, **k):
        mark["cpu_fuse0"], mark["t_fuse0"] = time.thread_time(), time.time() - spawn
        try:
            return fuse(self, *a, **k)
        finally:
            mark["cpu_fuse1"], mark["t_fuse1"] = time.thread_time(), time.time() - spawn

    sigma_fn = getattr(HZSRPipeline, "reference_sigma", None)  # this tree: before the tiles, inside fuse

    def timed_sigma(self, *a, **k):
        t, c = time.time(), time.thread_time()
        try:
            return sigma_fn(self, *a, **k)
        finally:
            mark["sigma_cpu"], mark["sigma_wall"] = time.thread_time() - c, time.time() - t

    def timed_denoise(self, *a, **k):  # after the tiles, inside fuse
        t, c = time.time(), time.thread_time()
        try:
            return denoise(self, *a, **k)
        finally:
            mark["denoise_cpu"], mark["denoise_wall"] = time.thread_time() - c, time.time() - t

    HZSRPipeline.fuse, HZSRPipeline._denoise = timed_fuse, timed_denoise
    if sigma_fn is not None:
        HZSRPipeline.reference_sigma = timed_sigma
    argv = ["model", "infer", str(args.capture / "main_W.jpg"), "--ref", str(args.capture / "ref_T.jpg"),
            "--meta", str(args.capture / "capture.json"), "--out", args.out, "--threads", str(args.threads), "--json"]
    with contextlib.redirect_stdout(io.StringIO()):
        rc = hzsr.cli.main(argv)
    if rc:
        raise SystemExit(f"hzsr model infer exited {rc}")
    end_cpu, end = time.thread_time(), time.time() - spawn
    # The reference's noise sigma: measured at fuse's start where the tree does so (before the tiles),
    # else inside _denoise (after them).
    print(json.dumps({
        "main_cpu_before_tiles_s": mark["cpu_fuse0"] + mark.get("sigma_cpu", 0.0),
        "main_cpu_after_tiles_s": end_cpu - mark["cpu_fuse1"] + mark["denoise_cpu"],
        "wall_to_tiles_s": mark["t_fuse0"] + mark.get("sigma_wall", 0.0),
        "wall_after_tiles_s": end - mark["t_fuse1"] + mark["denoise_wall"],
        "sigma_before_tiles_cpu_s": mark.get("sigma_cpu"), "sigma_before_tiles_wall_s": mark.get("sigma_wall"),
        "fuse_start_s": mark["t_fuse0"], "denoise_wall_s": mark["denoise_wall"], "wall_s": end}))


def _run(tree: Path, args: argparse.Namespace, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("HZSR_TORCH_THREADS", None)
    env["HZSR_BENCH_SPAWN"] = repr(time.time())
    r = subprocess.run([sys.executable, __file__, "--child", "--capture", str(args.capture), "--out", str(out),
                        "--threads", str(args.threads)], capture_output=True, text=True, env=env, cwd=tree)
    if r.returncode:
        raise SystemExit(f"{tree}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--capture", type=Path, required=True, help="capture folder (main_W.jpg, ref_T.jpg, capture.json)")
    p.add_argument("--base-tree", type=Path, help="the other checkout (e.g. a worktree of main)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=2, help="model infer --threads")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return
    if args.base_tree is None:
        p.error("--base-tree is required")
    here = Path(__file__).resolve().parents[1]
    trees = {"this": here, "base": args.base_tree.resolve()}
    load0 = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory(prefix="hzsr-bench-serial-") as tmp:
        for r in range(args.rounds):
            for k in (("this", "base") if r % 2 == 0 else ("base", "this")):
                runs[k].append(_run(trees[k], args, Path(tmp) / f"{k}_{r}.jpg"))
    keys = list(runs["this"][0])
    out = {
        "benchmark": "infer_serial", "capture": str(args.capture), "rounds": args.rounds, "threads": args.threads,
        "trees": {k: str(v) for k, v in trees.items()},
        "load_avg_1m_before": load0, "load_avg_1m_after": os.getloadavg()[0],
        "medians": {k: {m: statistics.median(x[m] for x in runs[k]) for m in keys if runs[k][0][m] is not None}
                    for k in runs},
        "base_over_this_median_of_rounds": {
            m: statistics.median(b[m] / t[m] for b, t in zip(runs["base"], runs["this"], strict=True))
            for m in keys if all(isinstance(x[m], float) and x[m] > 0 for x in runs["base"] + runs["this"])},
        "rounds_data": runs,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
