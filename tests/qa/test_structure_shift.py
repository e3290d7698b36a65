"""``large_shift`` where the inlier gate refuses T vs T's keypoint vote (issue 18, helper issue18w).

``make demo``'s bump of the reference phone (-0.50 of the width, a moving scene) kept 10 T-vs-T
inliers, under ``align.min_inliers`` (12): the gate refused the vote, the dense flow started from
the rig's parallax and stayed there, and the structure search on the refused vote found the bump
(-0.51 of the width, correlation 0.73) but only measured it: the capture was judged warn. Now
``large_shift`` reads the search's peak where it correlates ``check.tt_shift_from_structure_min_ncc``
(``capture_qa.tt_structure_shift``), in ``qa check`` and the capture line's quick check alike.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from hzsr.qa import capture_qa
from hzsr.qa.config import QAConfig
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sim.truth import load_capture_truth


@pytest.fixture(scope="module")
def bumped(tmp_path_factory):
    """One capture of an architecture scene with the reference phone bumped (0.45 of the width)."""
    sess = simulate_session(tmp_path_factory.mktemp("structure_shift") / "s",
                            SimConfig(captures=1, seed=1, size=(640, 480), kinds=("architecture",),
                                      defects={0: "rig_bump"}, truth=True), progress=False)
    return sess / "captures" / "c00000"


def _refused(cfg: QAConfig) -> QAConfig:
    """The inlier gate refuses every keypoint vote (the demo's T vs T: 10 inliers of the 12 asked)."""
    return replace(cfg, align=replace(cfg.align, min_inliers=10**6))


def _large_shift(reasons) -> list[tuple[str, str]]:
    return [(r.level.value, r.message) for r in reasons if r.code == "large_shift"]


def test_a_bump_whose_vote_the_gate_refuses_fails_large_shift_from_the_structure_peak(bumped):
    cfg = _refused(QAConfig())
    out = capture_qa.analyse_capture(bumped, cfg, thumbs=False)
    row = out.row
    w = row["analysis_width"]
    assert row["tt_shift_used"] == 0.0  # the vote was refused ...
    assert row["tt_structure_ncc"] >= cfg.check.tt_shift_from_structure_min_ncc  # ... the views line up elsewhere
    # The dense flow stayed near the rig's parallax: the AF subject alone reads no bump.
    assert abs(row["tt_subject_departure_dx"]) < 0.1 * w
    assert row["tt_departure_from_structure"] == 1
    assert abs(row["tt_departure_dx"]) > cfg.thresholds.fail_shift_frac * w
    # The departure is the bump, sign and size: against the simulator's truth (the reference T's
    # yaw in T widths; +0.44 for this seed) and against the keypoints' own reading where their
    # vote stands (650 inliers here), within 0.03 of the width.
    truth = load_capture_truth(bumped.parent.parent, "c00000")[0]["defect_params"]["bump_frac_of_width"]
    assert row["tt_departure_dx"] / w == pytest.approx(truth, abs=0.03)
    voted = capture_qa.analyse_capture(bumped, QAConfig(), thumbs=False).row
    assert voted["tt_shift_used"] == 1.0 and "tt_departure_from_structure" not in voted
    assert row["tt_departure_dx"] / w == pytest.approx(voted["tt_departure_dx"] / w, abs=0.03)
    ls = _large_shift(out.reasons)
    assert [lv for lv, _ in ls] == ["fail"]
    assert "the shift the structure search lines the two views up at" in ls[0][1]
    assert "refused by the inlier gate" in ls[0][1]
    # The capture line's quick check reads it through the same rule and says the same.
    verdict, why = capture_qa.quick_check(bumped, cfg)
    assert verdict == "fail"
    assert any(t.startswith("large_shift: ") and "structure search" in t for t in why)


def test_without_the_rule_the_same_capture_reads_no_bump(bumped):
    """The old reading (the rule off: a correlation over 1 never reached): the AF subject's shift from
    the flow that started at the rig's parallax, no large_shift."""
    cfg = _refused(QAConfig())
    cfg = replace(cfg, check=replace(cfg.check, tt_shift_from_structure_min_ncc=1.01))
    out = capture_qa.analyse_capture(bumped, cfg, thumbs=False)
    assert "tt_departure_from_structure" not in out.row
    assert _large_shift(out.reasons) == []
