"""bench/flow_epe.py's measures: a flow carried through the flow grid, and the end-point error."""

from __future__ import annotations

import numpy as np
import pytest

from tests.bench_modules import bench_module


def test_a_smooth_flow_survives_the_grid_and_a_depth_edge_does_not():
    with bench_module("flow_epe") as fe:
        h, w = 100, 148
        smooth = np.zeros((h, w, 2), np.float32)
        smooth[..., 0] = 3.0
        np.testing.assert_allclose(fe.through_grid(smooth, (69, 102)), smooth, atol=1e-4)
        edge = smooth.copy()
        edge[:, 74:, 0] = 33.0  # a depth edge: 30 px more disparity right of column 74
        carried = fe.through_grid(edge, (69, 102))
        err = np.abs(carried - edge)[..., 0]
        assert err[:, :70].max() < 1e-3 and err[:, 78:].max() < 1e-3  # away from the edge: exact
        assert err[:, 72:76].max() > 3.0  # at it: a mix of both sides (4.7 px of 30, columns 73-74)


def test_scores_of_the_true_flow_are_perfect():
    rng = np.random.default_rng(0)
    with bench_module("flow_epe") as fe:
        ref = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
        truth = np.zeros((40, 60, 2), np.float32)
        good = np.zeros((40, 60), bool)
        good[5:-5, 5:-5] = True
        from hzsr.baseline_model.color import luma

        y = luma(ref.astype(np.float32) / 255)
        s = fe.scores(truth, truth, good, ref, ref, y)
        assert s["epe_mean"] == 0 and s["over_2px"] == 0 and s["warped_psnr_y_db"] > 60
        off = fe.scores(truth + np.float32([3.0, 4.0]), truth, good, ref, ref, y)
        assert off["epe_mean"] == 5.0 and off["x_err"] == 3.0 and off["y_err"] == 4.0 and off["over_2px"] == 1.0


def test_an_unknown_hole_does_not_leak_through_the_grid():
    """Middlebury's unknown disparity holds a placeholder (flow 0): it must not be charged to the grid.

    A flow of 40 px with a hole of 0 (unknown) in it: away from the hole it comes through the grid
    unchanged once the hole is left out of the averages; carried with the placeholder counted (the old
    ``flow_epe`` did so), the pixels next to the hole pick up several pixels of error.
    """
    with bench_module("flow_epe") as fe:
        h, w = 100, 148
        flow = np.zeros((h, w, 2), np.float32)
        flow[..., 0] = 40.0
        flow[..., 1] = 2.0
        known = np.ones((h, w), bool)
        known[40:60, 60:80] = False
        flow[~known] = 0.0  # the placeholder
        carried = fe.through_grid(flow, (69, 102), known)
        away = known.copy()
        away[36:64, 56:84] = False  # 4 px (2.8 grid px) from the hole
        np.testing.assert_allclose(carried[away], flow[away], atol=1e-3)
        # Next to the hole too (the grid only mixes known pixels there): still the flow, not a mix with 0.
        ring = np.zeros((h, w), bool)
        ring[38:62, 58:82] = True
        ring &= known
        np.testing.assert_allclose(carried[ring], flow[ring], atol=1e-3)
        counted = fe.through_grid(flow, (69, 102))  # the placeholder counted, as before
        assert np.abs(counted - flow)[ring].max() > 5.0


def test_the_grid_scales_each_axis_by_its_own_factor():
    """A uniform flow comes through a grid whose x and y factors differ (512x345 from 741x500) unchanged."""
    with bench_module("flow_epe") as fe:
        flow = np.zeros((500, 741, 2), np.float32)
        flow[..., 0] = 40.0
        flow[..., 1] = 40.0
        np.testing.assert_allclose(fe.through_grid(flow, (345, 512)), flow, atol=1e-3)
        np.testing.assert_allclose(fe.up(np.full((345, 512, 2), 10.0, np.float32), (500, 741))[0, 0],
                                   [10.0 * 741 / 512, 10.0 * 500 / 345], rtol=1e-6)


def test_a_dis_variant_is_parsed_and_an_empty_one_is_the_pipelines_flow():
    """``sim --dis``: ``NAME:PARAM=V;...`` sets OpenCV DIS setters on the pipeline's preset; no
    settings gives ``align.dis_flows``'s forward flow bit for bit (the variants are compared to it)."""
    import cv2

    from hzsr.baseline_model.align import dis_flows
    from hzsr.baseline_model.config import PipelineConfig

    rng = np.random.default_rng(1)
    with bench_module("flow_epe") as fe:
        assert fe.parse_dis_variant("v:VariationalRefinementDelta=1;PatchStride=2") == (
            "v", {"VariationalRefinementDelta": 1.0, "PatchStride": 2.0})
        assert fe.parse_dis_variant("u:preset=ultrafast") == ("u", {"preset": "ultrafast"})
        a = rng.integers(0, 255, (96, 128), dtype=np.uint8)
        b = np.roll(a, 3, axis=1)
        cfg = PipelineConfig().qa
        assert np.array_equal(fe.dis_with(a, b, 1, {}), dis_flows(a, b, cfg, 1)[0])
        # At level 2 the pipeline also sets its smoothness (flow_alpha): the variants must too.
        alpha = PipelineConfig().flow_alpha
        assert np.array_equal(fe.dis_with(a, b, 2, {}, alpha=alpha), dis_flows(a, b, cfg, 2, alpha)[0])
        assert not np.array_equal(fe.dis_with(a, b, 2, {}), dis_flows(a, b, cfg, 2, alpha)[0])
        with pytest.raises(ValueError, match="VariationalRefinmentDelta"):
            fe.parse_dis_variant("v:VariationalRefinmentDelta=1")
        d = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        d.setFinestScale(1)
        d.setVariationalRefinementDelta(1.0)
        assert np.array_equal(fe.dis_with(a, b, 1, {"VariationalRefinementDelta": 1.0}), d.calc(a, b, None))
        # match=1: the reference's luma takes the source's mean and spread first (another exposure undone)
        dark = (b.astype(np.float32) * 0.5 + 20).astype(np.uint8)
        matched = fe.dis_with(a, dark, 1, {"match": 1.0})
        assert not np.array_equal(matched, fe.dis_with(a, dark, 1, {}))
        assert np.abs(matched - fe.dis_with(a, b, 1, {})).mean() < 0.5
