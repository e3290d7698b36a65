"""T vs T's ``large_shift`` (issue 18, helper issue18z): a departure along the mount's baseline
that no real depth explains is the rig, and the two Ts' constant offset is the session's.

The virtual rig: T's focal length 3.95 widths (120 mm equivalent), the mount's baseline 7 cm
along the image's y axis, so ``f |b|`` is 0.277 of the width per diopter."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from hzsr.qa.capture_qa import (
    TT_SHIFT_TAG,
    CaptureQA,
    _judge_registration,
    grade_tt_shift,
    quick_tt_regrade,
    session_tt_offset,
    tt_shift_departure,
)
from hzsr.qa.config import QAConfig

W = 480
FX = 3.95 * W  # T's focal length in analysis px (hzsr/sim/profiles.py: 15800 px at 4000 wide)


def _tt_stats(dx: float, dy: float) -> SimpleNamespace:
    """A T-vs-T registration that lines up (many inliers, 30 dB) with the AF subject at (dx, dy)."""
    return SimpleNamespace(stats={"shift_used": 1.0, "inliers": 200, "psnr_db": 30.0, "occluded_frac": 0.05,
                                  "subject_dx": dx, "subject_dy": dy, "shift_dx": dx, "shift_dy": dy})


def _judge(dx: float, dy: float, focus_d: float, cfg: QAConfig) -> CaptureQA:
    out = CaptureQA("c00007", row={"analysis_width": W})
    e = -FX * np.asarray(cfg.rig.ref_baseline_m) * focus_d  # expected_parallax
    _judge_registration(out, {"tt": _tt_stats(e[0] + dx, e[1] + dy)}, W, cfg, {"tt": e}, fx_t=FX, focus_d=focus_d)
    return out


def _level(out: CaptureQA) -> str | None:
    lv = [r.level.value for r in out.reasons if r.code == "large_shift"]
    return lv[0] if lv else None


def test_a_departure_along_the_baseline_beyond_infinity_is_a_bump():
    """A landscape focused at 20 m (0.05 D) whose reference T was pitched by 0.35 of the width
    along the mount's baseline: read as a depth, the AF subject would lie 1.2 D beyond infinity.
    Across-only (the rule before) it passed; it fails now. The same departure the other way puts
    the subject at 1.3 D (0.77 m): a real depth, which ``defocused`` judges, not ``large_shift``."""
    cfg = QAConfig()
    bumped = _judge(0.0, 0.35 * W, 0.05, cfg)
    assert bumped.row["tt_implied_depth_d"] < -1.0 and bumped.row["tt_along_counted"] == 1
    assert _level(bumped) == "fail", bumped.reasons
    assert "beyond infinity" in bumped.reasons[0].message
    nearer = _judge(0.0, -0.35 * W, 0.05, cfg)
    assert 1.0 < nearer.row["tt_implied_depth_d"] < 1.0 / cfg.rig.t_min_focus_m
    assert _level(nearer) is None and nearer.row["tt_along_counted"] == 0


def test_a_departure_along_the_baseline_nearer_than_t_focuses_is_a_bump():
    """A portrait focused at 2 m (0.5 D) whose subject would sit at 3.8 D (0.26 m), nearer than T's
    minimum focus distance (0.3 m): the rig; a clean near foreground at 0.7 m (1.4 D) is a depth."""
    cfg = QAConfig()
    along = -(3.8 - 0.5) * FX * 0.07
    bumped = _judge(0.0, along, 0.5, cfg)
    assert _level(bumped) is None  # a lone capture: its Ts' rotation (up to 0.37 D) may explain it
    grade_tt_shift(bumped, cfg, (0.0, 0.0))  # the session's offset known (here none)
    assert bumped.row["tt_implied_depth_d"] > 1.0 / cfg.rig.t_min_focus_m + cfg.rig.tt_depth_margin_d
    assert _level(bumped) == "fail", bumped.reasons
    near_fg = _judge(0.0, -(1.4 - 0.5) * FX * 0.07, 0.5, cfg)
    grade_tt_shift(near_fg, cfg, (0.0, 0.0))
    assert _level(near_fg) is None


def test_the_across_part_still_counts_alone_where_the_depth_is_real():
    cfg = QAConfig()
    out = _judge(0.30 * W, -0.05 * W, 0.05, cfg)  # a yaw bump; along: the subject 0.2 D nearer
    assert out.row["tt_along_counted"] == 0 and abs(out.row["tt_shift_departure_px"] - 0.30 * W) < 1e-6
    assert _level(out) == "fail"


def test_the_sessions_offset_is_removed_and_bounded():
    """lab-1805 c00007 (development data since the 1805/1806 judge): the two Ts' relative rotation
    reads +0.04 of the width across in every capture of the session; a bump of -0.30 read -0.27
    and only warned. Less the session's median it fails. A median beyond the rotation bound (the
    rig bumped for most of the session) is clipped to the bound, not taken whole."""
    cfg = QAConfig()
    rows = [{"tt_departure_dx": 0.04 * W + k, "tt_departure_dy": 0.0} for k in range(-2, 3)]
    off = session_tt_offset(rows, cfg.rig.min_captures_for_offset)
    assert off is not None and abs(off[0] - 0.04 * W) < 1e-9
    out = _judge(-0.27 * W, 0.0, 0.05, cfg)
    assert _level(out) == "warn"
    grade_tt_shift(out, cfg, off)
    assert _level(out) == "fail" and out.row["session_tt_offset_dx"] == off[0]
    assert sum(r.code == "large_shift" for r in out.reasons) == 1  # graded again, not twice
    clean = _judge(0.0, 0.0, 0.05, cfg)
    grade_tt_shift(clean, cfg, (0.45 * W, 0.0))  # a median of bumps: clipped to tan(1.5 deg) f
    bound = FX * np.tan(np.radians(cfg.rig.tt_rotation_max_deg))
    assert abs(clean.row["session_tt_offset_dx"] - bound) < 1e-6 and _level(clean) is None


def test_the_quick_checks_spread_covers_the_unknown_offset():
    """A lone quick capture does not know the Ts' offset: a departure within the rotation bound
    of a level is undecided; with the session's offset known to a few px it is decided."""
    cfg = QAConfig()
    out = CaptureQA("c", row={"analysis_width": W}, margin=0.1, abs_margins={TT_SHIFT_TAG: 0.002})
    e = -FX * np.asarray(cfg.rig.ref_baseline_m) * 0.05
    _judge_registration(out, {"tt": _tt_stats(e[0] + 0.25 * W, e[1])}, W, cfg, {"tt": e}, fx_t=FX, focus_d=0.05)
    assert out.decided() is None
    grade_tt_shift(out, cfg, (0.0, 0.0), 2.0)
    assert out.decided() is not None and out.decided().value == "warn"
    assert tt_shift_departure(out.row, cfg)[2] is False


