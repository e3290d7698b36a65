"""Occlusion from the rig's geometry (issue 18 item 4): ``maps.fold_map``, the z-buffer along the
baseline, and ``maps.refine_flow_along``, the flow brought back to the image's depth edge."""

from __future__ import annotations

import numpy as np
import pytest

from hzsr.qa.maps import fold_map, refine_flow_along


def _card_flow(h: int = 120, w: int = 200, x0: int = 90, x1: int = 140, bg: float = -3.0, fg: float = -24.0):
    """Stereo along x (REF at +x of SRC): the wall moves ``bg`` px, a card over columns
    ``[x0, x1)`` of rows 30-90 moves ``fg``. Hidden in REF: the wall strip left of the card, as
    wide as the parallax step, ``[x0 - (bg - fg), x0)`` on the card's rows; its first pixel lands
    exactly on the card's edge and is left to the half-pixel margin."""
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = bg
    flow[30:90, x0:x1, 0] = fg
    true = np.zeros((h, w), bool)
    true[30:90, x0 - int(bg - fg) + 1:x0] = True
    return flow, true


def test_fold_map_marks_the_strip_beside_the_occluder_on_the_baseline_side():
    flow, true = _card_flow()
    got = fold_map(flow, (0.015, 0.0), margin=0.5)
    assert np.array_equal(got, true)
    # The same scene seen down the columns (baseline along +y): the rotated path gives the same strip.
    flow_t = np.ascontiguousarray(flow.transpose(1, 0, 2)[..., ::-1])
    got_t = fold_map(flow_t, (0.0, 0.07), margin=0.5)
    assert np.array_equal(got_t, true.T)
    # Without a parallax step nothing is hidden.
    assert not fold_map(np.full_like(flow, -3.0), (1.0, 0.0), margin=0.5).any()


def test_refine_flow_along_gives_the_hidden_strip_its_own_surfaces_flow():
    flow, _ = _card_flow()
    guide = np.where(flow[..., 0] < -10, 200.0, 60.0).astype(np.float32)  # the card is brighter
    # DIS-like: the step smeared over ~15 px, and the strip the reference does not see given the
    # occluder's flow, with low trust there.
    import cv2

    smooth = cv2.blur(flow, (15, 1))
    trust = np.ones(flow.shape[:2], np.float32)
    trust[30:90, 69:90] = 0.05
    smooth[30:90, 69:90, 0] = -20.0
    out = refine_flow_along(smooth, guide, trust, (1.0, 0.0), radius=24, sigma_luma=6.0)
    _, true = _card_flow()

    def precision_recall(f):
        got = fold_map(f, (1.0, 0.0), margin=0.5)
        tp = (got & true).sum()
        return tp / max(got.sum(), 1), tp / true.sum()

    # The smeared flow folds nowhere: no strip at all. Refined, 80 % of it (the strip's inner
    # pixels keep some of their own, untrusted flow: its weight is small, not zero).
    assert precision_recall(smooth) == (0.0, 0.0)
    p, r = precision_recall(out)
    assert p > 0.95 and r > 0.75
    # The wall left of the strip, far from the edge, keeps its flow.
    assert np.abs(out[35:85, 10:40, 0] - flow[35:85, 10:40, 0]).max() < 0.01


def test_fold_map_refuses_a_zero_baseline():
    flow, _ = _card_flow()
    with pytest.raises(ValueError, match="baseline"):
        fold_map(flow, (0.0, 0.0), margin=0.5)


def test_hidden_map_with_a_baseline_flags_nothing_without_a_parallax_step():
    from dataclasses import replace

    from hzsr.qa.config import MapsConfig
    from hzsr.qa.maps import hidden_map

    h, w = 40, 60
    fwd = np.zeros((h, w, 2), np.float32)  # one plane: nothing can be hidden
    bwd = np.zeros_like(fwd)
    bwd[:, 20:30, 0] = 10.0  # a patch of backward-flow noise: e_fb 10 px, SRC 20..29 left uncovered
    guide = np.full((h, w), 100.0, np.float32)
    cfg = MapsConfig()
    assert not hidden_map(fwd, bwd, cfg, baseline=(1.0, 0.0), guide=guide).any()
    ungated = hidden_map(fwd, bwd, replace(cfg, hidden_min_step_px=0.0), baseline=(1.0, 0.0), guide=guide)
    assert ungated[:, 20:30].all()  # the consistency-and-coverage cue alone would flag it
