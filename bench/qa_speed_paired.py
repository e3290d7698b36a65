"""12 MP QA cost of two code trees, paired capture by capture (issue 18). Prints JSON.

Two persistent worker processes, one per tree (``PYTHONPATH=<tree>``), take the same capture in
turn, the order alternating; each measures, on one core (``cv2.setNumThreads(1)``), the CPU time
(``time.process_time``; user time and minor page faults from ``getrusage`` beside it) of the
baseline (the three JPEGs decoded at full size), full QA with its maps written, and the quick
analysis (``analyse_capture(quick=True, thumbs=False, row_figures=False)`` where the tree has ``row_figures``:
what the capture line's ``quick_check`` runs), as ``bench/qa.py --part speed`` times
them. On a shared machine two runs a minute apart differ by more than a 10 % change; adjacent
measurements of the two trees share the machine's state, so the median of the per-capture ratios
is the figure. The session: ``bench/qa.py --part speed``'s (``--seed 2028``, 4 captures at
4000x3000), simulated into ``--session`` unless it is there.

    python bench/qa_speed_paired.py --a /path/to/main --b . --rounds 4 --session /tmp/s12
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("decode", "full", "quick")


def worker(maps: Path) -> None:
    """Read capture folders from stdin; write each one's CPU figures as a JSON line."""
    import cv2

    from hzsr.qa.capture_qa import analyse_capture
    from hzsr.qa.check import _write_images
    from hzsr.qa.config import QAConfig

    cv2.setNumThreads(1)
    cfg = QAConfig()

    def decode(d: Path) -> None:
        for s in ("main_W", "main_T", "ref_T"):
            cv2.imread(str(d / f"{s}.jpg"))

    # The capture line's quick analysis: without the row figures no verdict reads where the tree
    # can leave them out (analyse_capture's row_figures, issue18q); a tree before it computes them all.
    lean = {"row_figures": False} if "row_figures" in inspect.signature(analyse_capture).parameters else {}
    fns = {"decode": decode, "full": lambda d: _write_images(analyse_capture(d, cfg), maps),
           "quick": lambda d: analyse_capture(d, cfg, quick=True, thumbs=False, **lean)}
    for line in sys.stdin:
        d, out = Path(line.strip()), {}
        for name in STAGES:
            r0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
            fns[name](d)
            out[name] = time.process_time() - c0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            out[f"{name}_user"], out[f"{name}_faults"] = r1.ru_utime - r0.ru_utime, r1.ru_minflt - r0.ru_minflt
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="first tree (e.g. main's checkout)")
    p.add_argument("--b", required=True, help="second tree")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--session", required=True, help="the 12 MP session (simulated here if missing)")
    p.add_argument("--seed", type=int, default=2028)
    p.add_argument("--captures", type=int, default=4)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: run as a worker
    a = p.parse_args(argv)
    if a.worker:
        worker(Path(a.worker))
        return {}
    sess = Path(a.session)
    if not (sess / "captures").is_dir():
        from hzsr.sim.simsession import SimConfig, simulate_session

        simulate_session(sess, SimConfig(captures=a.captures, seed=a.seed, size=(4000, 3000)), progress=False)
    dirs = sorted((sess / "captures").iterdir())
    trees = {"a": str(Path(a.a).resolve()), "b": str(Path(a.b).resolve())}
    procs = {k: subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--a", "-", "--b", "-",
                                  "--session", "-", "--worker", str(sess.parent / f"paired_maps_{k}")],
                                 cwd=t, env={**os.environ, "PYTHONPATH": t}, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for k, t in trees.items()}

    def ask(k: str, d: Path) -> dict:
        procs[k].stdin.write(f"{d}\n")
        procs[k].stdin.flush()
        return json.loads(procs[k].stdout.readline())

    for k in procs:
        ask(k, dirs[0])  # warm-up: imports, caches
    load0, res = os.getloadavg()[0], []
    for r in range(a.rounds):
        for i, d in enumerate(dirs):
            one = {"capture": d.name, "load": round(os.getloadavg()[0], 2)}
            for k in (("a", "b") if (r + i) % 2 == 0 else ("b", "a")):
                one[k] = ask(k, d)
            res.append(one)
    load1 = os.getloadavg()[0]
    for pr in procs.values():
        pr.stdin.close()
        pr.wait()

    def med(k, f):
        return round(statistics.median(x[k][f] for x in res), 3)

    keys = [f"{s}{x}" for s in STAGES for x in ("", "_user", "_faults")]
    return {"benchmark": "qa_speed_paired", "trees": trees, "pairs": len(res), "cpu_count": os.cpu_count(),
            "load_1min_start_end": [round(load0, 2), round(load1, 2)],
            "load_1min_min_max": [min(x["load"] for x in res), max(x["load"] for x in res)],
            "medians": {k: {f: med(k, f) for f in keys} for k in trees},
            "ratio_b_to_a_median_of_pairs": {f: round(statistics.median(x["b"][f] / x["a"][f] for x in res), 3)
                                             for f in ("decode", "full", "quick", "full_user", "quick_user")}}


if __name__ == "__main__":
    out = main()
    if out:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
