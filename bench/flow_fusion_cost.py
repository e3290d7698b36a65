"""What ``flow_fusion`` costs in the flow stage, as at 12 MP (issue20epic).

A 12 MP capture's dense flow runs on the 512x384 flow grid at DIS level 0 (a W pixel spans under 2
grid px), whatever the capture's size: the flow stage's cost does not depend on the megapixels.
This runs the pipeline's ``align`` on simulated captures at that grid and level
(``flow_level_max=0``) and times its ``dense_flow`` stage (DIS forward and backward, plus the
fusion) for each ``--modes`` value, in ``--rounds`` interleaved rounds (the order rotates);
per round and capture the ratio to the first mode, then the median. CPU time of the process
(``time.process_time``, all threads) and wall; the 1-minute load average before and after.

Usage::

    python bench/flow_fusion_cost.py SESSION [SESSION ...] [--captures 4] [--rounds 3]
        [--modes none,modes] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_truth import pipeline_config_with  # noqa: E402

from hzsr.baseline_model.checkpoint import load_model  # noqa: E402
from hzsr.baseline_model.pipeline import HZSRPipeline  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="+", type=Path)
    ap.add_argument("--captures", type=int, default=4, help="the first N captures of the sessions, in the order given")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="none,modes")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    modes = a.modes.split(",")
    lc = load_model(None)
    pipes = {m: HZSRPipeline(lc.model, pipeline_config_with(lc, ["flow_level_max=0", f"flow_fusion={m}"]))
             for m in modes}
    caps = []
    for s in a.sessions:
        caps += sorted(p for p in (s / "captures").iterdir() if (p / "main_W.jpg").exists())
    caps = caps[:a.captures]
    imgs = []
    for c in caps:
        w = cv2.cvtColor(cv2.imread(str(c / "main_W.jpg")), cv2.COLOR_BGR2RGB)
        r = cv2.cvtColor(cv2.imread(str(c / "ref_T.jpg")), cv2.COLOR_BGR2RGB)
        imgs.append((w, r, json.loads((c / "capture.json").read_text())))
    load0 = os.getloadavg()[0]
    wall: dict[str, list[list[float]]] = {m: [] for m in modes}
    cpu: dict[str, list[list[float]]] = {m: [] for m in modes}
    for rnd in range(a.rounds):
        order = modes[rnd % len(modes):] + modes[:rnd % len(modes)]
        for m in order:
            rw, rc = [], []
            for w, r, meta in imgs:
                c0 = time.process_time()
                al = pipes[m].align(w, r, meta)
                rc.append(time.process_time() - c0)  # the whole align; the stage's wall below
                rw.append(al.timings["dense_flow"])
                if al.flow_level != 0:
                    raise RuntimeError(f"expected DIS level 0, got {al.flow_level}")
            wall[m].append(rw)
            cpu[m].append(rc)
    load1 = os.getloadavg()[0]
    base = modes[0]
    res = {"captures": [str(c) for c in caps], "rounds": a.rounds, "load_before": load0, "load_after": load1,
           "grid": list(pipes[base].cfg.qa.align.flow_size), "level": 0}
    for m in modes:
        w = np.array(wall[m])
        c = np.array(cpu[m])
        dw = w - np.array(wall[base])  # rounds x captures
        dc = c - np.array(cpu[base])
        res[m] = {"dense_flow_wall_s_median": round(float(np.median(w)), 4),
                  "align_cpu_s_median": round(float(np.median(c)), 4),
                  "dense_flow_wall_ratio_vs_" + base: round(float(np.median(w / np.array(wall[base]))), 3),
                  "dense_flow_wall_extra_s_vs_" + base: round(float(np.median(w - np.array(wall[base]))), 4),
                  "align_cpu_extra_s_vs_" + base: round(float(np.median(c - np.array(cpu[base]))), 4),
                  # per capture, the median over rounds: the worst capture (one with the most hypotheses)
                  "dense_flow_wall_extra_s_worst_capture": round(float(np.max(np.median(dw, 0))), 4),
                  "align_cpu_extra_s_worst_capture": round(float(np.max(np.median(dc, 0))), 4)}
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        a.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