def test_the_along_part_needs_the_keypoints_anchor():
    """make demo's motion-blurred portrait (c00011): 11 T-vs-T inliers, the global shift not used,
    the dense flow from zero read the subject +71 px along the baseline where the rig's parallax
    says -76 ("beyond infinity"). Unanchored, only the part across counts."""
    cfg = QAConfig()
    out = CaptureQA("c00011", row={"analysis_width": W})
    e = -FX * np.asarray(cfg.rig.ref_baseline_m) * 0.43
    reg = _tt_stats(e[0], e[1] + 0.23 * W)
    reg.stats.update(shift_used=0.0, inliers=11)
    out.row["tt_shift_used"] = 0.0  # as analyse_capture copies the pairing's stats into the row
    _judge_registration(out, {"tt": reg}, W, cfg, {"tt": e}, fx_t=FX, focus_d=0.43)
    grade_tt_shift(out, cfg, (0.0, 0.0))  # with the session's offset, as qa check grades it
    assert out.row["tt_implied_depth_d"] < -0.3 and out.row["tt_along_counted"] == 0
    assert _level(out) is None
    out.row["tt_shift_used"] = 1.0  # the same reading anchored by keypoints is the rig
    grade_tt_shift(out, cfg, (0.0, 0.0))
    assert out.row["tt_along_counted"] == 1 and _level(out) == "warn"


def test_the_quick_check_does_not_decide_what_qa_check_grades_alone():
    """review2: the quick check takes the Ts' offset from its second capture on
    (check.quick_min_captures_for_offset 2), qa check from rig.min_captures_for_offset (3). In a
    session of two captures both 0.23 of the width across the baseline, qa check grades each alone
    (offset 0): warn. The quick check's offset (0.23 clipped to the rotation bound, 0.10) said
    `pass`, decided: a verdict qa check contradicts. Until qa check would take the offset, the
    quick check's spread covers the lone grade too."""
    cfg = QAConfig()
    e = -FX * np.asarray(cfg.rig.ref_baseline_m) * 0.05

    def capture() -> CaptureQA:
        out = CaptureQA("c", row={"analysis_width": W}, margin=0.1, abs_margins={TT_SHIFT_TAG: 0.002})
        _judge_registration(out, {"tt": _tt_stats(e[0] + 0.23 * W, e[1])}, W, cfg, {"tt": e}, fx_t=FX, focus_d=0.05)
        return out

    seen = [{"tt_departure_dx": 0.23 * W + k, "tt_departure_dy": 0.0} for k in (0.0, 1.0)]
    lone = capture()
    assert _level(lone) == "warn"  # what qa check says of a two-capture session
    two = capture()
    quick_tt_regrade(two, seen, cfg)
    assert two.decided() is None or two.decided().value == "warn", two.spread
    # A third capture: qa check takes the session's offset as well, and the quick check decides.
    three = capture()
    quick_tt_regrade(three, seen + [{"tt_departure_dx": 0.23 * W - 1.0, "tt_departure_dy": 0.0}], cfg)
    assert three.decided() is not None and three.decided().value == "pass", three.spread


def test_an_offset_known_from_one_capture_leaves_the_quick_check_undecided_not_nan():
    """review2: one capture seen (check.quick_min_captures_for_offset and rig.min_captures_for_offset
    1) gives ``median_margin`` inf; the 3x3 box's offsets at +-inf read NaN figures, which no
    threshold ranks, and 0.18 of the width across was decided `pass` where qa check's offset may
    lie anywhere within the rotation bound (0.10 of the width: up to 0.28, fail). The box is
    clipped to that bound, as qa check clips its offset."""
    cfg = QAConfig()
    cfg = replace(cfg, check=replace(cfg.check, quick_min_captures_for_offset=1),
                  rig=replace(cfg.rig, min_captures_for_offset=1))
    e = -FX * np.asarray(cfg.rig.ref_baseline_m) * 0.05
    out = CaptureQA("c", row={"analysis_width": W}, margin=0.1, abs_margins={TT_SHIFT_TAG: 0.002})
    _judge_registration(out, {"tt": _tt_stats(e[0] + 0.18 * W, e[1])}, W, cfg, {"tt": e}, fx_t=FX, focus_d=0.05)
    quick_tt_regrade(out, [{"tt_departure_dx": 0.0, "tt_departure_dy": 0.0}], cfg)
    assert out.decided() is None, out.spread
    assert all(np.isfinite(v) for _, v in out.graded)
