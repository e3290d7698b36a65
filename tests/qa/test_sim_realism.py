"""What QA needs from the simulator (issue 11, item 4): photographs never magnified in T, detail that
matches its material, one scene per scene_id, defects recorded in the truth only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hzsr.sim import scene as scene_mod
from hzsr.sim.defects import DEFECTS
from hzsr.sim.profiles import VPHONE_5X
from hzsr.sim.scene import SCENE_KINDS, make_scene, photo
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sim.truth import load_session_truth


@pytest.mark.parametrize("size", [(640, 480), (4000, 3000)])
@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_t_never_magnifies_a_photograph(kind, size):
    fx_t = float(VPHONE_5X.camera("T").intrinsics(size)[0, 0])
    for seed in range(5):
        sc = make_scene(kind, 0, np.random.default_rng(seed), fx_t)
        for lay in sc.layers:
            # T pixels per photograph texel at the layer's depth: at most one.
            mag = fx_t * lay.photo_texel_m / lay.depth_m
            assert mag <= 1.0 + 1e-9, (kind, lay.name, lay.photo, mag)
            assert lay.photo_texel_m * photo(lay.photo).shape[1] * lay.photo_repeat == pytest.approx(lay.width_m)


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_detail_matches_the_material(kind):
    sc = make_scene(kind, 0, np.random.default_rng(1), 2500.0)
    for lay in sc.layers:
        material = scene_mod._MATERIAL[lay.photo]
        if material is None:
            assert lay.detail_gain == 0.0, lay.name  # a star field has no surface
        elif lay.name != "facade":  # the facade is a mural painted on brick
            assert lay.detail == material, (lay.name, lay.photo, lay.detail)
        else:
            assert lay.detail == "brick"


def test_one_scene_per_scene_id_and_defects_in_truth_only(tmp_path):
    defects = {1: "refocus", 3: "moving_skew", 5: "rig_bump"}
    sess = simulate_session(tmp_path / "s", SimConfig(captures=8, seed=3, size=(160, 120), truth=True,
                                                      defects=defects), progress=False)
    truth = load_session_truth(sess)["captures"]
    by_id: dict[str, str] = {}
    for c in truth:
        layers = json.dumps(c["layers"], sort_keys=True)
        assert by_id.setdefault(c["scene_id"], layers) == layers, c["scene_id"]
        rec = json.loads((sess / "captures" / c["capture_id"] / "capture.json").read_text())
        assert rec["scene_id"] == c["scene_id"]
    assert {int(c["capture_id"][1:]): c["defect"] for c in truth if c["defect"]} == defects
    assert "moving" in truth[3]["scene_id"] and truth[3]["scene_id"] != truth[2]["scene_id"]
    assert "defect" not in (sess / "session.json").read_text()
    with pytest.raises(ValueError, match="unknown defect"):
        simulate_session(tmp_path / "t", SimConfig(captures=2, size=(160, 120), defects={0: "lens_crack"}),
                         progress=False)
    assert set(DEFECTS) == {"refocus", "moving_skew", "motion_blur", "rig_bump", "overexposure", "wrong_depth",
                            "rig_knocked_off"}
