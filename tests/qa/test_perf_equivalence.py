"""The 12 MP cost pass's cheaper forms give exactly what the forms they replaced gave (issue 18)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from hzsr.core.records import CaptureRecord
from hzsr.core.schema import parse_dataclass
from hzsr.qa.align import inframe_mask, shift_inframe_mask
from hzsr.qa.maps import fb_error, flow_uncertainty_map, hidden_map, occlusion_map
from hzsr.qa.quality import channel_max, frame_quality


def _rgb(seed: int, h: int = 61, w: int = 83) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[: h // 3] = 255  # a clipped band, and a dark one: both fractions are non-zero
    img[-h // 4:] //= 60
    return img


def test_channel_max_is_the_max_over_channels():
    img = _rgb(1)
    assert np.array_equal(channel_max(img), img.max(axis=2))


def test_frame_quality_fractions_and_means_equal_numpy_reductions():
    img = _rgb(2)
    q = frame_quality(img, [10, 10, 30, 20])
    assert 0 < q["clipped_frac"] < 1 and 0 < q["dark_frac"] < 1
    assert q["clipped_frac"] == float((img >= 250).any(axis=-1).mean())
    means = img.reshape(-1, 3).mean(0) / 255.0
    assert [q["mean_r"], q["mean_g"], q["mean_b"]] == [float(m) for m in means]
    luma = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    assert q["dark_frac"] == float((luma <= 5).mean())
    assert q["brightness"] == float(luma.mean()) / 255.0


def test_shift_inframe_mask_equals_inframe_mask_of_the_constant_flow():
    for dx, dy in ((0.0, 0.0), (12.3, -4.5), (-70.25, 30.5), (-0.5, 0.49999), (200.0, 0.0)):
        const = np.broadcast_to(np.array([dx, dy], np.float32), (40, 57, 2))
        assert np.array_equal(shift_inframe_mask((40, 57), dx, dy), inframe_mask(const))


def test_maps_given_the_round_trip_error_equal_maps_that_compute_it():
    rng = np.random.default_rng(3)
    fwd = rng.normal(0, 3, (48, 64, 2)).astype(np.float32)
    bwd = rng.normal(0, 3, (48, 64, 2)).astype(np.float32)
    fb = fb_error(fwd, bwd)
    assert np.array_equal(occlusion_map(fwd, bwd, 0.7, fb=fb), occlusion_map(fwd, bwd, 0.7))
    assert np.array_equal(flow_uncertainty_map(fwd, bwd, grid_scale=1.0, fb=fb),
                          flow_uncertainty_map(fwd, bwd, grid_scale=1.0))
    guide = rng.uniform(0, 255, (48, 64)).astype(np.float32)
    assert np.array_equal(hidden_map(fwd, bwd, baseline=(1.0, 0.0), guide=guide, fb=fb),
                          hidden_map(fwd, bwd, baseline=(1.0, 0.0), guide=guide))
    # A round-trip error of another grid is refused, not broadcast or misread.
    wrong = fb_error(fwd[:24], bwd[:24])
    for make in (lambda: occlusion_map(fwd, bwd, 0.7, fb=wrong),
                 lambda: flow_uncertainty_map(fwd, bwd, grid_scale=1.0, fb=wrong),
                 lambda: hidden_map(fwd, bwd, baseline=(1.0, 0.0), guide=guide, fb=wrong)):
        with pytest.raises(ValueError, match="forward flow's grid"):
            make()


def test_cached_type_hints_still_parse_and_report_each_record():
    # The cache is per class: a second parse of the same class sees the same fields and problems.
    first = parse_dataclass(CaptureRecord, {"capture_id": 3})
    second = parse_dataclass(CaptureRecord, {"capture_id": 3})
    assert first[0] is None and [dataclasses.astuple(p) for p in first[1]] == [
        dataclasses.astuple(p) for p in second[1]] and first[1]


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 1), np.uint8), np.zeros((8, 8, 4), np.uint8),
                                 np.zeros((0, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)])
def test_frame_quality_refuses_what_its_exact_counts_do_not_hold_for(bad):
    """Its channel maximum and integer sums assume uint8 RGB (review of issue18p): a 1- or 4-channel,
    empty or float frame gets a clear error, not an IndexError or a silently wrong figure."""
    with pytest.raises(ValueError, match="uint8 HxW or HxWx3"):
        frame_quality(bad)
