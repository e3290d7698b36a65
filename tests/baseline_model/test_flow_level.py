"""The dense flow's finest DIS level follows W's pixel on the flow grid (``align.dis_finest_level``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import hzsr.baseline_model.align as align_mod
from hzsr.baseline_model.align import CameraGeometry, dis_finest_level, dis_flows
from hzsr.baseline_model.config import PipelineConfig
from hzsr.core.geometry import intrinsics_matrix
from hzsr.qa.align import dense_flow_lowres


@pytest.mark.parametrize(("w_px_on_grid", "level"), [
    (0.64, 0),  # 12 MP T, 5x: a W pixel is smaller than a grid pixel
    (1.38, 0),  # Middlebury at ratio 2 (741x500 on a 512x346 grid)
    (2.07, 1), (3.45, 1),  # Middlebury at ratios 3 and 5: the preset's own level, unchanged
    (4.0, 2), (3.999, 2),  # the simulator's 5x phone at 640x480 (grid 0.8): exactly 4, with float noise
    (8.0, 3),
])
def test_finest_level_is_the_coarsest_whose_pixel_is_at_most_one_w_pixel(w_px_on_grid, level):
    assert dis_finest_level(w_px_on_grid) == level


def test_level_one_is_the_dis_backends_flow_bit_for_bit():
    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.integers(0, 255, (96, 128), dtype=np.uint8), (0, 0), 1.5)
    b = np.roll(a, (2, 3), (0, 1))
    fwd, bwd = dis_flows(a, b, PipelineConfig().qa, 1)
    fwd0, bwd0, _ = dense_flow_lowres(a, b, PipelineConfig().qa)
    assert np.array_equal(fwd, fwd0) and np.array_equal(bwd, bwd0)


def _pair(ratio: float, size=(320, 240)):
    rng = np.random.default_rng(1)
    w, h = size
    img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 2.0)
    fx = 0.8 * w
    geom = CameraGeometry(intrinsics_matrix(fx, fx, (w - 1) / 2, (h - 1) / 2),
                          intrinsics_matrix(fx * ratio, fx * ratio, (w - 1) / 2, (h - 1) / 2), None)
    return img, img.copy(), geom


@pytest.mark.parametrize(("ratio", "size", "level"), [(5.0, (640, 480), 2), (2.0, (640, 480), 0)])
def test_the_pipeline_refines_the_flow_to_w_pixel_scale_by_default(monkeypatch, ratio, size, level):
    """A 2x pair (a W pixel is 1.6 grid px) is refined down to the grid itself; the simulator's 5x
    (4 grid px) stops at level 2 (``flow_level_max`` 2, with the blend maps chosen for that flow)."""
    seen = []

    def spy(src_y, ref_y, cfg, finest, alpha=0.0):
        seen.append(finest)
        return dis_flows(src_y, ref_y, cfg, finest, alpha)

    monkeypatch.setattr(align_mod, "dis_flows", spy)
    w, ref, geom = _pair(ratio, size)
    c = PipelineConfig()
    align_mod.align(w, ref, geom, c.qa, flow_backend=c.flow_backend, flow_level_by_w_px=c.flow_level_by_w_px,
                    flow_level_max=c.flow_level_max)
    assert seen == [level]
