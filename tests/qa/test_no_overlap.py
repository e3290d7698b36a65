"""``no_overlap`` on a reference phone knocked off the scene (issue 18, item 1's labelled set:
``rig_knocked_off``): decided by the flow's consistency as well as the warp's PSNR."""

from __future__ import annotations

import pandas as pd
import pytest

from hzsr.qa.check import run_check
from hzsr.qa.config import QAConfig
from hzsr.sim.simsession import SimConfig, simulate_session


@pytest.fixture(scope="module")
def knocked(tmp_path_factory):
    """An architecture scene (repeating texture, smooth facades) and a moving one, each shot
    clean and then with the reference phone knocked off the scene."""
    sess = simulate_session(tmp_path_factory.mktemp("knock") / "s",
                            SimConfig(captures=4, seed=1803, size=(480, 360), truth=True,
                                      kinds=("architecture", "moving"), captures_per_scene=2,
                                      defects={1: "rig_knocked_off", 3: "rig_knocked_off"}), progress=False)
    run_check(sess, QAConfig(), report=False, maps=False, progress=False)
    return pd.read_csv(sess / "qa" / "qa.csv").set_index("capture_id")


def test_a_knocked_phone_fails_no_overlap_though_its_warp_reads_above_the_psnr_level(knocked):
    for cid in ("c00001", "c00003"):
        r = knocked.loc[cid]
        assert "fail: no_overlap" in r["reasons"], (cid, r["reasons"])
        assert r["verdict"] == "fail"
        # The knock leaves too few keypoints to register, and the flow inconsistent nearly everywhere.
        assert r["tt_inliers"] < QAConfig().thresholds.fail_min_inliers
        assert max(r["tt_occluded_frac"], r["wr_occluded_frac"]) >= QAConfig().thresholds.fail_no_overlap_occluded_frac
    # At least one of them is the case the PSNR alone missed: a warp between unrelated views that
    # still reads above the warn level.
    th = QAConfig().thresholds
    assert max(knocked.loc[c, p] for c in ("c00001", "c00003") for p in ("tt_psnr_db", "wr_psnr_db")) >= th.warn_psnr_db


def test_the_same_scenes_shot_clean_keep_their_overlap(knocked):
    for cid in ("c00000", "c00002"):
        assert "no_overlap" not in str(knocked.loc[cid]["reasons"]), knocked.loc[cid]["reasons"]
