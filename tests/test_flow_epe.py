"""bench/flow_epe.py's measures: a flow carried through the flow grid, and the end-point error."""

from __future__ import annotations

import numpy as np

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
