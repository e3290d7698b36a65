"""Benchmark: CPU time an idle OpenMP worker spins away per parallel region, per ``GOMP_SPINCOUNT`` (issue 19).

Calibrates ``threads.SPIN_COUNT``: each setting runs in a fresh process (OpenMP reads its
environment once, at load) that times ``--regions`` times one 2-thread torch op (a multiply of 1 M
floats) followed by a ``--gap-ms`` sleep, and reports the process's CPU time (user + system) per
region. The sleep is longer than any spin, so the CPU time above ``GOMP_SPINCOUNT=0`` is the spin a
worker burns before it sleeps: the waste per region when the next one does not come in time.
The 1-minute load average is recorded before and after.

Usage: ``python bench/omp_spin.py [--counts 0,10000,30000,100000,300000] [--regions 200] [--gap-ms 20]``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _child(regions: int, gap_s: float) -> None:
    import torch

    torch.set_num_threads(2)
    x = torch.rand(1 << 20)
    for _ in range(5):  # warm-up: the OpenMP team exists
        x.mul_(1.0)
    c0 = os.times()
    for _ in range(regions):
        x.mul_(1.0)
        time.sleep(gap_s)
    c1 = os.times()
    print(json.dumps({"cpu_ms_per_region": 1e3 * (c1.user + c1.system - c0.user - c0.system) / regions}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", default="0,10000,30000,100000,300000", help="GOMP_SPINCOUNT values; 'passive' too")
    p.add_argument("--regions", type=int, default=200)
    p.add_argument("--gap-ms", type=float, default=20.0)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args.regions, args.gap_ms / 1e3)
        return
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    base["OMP_NUM_THREADS"] = "2"
    load0 = os.getloadavg()[0]
    res = {}
    for c in args.counts.split(","):
        env = dict(base, **({"OMP_WAIT_POLICY": "PASSIVE"} if c == "passive" else {"GOMP_SPINCOUNT": c}))
        cp = subprocess.run([sys.executable, __file__, "--child", "--regions", str(args.regions),
                             "--gap-ms", str(args.gap_ms)], capture_output=True, text=True, env=env, check=True)
        res[c] = round(json.loads(cp.stdout.strip().splitlines()[-1])["cpu_ms_per_region"], 3)
    print(json.dumps({"benchmark": "omp_spin", "cpus": os.cpu_count(), "regions": args.regions, "gap_ms": args.gap_ms,
                      "load_avg_1m_before": load0, "load_avg_1m_after": os.getloadavg()[0],
                      "cpu_ms_per_region": res}, indent=2))


if __name__ == "__main__":
    main()
