"""Benchmark: building the default runtime's UNet runner in a fresh process, this tree against another (issue 19).

Each process loads the shipped checkpoint's cached ONNX graph (``runtime.checkpoint_graph``) and
times ``graph_runner(..., "openvino-bf16", 2)``: importing OpenVINO, then compiling (or, with the
compiled-model cache, importing) the UNet and its probe or warm-up inference. ``--rounds`` interleaved
rounds (the order alternates), medians and the median of the per-round ratios base / this; the
1-minute load average before and after. The cache (``$HZSR_CACHE``) is the user's: run ``hzsr model
infer`` once first so this tree's entry exists (``cache`` in the rounds says ``hit``).

Usage: ``python bench/ov_runner_build.py --base-tree DIR [--rounds 5]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CODE = r'''
import json, os, time
def cpu():
    t = os.times()
    return t.user + t.system
from hzsr.baseline_model.checkpoint import shipped_checkpoint_path
from hzsr.baseline_model.runtime import checkpoint_graph, graph_runner
g = checkpoint_graph(shipped_checkpoint_path())
w, c = time.perf_counter(), cpu()
r = graph_runner(g.onnx, g.size_multiple, "openvino-bf16", 2)
print(json.dumps({"wall_s": time.perf_counter() - w, "cpu_s": cpu() - c, "cache": getattr(r, "cache", None)}))
'''


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-tree", required=True, help="another checkout (e.g. a worktree of main)")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    trees = {"base": str(Path(args.base_tree).resolve()), "this": str(Path(__file__).resolve().parents[1])}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    load0 = os.getloadavg()[0]
    for i in range(args.rounds):
        for k in (list(trees) if i % 2 == 0 else list(trees)[::-1]):
            # In the tree's own folder: ``python -c`` puts the working folder first on the path.
            r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True,
                               cwd=trees[k], env=dict(os.environ, PYTHONPATH=trees[k]))
            runs[k].append(json.loads(r.stdout.strip().splitlines()[-1]))
    pairs = list(zip(runs["base"], runs["this"], strict=True))
    print(json.dumps({
        "benchmark": "ov_runner_build", "trees": trees, "rounds": args.rounds,
        "load_avg_1m_before": load0, "load_avg_1m_after": os.getloadavg()[0],
        "median_wall_s": {k: statistics.median(x["wall_s"] for x in v) for k, v in runs.items()},
        "median_cpu_s": {k: statistics.median(x["cpu_s"] for x in v) for k, v in runs.items()},
        "speedup_wall_base_over_this": statistics.median(a["wall_s"] / b["wall_s"] for a, b in pairs),
        "cpu_ratio_base_over_this": statistics.median(a["cpu_s"] / b["cpu_s"] for a, b in pairs),
        "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
