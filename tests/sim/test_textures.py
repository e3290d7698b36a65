"""Texture pools (issue 20, items 4 and 5): disjoint train/eval textures, photographic scenes,
``all`` unchanged, the pool recorded, and ``--textures`` validated."""

import hashlib
import json

import numpy as np
import pytest

from hzsr.cli import main
from hzsr.core.errors import EXIT_USAGE
from hzsr.sim.profiles import VPHONE_5X
from hzsr.sim.scene import SCENE_KINDS, detail, make_scene, photo
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sim.textures import EXCLUDED, PHOTOS, POOL_TEXTURES, check_pools, procedural_detail
from hzsr.sim.truth import load_session_truth

#: sha256 over the JPEG bytes (sorted paths) of ``SimConfig(captures=10, seed=5, size=(160, 120))``
#: rendered by main at d96c055, before the texture pools existed.
ALL_POOL_SHA256 = "3a77aa86d9b7ddfd0da906ad1ec8a82f9cc011ec84e60334d649f4e354cc7dc3"


def test_train_and_eval_pools_share_no_photograph_and_no_detail():
    check_pools()
    tr, ev = POOL_TEXTURES["train"], POOL_TEXTURES["eval"]
    assert not tr.photos() & ev.photos()
    assert not set(tr.details) & set(ev.details)
    for pool in (tr, ev):  # the real-image evaluations' photographs are in no pool
        assert not pool.photos() & {"motorcycle", "grace_hopper"}
        assert set(EXCLUDED) <= set(PHOTOS)


def test_the_all_pool_renders_byte_for_byte_as_before_the_pools(tmp_path):
    s = simulate_session(tmp_path / "s", SimConfig(captures=10, seed=5, size=(160, 120)), progress=False)
    h = hashlib.sha256()
    for p in sorted(s.glob("captures/*/*.jpg")):
        h.update(p.read_bytes())
    assert h.hexdigest() == ALL_POOL_SHA256


@pytest.mark.parametrize("pool", ["train", "eval"])
def test_pool_scenes_are_whole_photographs_of_their_pool_only(pool):
    textures = POOL_TEXTURES[pool]
    fx_t = VPHONE_5X.camera("T").intrinsics((640, 480))[0, 0]
    seen = set()
    for i, kind in enumerate(SCENE_KINDS * 3):
        scene = make_scene(kind, i, np.random.default_rng([9, i]), fx_t, pool)
        assert len(scene.layers) >= 3, kind
        assert f"textures-{pool}" in scene.tags and scene.tags[0] != f"textures-{pool}"
        for lay in scene.layers:
            assert lay.photo in textures.photos() and lay.detail in textures.details
            assert lay.photo_repeat == 1  # a photograph is never repeated across a layer
            assert lay.detail_gain > 0  # fine detail below the photograph's resolution
            seen.add(lay.photo)
        # the backdrop covers W's view (so its mirror safety net stays out of sight)
        back = scene.layers[0]
        h, w = photo(back.photo).shape[:2]
        assert back.tile and back.width_m >= 1.27 * back.depth_m and back.width_m * h / w >= 0.95 * back.depth_m
    assert len(seen) >= 4


def test_procedural_detail_is_seeded_periodic_and_normalised():
    a, b = detail("fbm-1"), detail("fbm-2")
    assert a.shape == (1024, 1024) and abs(float(a.mean())) < 1e-3 and abs(float(a.std()) - 1) < 1e-2
    assert np.array_equal(a, detail("fbm-1")) and not np.allclose(a, b)
    raw = procedural_detail("fibre-3")
    # periodic: the wrap-around step is no larger than a step inside
    assert np.abs(raw[0] - raw[-1]).mean() < 2 * np.abs(raw[0] - raw[1]).mean()
    with pytest.raises(ValueError, match="unknown detail source"):
        procedural_detail("perlin-1")


def test_the_pool_is_recorded_in_the_session_the_truth_and_the_tags(tmp_path):
    s = simulate_session(tmp_path / "e", SimConfig(captures=2, seed=21, size=(160, 120), kinds=("moving",),
                                                   textures="eval", truth=True), progress=False)
    assert json.loads((s / "session.json").read_text())["config"]["sim"]["textures"] == "eval"
    assert load_session_truth(s)["textures"] == "eval"
    cap = json.loads((s / "captures" / "c00000" / "capture.json").read_text())
    assert "textures-eval" in cap["scene_tags"] and cap["scene_tags"][0] == "moving"


def test_an_unknown_texture_pool_is_a_one_line_usage_error(tmp_path, capsys):
    assert main(["sim", "session", "--out", str(tmp_path / "x"), "--textures", "holdout"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--textures" in err[0] and "holdout" in err[0] and "train" in err[0]
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="textures"):
        simulate_session(tmp_path / "y", SimConfig(captures=1, textures="holdout"), progress=False)
