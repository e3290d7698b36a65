"""``defocused``'s fail level is fitted on every seen labelled seed (``bench/qa.py``'s
``depth_fail_fit`` on ``bench/qa_depth_seen.json``), not on the two calibration seeds' 2 positives."""

from __future__ import annotations

from hzsr.qa.config import Thresholds
from tests.bench_modules import bench_module


def _row(session: str, defect: str, dep: float) -> dict:
    return {"session": session, "capture_id": "c00000", "defect": defect, "depth_departure_calibrated_d": dep}


def test_fit_is_the_midpoint_of_the_gap_and_leaves_invisible_defects_out():
    with bench_module("qa") as qa:
        rows = [_row("a", "clean", 0.10), _row("a", "clean", -0.20), _row("a", "wrong_depth", -0.30),
                _row("b", "wrong_depth", 0.24), _row("b", "wrong_depth_invisible", 0.05),
                _row("b", "motion_blur", 0.12)]
        cut, spans = qa.depth_fail_fit(rows)
    assert abs(cut - 0.22) < 1e-9  # between the largest other (|-0.20|) and the smallest defect (0.24)
    assert spans["defective_n"] == 2 and spans["others_n"] == 3 and abs(spans["gap_d"] - 0.04) < 1e-9
    assert spans["wrong"] == []


def test_shipped_depth_fail_level_is_the_fit_on_every_seen_seed():
    """The shipped fail level is the fit on the seen rows, and it fails the seen miss lab-1816 c00023
    (0.232 D, blurred 2.22 px) and blind lab-1821 c00023 (0.248 D), which the calibration seeds'
    0.26 D only warned on, while the largest clean reading (lab-1819 c00054, 0.200 D) passes it."""
    with bench_module("qa") as qa:
        rows = qa.load_depth_seen(qa.DEPTH_SEEN_ROWS)
        cut, spans = qa.depth_fail_fit(rows)
        cal_cut, _ = qa.depth_fail_fit([r for r in rows if r["session"] in ("lab-1801", "lab-1802")])
    th = Thresholds()
    assert spans["defective_n"] >= 20 and {"lab-1819", "lab-1821", "lab-1822"} <= set(spans["sessions"])
    assert th.fail_depth_departure_d == round(cut, 3)
    assert th.warn_depth_departure_d == round(0.75 * cut, 3)
    by_id = {(r["session"], r["capture_id"]): abs(r["depth_departure_calibrated_d"]) for r in rows}
    for miss in (("lab-1816", "c00023"), ("lab-1821", "c00023")):
        assert cal_cut > by_id[miss] > th.fail_depth_departure_d
    assert by_id[("lab-1819", "c00054")] <= th.fail_depth_departure_d
