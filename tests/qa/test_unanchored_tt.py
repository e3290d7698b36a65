"""Main T vs reference T where the inlier gate refuses the keypoints' shift: the dense flow starts
from the rig's parallax at the focus distance (``check.tt_unanchored_from_rig_parallax``), not from
zero (issue 18, helper issue18v: a shaken T at 1280x960 kept 8 inliers, DIS from zero never reached
the portrait's 181 px parallax and ``motion_blur`` was read on a misregistered pair)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hzsr.qa import capture_qa
from hzsr.qa.align import GlobalShift
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
