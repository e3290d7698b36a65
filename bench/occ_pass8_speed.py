"""Maps pass 8's cost at 12 MP: full QA with `alike_fold`'s REF disparity by full SGM (the branch)
against the 3-way pass (maps pass 7, main's map), paired, interleaved rounds.

`PYTHONPATH=. python bench/occ_pass8_speed.py --rounds 4 > out.json`

The captures are `bench/qa.py --part speed`'s (seed 2028, 4 captures at 4000x3000), timed on one
core as that part times them (CPU of `analyse_capture` and its map images); each round analyses
every capture both ways, the order swapped every round, beside the decode of its three JPEGs.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

import hzsr.qa.capture_qa as cq
from hzsr.qa import stereo_occlusion as so
from hzsr.qa.capture_qa import analyse_capture
from hzsr.qa.config import QAConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qa import SimConfig, _write_images, simulate_session  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=2028)
    a = ap.parse_args(argv)
    cv2.setNumThreads(1)
    cfg = QAConfig()
    load0 = os.getloadavg()[0]
    fns = {"branch": functools.partial(so.alike_fold, ref_mode=cv2.STEREO_SGBM_MODE_HH),  # maps pass 8's option
           "main_map": functools.partial(so.alike_fold, ref_mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)}
    cpu: dict[str, list[float]] = {"branch": [], "main_map": [], "decode": []}
    verdicts: dict[str, list[str]] = {"branch": [], "main_map": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sess = simulate_session(root / "speed", SimConfig(captures=4, seed=a.seed, size=(4000, 3000)), progress=False)
        dirs = sorted((sess / "captures").iterdir())

        def full(d: Path, name: str):
            cq.alike_fold = fns[name]  # capture_qa calls the name it imported
            try:
                q = analyse_capture(d, cfg)
                _write_images(q, root / f"maps_{name}")
            finally:
                cq.alike_fold = so.alike_fold
            return q

        for d in dirs:  # warm-up: imports, caches
            full(d, "branch")
        for r in range(a.rounds):
            for d in dirs:
                c0 = time.process_time()
                for s in ("main_W", "main_T", "ref_T"):
                    cv2.imread(str(d / f"{s}.jpg"))
                cpu["decode"].append(time.process_time() - c0)
                for name in (("branch", "main_map") if r % 2 == 0 else ("main_map", "branch")):
                    c0 = time.process_time()
                    q = full(d, name)
                    cpu[name].append(time.process_time() - c0)
                    if r == 0:
                        verdicts[name].append(q.verdict.value)
    pairs = list(zip(cpu["branch"], cpu["main_map"], strict=True))
    return {"benchmark": "occ_pass8_speed", "rounds": a.rounds, "captures": len(dirs), "seed": a.seed,
            "size": [4000, 3000], "load_1min_start": round(load0, 2), "load_1min_end": round(os.getloadavg()[0], 2),
            "cpu_median_s": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
            "paired_ratio_branch_to_main_map_median": round(statistics.median([b / m for b, m in pairs]), 3),
            "paired_diff_s_median": round(statistics.median([b - m for b, m in pairs]), 3),
            "verdicts": verdicts, "goal_full_qa_s": 1.5}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(), indent=1) + "\n")
