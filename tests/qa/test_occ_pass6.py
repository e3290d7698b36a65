"""``bench/occ_pass6.py`` (issue 18 item 4, maps pass 6): its candidates read the disparities in the
right frame and with the right sign, so their measured figures (docs/qa.md) are the candidates', not a
slip of the bench. On the card scene of ``test_occ_alternatives`` (a card 21 px nearer than the wall,
along x or down the image). ``stereo_occlusion.edge_snap`` itself: tests/qa/test_alike_stereo.py."""

from __future__ import annotations

import numpy as np
import pytest

from hzsr.qa.config import QAConfig
from hzsr.qa.register import register_pair
from hzsr.qa.stereo_occlusion import alike_fold, grid_lumas
from tests.bench_modules import bench_module
from tests.qa.test_occ_alternatives import _card_scene


@pytest.fixture(scope="module")
def p6():
    with bench_module("occ_pass6") as mod:
        yield mod


@pytest.fixture(scope="module", params=[False, True], ids=["x", "y"])
def card(request):
    src, ref, true, baseline = _card_scene(request.param)
    r = register_pair(src, ref, QAConfig(), baseline=baseline)
    return src, ref, true, baseline, r


def _card_mask(shape, vertical):
    h, w = shape
    m = np.zeros((240, 320), bool)
    m[70:170, 160:240] = True  # inside the card (60..180 x 150..250), away from its edges
    return (m.T if vertical else m)[:h, :w]


def test_tt_disparity_is_the_card_step_on_the_flow_grid(p6, card):
    src, ref, _, baseline, r = card
    d = p6.tt_disparity(src, ref, r.shift, baseline, r.flow_fwd)
    ys, _, _ = grid_lumas(src, ref, r.shift, QAConfig())
    assert d.shape == ys.shape
    inner = _card_mask(d.shape, baseline[1] > 0)
    wall = np.zeros_like(inner)
    wall[:, :40] = True  # the first columns: wall only in both orientations
    step = np.median(d[inner]) - np.median(d[wall])
    # The card moves 24 px, the wall 3: a step of 21 px, the card nearer (larger disparity).
    assert abs(step - 21) <= 1.5, step


def test_dis_disparities_agree_with_sgbm_on_the_wall_and_card(p6, card):
    src, ref, _, baseline, r = card
    ys, _, d = grid_lumas(src, ref, r.shift, QAConfig())
    dd, ddr = p6.dis_disparities(src, r.flow_fwd, r.flow_bwd, ys.shape, d, baseline)
    sg = p6.tt_disparity(src, ref, r.shift, baseline, r.flow_fwd)
    inner = _card_mask(sg.shape, baseline[1] > 0)
    # SRC's disparity from the forward flow, REF's from the backward flow: the same sign as SGBM's.
    assert abs(np.median(dd[inner]) - np.median(sg[inner])) < 1.0
    assert abs(np.median(dd[:, :40]) - np.median(sg[:, :40])) < 1.0
    assert abs(np.median(ddr[:, :40]) - np.median(sg[:, :40])) < 1.0


def test_candidates_are_masks_and_the_veto_only_removes(p6, card):
    src, ref, _, baseline, r = card
    c = p6.fold_candidates(src, ref, r.shift, baseline, r.flow_fwd, r.flow_bwd)
    import cv2

    # maps pass 6's map (pass 7 changed qa's settings, pass 8 the reference's matcher)
    pass6 = {"fill_reach": 0, "min_residual": 0.0, "holes_window": 9, "ref_mode": cv2.STEREO_SGBM_MODE_SGBM_3WAY}
    shipped = alike_fold(src, ref, r.shift, baseline, QAConfig(), r.flow_fwd, **pass6)
    before = alike_fold(src, ref, r.shift, baseline, QAConfig(), r.flow_fwd, snap=0, **pass6)
    assert (c["shipped"] == shipped).all() and (c["maps_pass_5"] == before).all()
    assert (c["edge_snap_3"] == shipped).all()  # the reach qa ships
    for k, m in c.items():
        assert m.dtype == bool and m.shape == shipped.shape, k
    for t in (0.25, 0.5, 1.0):  # a veto on maps pass 5's map: it only removes
        assert not (c[f"holes_without_dis_consistent_{t}"] & ~before).any()
    assert shipped.any()


def test_edge_snap_of_a_mirrored_row_is_the_mirrored_snap():
    """Equally strong edges (a two-step ramp): a rise and a fall both move to the edge nearest the
    step, so a scene and its mirror image get mirrored strips (the fall took the farthest, 1 px more)."""
    from hzsr.qa.stereo_occlusion import edge_snap

    luma = np.zeros((1, 24), np.float32)
    luma[0, 12] = 10.0
    luma[0, 13:] = 20.0  # edges of 10 between columns 11|12 and 12|13
    disp = np.full((1, 24), 2.0, np.float32)
    disp[0, 10:] = 8.0  # the near surface starts at column 10: fattened by two or three columns
    snapped = edge_snap(disp, luma, reach=4)
    assert snapped[0, :12].tolist() == [2.0] * 12 and snapped[0, 12:].tolist() == [8.0] * 12
    mirrored = edge_snap(disp[:, ::-1].copy(), luma[:, ::-1].copy(), reach=4)
    assert np.array_equal(mirrored[:, ::-1], snapped)
