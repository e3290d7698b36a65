"""Benchmark: how long a 12 MP ``hzsr model infer`` process takes to end after its verb returned (issue 19).

In ``--rounds`` interleaved rounds, two fresh processes run ``hzsr.cli.main`` on the capture
``bench/infer.py --keep DIR`` rendered (``DIR/session/captures/c00000``; 2 threads) and then end
either as before (``sys.exit``: the interpreter's teardown) or through ``hzsr.cli.finish`` (what
the ``hzsr`` command now does: exit handlers, flush, ``os._exit``). ``exit_s`` is the parent's
clock at the child's exit minus the child's clock when ``main`` returned (same host clock);
medians, the per-round ratio, the 1-minute load average before and after.

Usage: ``python bench/infer_exit.py --keep DIR [--rounds 3]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CODE = r'''
import sys, time
from hzsr.cli import finish, main
rc = main(sys.argv[2:])
sys.stderr.write("RETURNED %f\n" % time.time())
sys.stderr.flush()
if sys.argv[1] == "finish":
    finish(rc)
sys.exit(rc)
'''


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", required=True, help="bench/infer.py's --keep folder (its rendered capture)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    cap = Path(args.keep) / "session" / "captures" / "c00000"
    argv = ["model", "infer", str(cap / "main_W.jpg"), "--ref", str(cap / "ref_T.jpg"), "--meta",
            str(cap / "capture.json"), "--out", str(Path(args.keep) / "out_exit.jpg"), "--json"]
    env = dict(os.environ, HZSR_TORCH_THREADS="2",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    runs: dict[str, list[float]] = {"teardown": [], "finish": []}
    load0 = os.getloadavg()[0]
    for i in range(args.rounds):
        for mode in (("teardown", "finish") if i % 2 == 0 else ("finish", "teardown")):
            r = subprocess.run([sys.executable, "-c", CODE, mode, *argv], capture_output=True, text=True, env=env,
                               check=True, cwd=Path(__file__).resolve().parents[1])
            end = time.time()
            returned = float(next(x for x in r.stderr.splitlines() if x.startswith("RETURNED ")).split()[1])
            runs[mode].append(end - returned)
    print(json.dumps({
        "benchmark": "infer_exit", "rounds": args.rounds, "load_avg_1m_before": load0,
        "load_avg_1m_after": os.getloadavg()[0],
        "median_exit_s": {k: statistics.median(v) for k, v in runs.items()},
        "ratio_teardown_over_finish": statistics.median(a / b for a, b in zip(runs["teardown"], runs["finish"],
                                                                               strict=True)),
        "runs": {k: [round(x, 4) for x in v] for k, v in runs.items()}}, indent=1))


if __name__ == "__main__":
    main()
