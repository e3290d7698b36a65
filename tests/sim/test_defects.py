"""The crew's defects, one definition for both simulator paths: numbers within their ranges, and the
virtual rig's world spoils exactly the frames ``hzsr sim session`` spoils, with one draw per action."""

from __future__ import annotations

import json
import os
import time

import cv2
import numpy as np
import pytest

from hzsr.sim.defects import CREW_DEFECTS, DEFECTS, RANGES, SPOILS, draw
from hzsr.sim.profiles import VPHONE_5X
from hzsr.sim.rig import SLOTS
from hzsr.sim.world import VirtualWorld, WorldConfig, write_crew_action


@pytest.mark.parametrize("name", DEFECTS)
def test_draws_stay_within_their_ranges(name):
    for seed in range(50):
        d = draw(name, np.random.default_rng(seed), 640)
        assert d.name == name
        if name == "rig_bump":
            assert RANGES.bump_frac_of_width[0] <= abs(d.bump_frac_of_width) <= RANGES.bump_frac_of_width[1]
        elif name == "rig_knocked_off":  # past T's own field of view: no view shared
            assert 1.0 < RANGES.knock_frac_of_width[0] <= abs(d.bump_frac_of_width) <= RANGES.knock_frac_of_width[1]
        elif name == "motion_blur":
            lo, hi = RANGES.blur_frac_of_width
            assert lo * 640 <= d.blur_px <= hi * 640 and 0 <= d.blur_angle_rad <= np.pi
        elif name == "overexposure":
            assert RANGES.overexposure_stops[0] <= d.stops <= RANGES.overexposure_stops[1]
        elif name == "moving_skew":
            assert RANGES.frames_late[0] <= d.frames_late < RANGES.frames_late[1]
    with pytest.raises(ValueError, match="unknown defect"):
        draw("lens_crack", np.random.default_rng(0), 640)


def test_crew_defects_are_the_session_defects_a_rig_can_suffer():
    assert set(CREW_DEFECTS) == set(DEFECTS) - {"moving_skew"}
    assert set(SPOILS) == set(DEFECTS) and all(set(s) <= set(SLOTS) for s in SPOILS.values())


def _render_all(world: VirtualWorld, now: int) -> dict[str, bytes]:
    out = {}
    for s in SLOTS:
        cv2.setRNGSeed(1)  # sensor noise comes from OpenCV's global generator
        out[s] = world.render(*SLOTS[s], now, None, np.random.default_rng(1))[0]
    return out


@pytest.mark.parametrize("defect", sorted(CREW_DEFECTS))
def test_world_spoils_the_defects_frames_with_one_draw(tmp_path, defect):
    world = VirtualWorld(VPHONE_5X, WorldConfig(seed=3, size=(160, 120)), tmp_path / "truth")
    now = time.monotonic_ns()
    # Scene 0 is a portrait: nothing moves, so the scene time the action sets does not matter. The
    # world rereads the action when its mtime changes: set distinct ones, whatever the clock's grain.
    os.utime(write_crew_action(tmp_path, scene=0, defect=None), ns=(10**9, 10**9))
    clean = _render_all(world, now)
    os.utime(write_crew_action(tmp_path, scene=0, defect=defect), ns=(2 * 10**9, 2 * 10**9))
    first = world.crew_defect()
    spoiled = _render_all(world, now)
    assert world.crew_defect() is first  # one draw for the whole action, on both phones

    changed = {s for s in SLOTS if spoiled[s] != clean[s]}
    assert changed == set(SPOILS[defect])
    lines = [json.loads(x) for x in (tmp_path / "truth" / "crew_defects.jsonl").read_text().splitlines()]
    assert {x["slot"] for x in lines} == set(SPOILS[defect])
    # Focus defects also record what they do to the picture: the AF plane's blur circle (T px).
    blur = [x["params"].pop("af_layer_blur_px", None) for x in lines]
    assert all(x["defect"] == defect and x["params"] == first.truth(world.scene_at(now)[0]) for x in lines)
    if defect in ("refocus", "wrong_depth"):
        assert all(isinstance(b, float) and b > 0 for b in blur), blur
    else:
        assert blur == [None] * len(lines)
