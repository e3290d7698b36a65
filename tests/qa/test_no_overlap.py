"""``no_overlap`` on a reference phone knocked off the scene (issue 18, item 1's labelled set:
``rig_knocked_off``): decided by the flow's consistency as well as the warp's PSNR."""

from __future__ import annotations

import pandas as pd
import pytest

from hzsr.qa.check import run_check
from hzsr.qa.config import QAConfig
from hzsr.sim.scene import SCENE_KINDS
from hzsr.sim.simsession import SimConfig, simulate_session


@pytest.fixture(scope="module")
def knocked(tmp_path_factory):
    """Four scenes (portrait, architecture, landscape, moving), the architecture (repeating
    texture, smooth facades) and moving ones shot with the reference phone knocked off the scene:
    ``bench/qa.py``'s knocked-off captures c00001 and c00003 of seed 1803."""
    sess = simulate_session(tmp_path_factory.mktemp("knock") / "s",
                            SimConfig(captures=4, seed=1803, size=(480, 360), truth=True, kinds=SCENE_KINDS,
                                      captures_per_scene=1,
                                      defects={1: "rig_knocked_off", 3: "rig_knocked_off"}), progress=False)
    run_check(sess, QAConfig(), report=False, maps=False, progress=False)
    return pd.read_csv(sess / "qa" / "qa.csv").set_index("capture_id")


def test_a_knocked_phone_fails_no_overlap_though_its_warp_reads_above_the_psnr_level(knocked):
    for cid in ("c00001", "c00003"):
        r = knocked.loc[cid]
        assert "fail: no_overlap" in r["reasons"], (cid, r["reasons"])
        assert r["verdict"] == "fail"
        # Nothing is read from a registration that did not happen: the T-vs-T figures (the other
        # T's smear, movers between the two instants) are not graded on unrelated views.
        assert "fail: motion_blur" not in r["reasons"] and "fail: moving_object" not in r["reasons"], r["reasons"]
        # The knock leaves too few keypoints to register, and T vs T's flow inconsistent nearly everywhere.
        assert r["tt_inliers"] < QAConfig().thresholds.fail_min_inliers
        assert r["tt_occluded_frac"] >= QAConfig().thresholds.fail_no_overlap_occluded_frac
    # At least one of them is the case the PSNR alone missed: a warp between unrelated views that
    # still reads above the warn level.
    th = QAConfig().thresholds
    assert max(knocked.loc[c, p] for c in ("c00001", "c00003") for p in ("tt_psnr_db", "wr_psnr_db")) >= th.warn_psnr_db


def test_the_same_scenes_shot_clean_keep_their_overlap(knocked):
    for cid in ("c00000", "c00002"):
        assert "no_overlap" not in str(knocked.loc[cid]["reasons"]), knocked.loc[cid]["reasons"]


def test_a_w_crop_pairing_that_does_not_line_up_is_no_lost_overlap_when_the_two_ts_register():
    """``make demo``'s clean near portrait: W crop vs reference T with 8 inliers, 24 dB and a flow
    inconsistent on 0.99 of the view, T vs T at 189 inliers. W upsampled against a sharp T
    disagrees that much on a shared view; a lost overlap shows in T vs T."""
    from types import SimpleNamespace

    from hzsr.qa.capture_qa import CaptureQA, _judge_registration

    th = QAConfig().thresholds

    def reg(inliers, psnr, occ):
        return SimpleNamespace(stats={"inliers": inliers, "psnr_db": psnr, "occluded_frac": occ, "rejected_frac": 0.2,
                                      "shift_used": 0.0, "found_shift_px": 0.0})

    out = CaptureQA("c")
    _judge_registration(out, {"wr": reg(8, 24.2, 0.99)}, 640, QAConfig())
    assert "no_overlap" not in {r.code for r in out.reasons}
    # The same figures on T vs T are a knocked-off phone.
    out = CaptureQA("c")
    _judge_registration(out, {"tt": reg(8, 24.2, 0.99)}, 640, QAConfig())
    assert "no_overlap" in {r.code for r in out.reasons if r.level.value == "fail"}, out.reasons
    assert 0.99 >= th.fail_no_overlap_occluded_frac
