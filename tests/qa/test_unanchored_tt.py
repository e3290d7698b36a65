"""Main T vs reference T where the inlier gate refuses the keypoints' shift (issue 18, helper
issue18v, 1280x960): the dense flow starts from the rig's parallax at the focus distance
(``check.tt_unanchored_from_rig_parallax``), not from zero (a shaken T kept 8 inliers, DIS from zero
never reached the portrait's 181 px parallax and ``motion_blur`` was read on a misregistered pair);
and where both Ts had corners enough to match, the views are searched for shared structure
(``check.tt_structure_unanchored_min_matches``; a knocked-off phone's warp lined up on a night scene).
And ``large_shift`` where second_motion found two motions reads the static scene, not a mover at the
AF point (``check.tt_shift_from_static_scene``)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from hzsr.qa import capture_qa
from hzsr.qa.align import GlobalShift, global_translation
from hzsr.qa.config import QAConfig
from hzsr.sim.simsession import SimConfig, simulate_session


@pytest.fixture(scope="module")
def portrait(tmp_path_factory):
    """A clean near portrait at 1280x960: T vs T's parallax along the mount ~60 flow-grid px."""
    return simulate_session(tmp_path_factory.mktemp("unanchored") / "s",
                            SimConfig(captures=1, seed=10, size=(1280, 960), kinds=("portrait",)), progress=False)


def _unanchored(monkeypatch, sess, cfg):
    """``analyse_capture`` with every pairing's keypoints refused by the inlier gate (3 inliers at
    zero shift: what a 22 px smear left a 1280x960 portrait)."""
    monkeypatch.setattr(capture_qa, "global_translation",
                        lambda *a, **k: GlobalShift(0.0, 0.0, 3, 150))
    return capture_qa.analyse_capture(sess / "captures" / "c00000", cfg, thumbs=False)


def test_an_unanchored_t_vs_t_starts_from_the_rigs_parallax_and_registers(portrait, monkeypatch):
    cfg = QAConfig()
    anchored = capture_qa.analyse_capture(portrait / "captures" / "c00000", cfg, thumbs=False).row
    out = _unanchored(monkeypatch, portrait, cfg)
    row = out.row
    w = row["analysis_width"]
    assert row["tt_shift_used"] == 0.0 and row["tt_inliers"] < cfg.align.min_inliers
    # The flow started at the parallax of main T's focus distance ...
    assert (row["tt_shift_dx"], row["tt_shift_dy"]) == pytest.approx((row["tt_expected_dx"], row["tt_expected_dy"]))
    assert abs(row["tt_expected_dy"]) > 0.08 * w  # far enough that DIS from zero does not reach it
    # ... and reached the AF subject where the keypoints' registration puts it, with as good a warp.
    assert abs(row["tt_subject_dy"] - anchored["tt_subject_dy"]) < 0.01 * w
    assert row["tt_psnr_db"] > anchored["tt_psnr_db"] - 1.0
    assert "rig's parallax at the focus distance" in " ".join(r.message for r in out.reasons
                                                              if r.code == "shift_not_used")
    # The W crop pairings keep zero: the rig's own alignment there.
    assert (row["wt_shift_dx"], row["wt_shift_dy"]) == (0.0, 0.0)


def test_from_zero_shift_the_same_pair_does_not_register(portrait, monkeypatch):
    """What the switch changes: from zero (the old start) DIS does not follow the subject's parallax."""
    cfg = QAConfig()
    cfg = replace(cfg, check=replace(cfg.check, tt_unanchored_from_rig_parallax=False))
    anchored = capture_qa.analyse_capture(portrait / "captures" / "c00000", cfg, thumbs=False).row
    row = _unanchored(monkeypatch, portrait, cfg).row
    assert (row["tt_shift_dx"], row["tt_shift_dy"]) == (0.0, 0.0)
    assert abs(row["tt_subject_dy"] - anchored["tt_subject_dy"]) > 0.03 * row["analysis_width"]
    assert np.isfinite(row["tt_psnr_db"])


def _texture(rng, h: int, w: int) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)), (0, 0), 1.5)
    return np.clip(128 + 40 * noise / noise.std(), 0, 255).astype(np.float32)


def test_an_unanchored_vote_of_unrelated_views_is_searched_for_structure_and_shares_none():
    """A phone knocked off a scene: both Ts full of corners (44-74 ratio-test matches) that agree on
    no shift (1 inlier). The inlier gate refuses the vote; the structure search now measures the
    views' best correlation (0.04): no shared structure, ``no_overlap``. Before, an unanchored vote
    was never searched (NaN), and a knocked-off night or landscape shot whose warp lined up from
    the rig's parallax only warned (1280x960: lab-1802-knocked c00004, 0.03)."""
    from hzsr.qa.capture_qa import _shares_structure, tt_vote

    cfg = QAConfig()
    for seed in (1, 2, 3):
        rng = np.random.default_rng(seed)
        a, b = (_texture(rng, 480, 640).astype(np.uint8) for _ in range(2))
        found = global_translation(a, b, cfg)
        assert found.inliers < cfg.align.min_inliers
        assert found.matches >= cfg.check.tt_structure_unanchored_min_matches
        got, preferred, rival, seen, peak = tt_vote(a, b, found, (0.0, 20.0), cfg)
        assert (got, rival, peak) == (found, False, None)  # measured only: the shift stays the gate's
        assert seen < cfg.thresholds.fail_no_overlap_structure_ncc
        assert not _shares_structure({"structure_ncc": seen}, cfg.thresholds)


