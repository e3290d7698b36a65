"""Why the quick check leaves the 12 MP speed captures ``undecided`` (issue 18). Prints JSON.

``bench/qa.py --part speed`` runs the quick check on each 12 MP capture alone
(``analyse_capture(quick=True)``): no session memory and no earlier session of the phone. This
script takes the same captures (``SimConfig(captures, seed, size=(4000, 3000))``, default 4 and
seed 2028, as ``--part speed``) and reports, per capture:

- the figures that leave the lone quick analysis undecided (``CaptureQA.undecided_by``), and the
  depth figure they come from beside ``qa check``'s (raw, the session's offset, calibrated);
- the live quick check (``quick_check``) in capture order, as the capture line runs it, first with
  nothing carried, then after ``qa check`` of an earlier session of the same phones (the same seed
  at 480x360: the simulator draws the phones' serials from the seed), whose offsets
  ``rig_offset`` carries.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import pandas as pd

from hzsr.qa.capture_qa import _SESSION_CARRIED, _SESSION_DEPTHS, _SESSION_FOCUS, analyse_capture, quick_check
from hzsr.qa.check import run_check
from hzsr.qa.config import QAConfig
from hzsr.sim.simsession import SimConfig, simulate_session

DEPTH = ("subject_depth_departure_d", "session_depth_offset_d", "subject_depth_departure_calibrated_d")


def _live(sess: Path, cfg: QAConfig) -> list[list]:
    """``quick_check`` over the session in capture order, from a fresh capture line."""
    for store, key in ((_SESSION_DEPTHS, sess / "captures"), (_SESSION_FOCUS, sess / "captures"),
                       (_SESSION_CARRIED, sess)):
        store.pop(str(key.resolve()), None)
    out = []
    for d in sorted((sess / "captures").iterdir()):
        v, why = quick_check(d, cfg)
        out.append([d.name, v, why[-1] if v == "undecided" else ""])
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--captures", type=int, default=4)
    p.add_argument("--seed", type=int, default=2028)
    p.add_argument("--keep", default=None, help="write the sessions here and keep them (default: a temp dir)")
    a = p.parse_args(argv)
    cv2.setNumThreads(1)
    cfg = QAConfig()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.keep) if a.keep else Path(tmp)
        big = simulate_session(root / "s12mp", SimConfig(captures=a.captures, seed=a.seed, size=(4000, 3000)),
                               progress=False)
        lone = {}
        for d in sorted((big / "captures").iterdir()):
            q = analyse_capture(d, cfg, quick=True, thumbs=False)
            v = q.decided()
            lone[d.name] = {"verdict": v.value if v is not None else "undecided", "undecided_by": q.undecided_by(),
                            "quick_subject_depth_departure_d": round(q.row.get(DEPTH[0], float("nan")), 4)}
        live_alone = _live(big, cfg)  # before qa check: nothing carried, no summary of its own read
        run_check(big, cfg, workers=1, progress=False, report=False)
        df = pd.read_csv(big / "qa" / "qa.csv")
        for _, r in df.iterrows():
            lone[r["capture_id"]].update({"qa_check_verdict": r["verdict"],
                                          **{f"qa_check_{k}": round(float(r[k]), 4) for k in DEPTH if k in r}})
        small = simulate_session(root / "s480", SimConfig(captures=a.captures, seed=a.seed, size=(480, 360)),
                                 progress=False)
        run_check(small, cfg, workers=1, progress=False, report=False)
        carried = json.loads((small / "qa" / "summary.json").read_text()).get("depth_offset")
        live_carried = _live(big, cfg)
    th = cfg.thresholds
    return {"benchmark": "qa_quick_lone", "seed": a.seed, "captures": a.captures,
            "depth_departure_warn_fail_d": [th.warn_depth_departure_d, th.fail_depth_departure_d],
            "lone_quick_vs_qa_check": lone, "live_quick_nothing_carried": live_alone,
            "earlier_session_record": carried, "live_quick_after_earlier_session": live_carried}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(), indent=2, default=str) + "\n")
