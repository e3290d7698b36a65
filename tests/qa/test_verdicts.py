"""Verdicts on simulated sessions with injected defects (the truth says which capture has which).

The default test runs one capture per defect plus clean ones at 640x480; the slow one runs enough
captures for the issue's percentages (>= 95 % of defects failed with the right reason, <= 5 % of
clean captures failed). Thresholds were set on another seed (docs/qa.md).
"""

from __future__ import annotations

import pandas as pd
import pytest

from hzsr.qa.check import run_check
from hzsr.qa.config import QAConfig
from hzsr.sim.defects import DEFECTS
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sim.truth import load_session_truth
from hzsr.sync.check import run_sync_check

RIGHT_REASON = {"refocus": {"focus_mismatch"}, "moving_skew": {"sync_skew", "moving_object"},
                "motion_blur": {"motion_blur"}, "rig_bump": {"large_shift", "no_overlap"},
                "overexposure": {"overexposed"}, "wrong_depth": {"defocused"},
                "rig_knocked_off": {"no_overlap", "large_shift"}}


#: Issue 11's five defects. ``wrong_depth`` is often invisible (a far scene's planes all lie in T's
#: depth of field): the labelled set of ``bench/qa.py --part labelled`` scores it by its visibility.
FIVE = tuple(d for d in DEFECTS[:6] if d != "wrong_depth")  # rig_knocked_off: tests/qa/test_no_overlap.py


def _run(tmp_path, captures: int, seed: int, workers: int = 1):
    defects = {k: FIVE[(k // 2) % len(FIVE)] for k in range(1, captures, 2)}
    sess = simulate_session(tmp_path / "s", SimConfig(captures=captures, seed=seed, truth=True, defects=defects),
                            progress=False)
    # Defects are in the truth only: nothing in the session says which capture carries one.
    assert "defects" not in (sess / "session.json").read_text()
    truth = {c["capture_id"]: c["defect"] for c in load_session_truth(sess)["captures"]}
    run_sync_check(sess, plots=False)
    run_check(sess, QAConfig(), workers=workers, report=False, maps=False, progress=False)
    df = pd.read_csv(sess / "qa" / "qa.csv").set_index("capture_id")
    hit, clean_fail, missed = 0, 0, []
    for cid, defect in truth.items():
        row = df.loc[cid]
        fails = {r.split(": ")[1] for r in str(row["reasons"]).split(" | ") if r.startswith("fail: ")}
        if defect:
            ok = row["verdict"] == "fail" and bool(fails & RIGHT_REASON[defect])
            hit += ok
            if not ok:
                missed.append((cid, defect, row["codes"]))
        elif row["verdict"] == "fail":
            clean_fail += 1
            missed.append((cid, None, row["codes"]))
    n_def = sum(1 for d in truth.values() if d)
    return hit / n_def, clean_fail / (len(truth) - n_def), missed


def test_each_defect_is_failed_with_its_reason(tmp_path):
    hit, clean_fail, missed = _run(tmp_path, captures=10, seed=4242)
    assert hit == 1.0 and clean_fail == 0.0, missed


@pytest.mark.slow
def test_verdict_rates_on_100_captures(tmp_path):
    hit, clean_fail, missed = _run(tmp_path, captures=100, seed=777, workers=2)
    assert hit >= 0.95 and clean_fail <= 0.05, (hit, clean_fail, missed)