def test_a_shaken_t_of_the_same_view_that_the_gate_refuses_still_shares_structure():
    """The same search on a shaken main T (an 18 px line blur) against a sharp reference of the same
    view at the rig's parallax: 7 inliers (refused), and the views correlate 0.46: no no_overlap."""
    from hzsr.qa.capture_qa import _shares_structure, tt_vote
    from hzsr.sim.render import motion_blur

    cfg = QAConfig()
    h, w = 480, 640
    big = _texture(np.random.default_rng(3), h + 200, w + 200)
    src, ref = big[100:100 + h, 100:100 + w], big[100 - 72:100 - 72 + h, 100:100 + w]
    a = np.clip(motion_blur(src, 18.0, 0.6), 0, 255).astype(np.uint8)
    found = global_translation(a, ref.astype(np.uint8), cfg)
    assert found.inliers < cfg.align.min_inliers <= found.matches
    _, _, _, seen, _ = tt_vote(a, ref.astype(np.uint8), found, (0.0, 72.0), cfg)
    assert np.isfinite(seen) and _shares_structure({"structure_ncc": seen}, cfg.thresholds)


def _tt_row(departure: tuple[float, float]) -> capture_qa.CaptureQA:
    """A lone capture's T vs T at 1280 px: the 7 cm mount along y, focus 0.5 D (parallax -177 px),
    the AF subject ``departure`` px from it; graded as ``_judge_registration`` grades it."""
    out = capture_qa.CaptureQA("c00015")
    out.row.update({"analysis_width": 1280.0, "tt_expected_dx": 0.0, "tt_expected_dy": -177.0,
                    "tt_departure_dx": departure[0], "tt_departure_dy": departure[1], "tt_fx_px": 5056.0,
                    "tt_focus_d": 0.5, "tt_shift_used": 1.0, "tt_moved_px": 400.0, "tt_expected_px": 177.0})
    capture_qa.grade_tt_shift(out, QAConfig())
    return out


def _levels(out) -> set[str]:
    return {r.level.value for r in out.reasons if r.code == "large_shift"}


def test_a_mover_at_the_af_point_is_no_bump_where_the_static_scene_keeps_to_the_rig():
    """A late frame on a moving scene: the AF subject (the mover) moved 0.3 of the width across the
    baseline, the static scene's second translation (second_motion) lies where the rig puts it
    (+10 px across). large_shift reads the static scene: no reason (it failed before)."""
    out = _tt_row((384.0, -20.0))
    assert "fail" in _levels(out)  # the AF subject alone: a bump
    second = SimpleNamespace(shift=GlobalShift(10.0, -150.0, 200, 400))
    capture_qa.tt_departure_from_static_scene(out, second, QAConfig())
    assert _levels(out) == set()
    assert out.row["tt_departure_from_static_scene"] == 1 and out.row["tt_departure_dx"] == 10.0
    assert out.row["tt_subject_departure_dx"] == 384.0


def test_a_bump_moves_the_static_scene_too_and_still_fails():
    """A bumped rig with a mover: both registrations depart (0.30 and 0.36 of the width): still a fail,
    now on the static scene. And without the switch the AF subject's reading stands."""
    second = SimpleNamespace(shift=GlobalShift(-380.0, -160.0, 200, 400))
    out = _tt_row((-460.0, 10.0))
    capture_qa.tt_departure_from_static_scene(out, second, QAConfig())
    assert _levels(out) == {"fail"} and out.row["tt_departure_dx"] == -380.0
    cfg = QAConfig()
    off = replace(cfg, check=replace(cfg.check, tt_shift_from_static_scene=False))
    out = _tt_row((384.0, -20.0))
    capture_qa.tt_departure_from_static_scene(out, SimpleNamespace(shift=GlobalShift(10.0, -150.0, 200, 400)), off)
    assert _levels(out) == {"fail"}


def test_a_departure_read_off_the_structure_peak_is_not_replaced_by_a_second_translation():
    """The inlier gate refused the vote and large_shift read the structure search's peak (the whole
    view's shift): a second translation near the rig's parallax (a mover, or a texture period as in
    make demo's c00007) must not turn the bump back into no reason."""
    out = _tt_row((384.0, -20.0))
    out.row["tt_departure_from_structure"] = 1
    second = SimpleNamespace(shift=GlobalShift(10.0, -150.0, 200, 400))
    capture_qa.tt_departure_from_static_scene(out, second, QAConfig())
    assert _levels(out) == {"fail"}
    assert out.row["tt_departure_dx"] == 384.0 and "tt_departure_from_static_scene" not in out.row
