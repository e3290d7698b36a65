"""``flow_fusion: modes_pruned2_matched`` (blur3): the per-pixel pick compares at the source's sharpness.

Against a soft W, the reference at its own sharpness matches a wrong flow that lands on a smooth
patch better than the right flow (docs/model.md, "Flow fusion at a soft W"); blurred to the
source's measured sharpness first, it does not.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hzsr.baseline_model import flow_fusion
from hzsr.baseline_model.config import PipelineConfig

H, W = 192, 256
SOFT = 3.0  # the source's blur against the reference, grid px (one of MATCH_SIGMAS)


def _soft_pair() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A reference whose left half is a scene (broad shading with fine texture on it, as a photograph)
    and whose right half is that scene blurred by ``SOFT``; the source is the reference blurred by
    ``SOFT`` (true flow zero). On the left half the wrong flow ``(W/2, 0)`` lands on the blurred copy,
    which looks like the soft source exactly."""
    rng = np.random.default_rng(0)

    def band(sigma: float, std: float) -> np.ndarray:
        x = cv2.GaussianBlur(rng.uniform(0, 255, (H, W // 2)).astype(np.float32), (0, 0), sigma)
        return (x - x.mean()) * (std / x.std())

    left = band(12.0, 50.0) + band(0.8, 15.0) + 128
    ref = np.hstack([left, cv2.GaussianBlur(left, (0, 0), SOFT)])
    src = cv2.GaussianBlur(ref, (0, 0), SOFT)
    wrong = np.zeros((H, W, 2), np.float32)
    wrong[..., 0] = W // 2
    u8 = [np.clip(x + 0.5, 0, 255).astype(np.uint8) for x in (src, ref)]
    return u8[0], u8[1], wrong


def _right_share(flow: np.ndarray) -> float:
    """The share of the left half's inner pixels given the right (zero) flow."""
    return float((np.abs(flow[12:-12, 12:W // 2 - 12]) < 1e-6).all(axis=2).mean())


def test_blur_matched_sigma_measures_how_soft_the_source_is():
    src, ref, _ = _soft_pair()
    zero = np.zeros((H, W, 2), np.float32)
    assert flow_fusion.blur_matched_sigma(src, ref, zero) == SOFT
    assert flow_fusion.blur_matched_sigma(ref, ref, zero) == 0.0  # as sharp as the reference: no blur


@pytest.mark.parametrize("true", [0.5, 0.75, 1.0, 1.5, 2.0, 3.0])
def test_blur_matched_sigma_is_not_biased_by_the_contrast_the_blur_removes(true):
    """A texture blurred by a known sigma gets that sigma back. Normalising the reference to the
    source's spread before blurring it (the first version) charged each larger sigma for the contrast
    it removes and answered a step or two low: 0 / 0.5 / 0.5 / 1.0 / 1.25 / 2.0 here (review-today11)."""
    rng = np.random.default_rng(1)
    ref = cv2.resize(rng.integers(0, 255, (96, 128)).astype(np.uint8), (512, 384), interpolation=cv2.INTER_CUBIC)
    src = cv2.GaussianBlur(ref, (0, 0), true)
    assert flow_fusion.blur_matched_sigma(src, ref, np.zeros((384, 512, 2), np.float32)) == true


def test_fuse_flows_blurs_the_reference_in_both_directions(monkeypatch):
    """Forward the pick compares (source, reference); backward (reference, source): the blur must go
    on the reference, T, both times, and sigma is measured once, only when a mode is left."""
    src, ref, wrong = _soft_pair()
    rng = np.random.default_rng(1)
    pa = rng.uniform(20, W // 2 - 20, (30, 2)).astype(np.float32)
    monkeypatch.setattr(flow_fusion, "keypoint_matches", lambda *a, **k: (pa, pa + np.float32((W // 2, 0))))
    kept = [True]
    monkeypatch.setattr(flow_fusion, "mode_is_kept", lambda *a, **k: kept[0])
    measured, picks = [], []
    real_sigma, real_pick = flow_fusion.blur_matched_sigma, flow_fusion.pick_per_pixel
    monkeypatch.setattr(flow_fusion, "blur_matched_sigma", lambda *a: measured.append(1) or real_sigma(*a))
    monkeypatch.setattr(flow_fusion, "pick_per_pixel",
                        lambda a, b, flows, **k: picks.append((a, b, k["blur"])) or real_pick(a, b, flows, **k))
    zero = np.zeros_like(wrong)
    flow_fusion.fuse_flows(src, ref, zero, zero, lambda a, b, init: wrong.copy(), "modes_pruned2_matched", 2.0)
    assert len(measured) == 1 and len(picks) == 2
    for a, b, (blur_a, blur_b) in picks:
        blurred = a if blur_a > 0 else b
        assert blurred is ref and (blur_a == 0) != (blur_b == 0), (blur_a, blur_b)
    measured.clear()
    kept[0] = False  # every mode pruned: nothing to pick from, nothing to measure
    flow_fusion.fuse_flows(src, ref, zero, zero, lambda a, b, init: wrong.copy(), "modes_pruned2_matched", 2.0)
    assert measured == []


def test_the_pick_at_the_source_s_sharpness_keeps_the_right_flow():
    src, ref, wrong = _soft_pair()
    zero = np.zeros_like(wrong)
    plain = flow_fusion.pick_per_pixel(src, ref, [zero, wrong])
    matched = flow_fusion.pick_per_pixel(src, ref, [zero, wrong], blur=(0.0, SOFT))
    # The test means something only if the plain pick takes the wrong flow on the left half ...
    assert _right_share(plain) < 0.05
    # ... which the pick at the source's sharpness mostly does not (the wrong flow here is a perfect
    # copy of the soft source: a harder case than a real one).
    assert _right_share(matched) > 0.6


def test_modes_pruned2_matched_through_fuse_flows(monkeypatch):
    """The value's own path: the mode's DIS run gives the wrong flow; ``modes_pruned2`` takes it on the
    left half, ``modes_pruned2_matched`` (sigma measured by ``fuse_flows`` itself) keeps DIS's."""
    src, ref, wrong = _soft_pair()
    rng = np.random.default_rng(1)
    pa = rng.uniform(20, W // 2 - 20, (30, 2)).astype(np.float32)
    monkeypatch.setattr(flow_fusion, "keypoint_matches", lambda *a, **k: (pa, pa + np.float32((W // 2, 0))))
    monkeypatch.setattr(flow_fusion, "mode_is_kept", lambda *a, **k: True)
    zero = np.zeros_like(wrong)

    def dis_from(a: np.ndarray, b: np.ndarray, init: np.ndarray | None) -> np.ndarray:
        return wrong.copy()

    f_old, _ = flow_fusion.fuse_flows(src, ref, zero, zero, dis_from, "modes_pruned2", 2.0)
    f_new, _ = flow_fusion.fuse_flows(src, ref, zero, zero, dis_from, "modes_pruned2_matched", 2.0)
    assert _right_share(f_old) < 0.05
    assert _right_share(f_new) > 0.6


def test_config_auto_runs_the_value_and_the_old_one_stays_reachable():
    c = PipelineConfig()
    assert c.flow_fusion_used() == "modes_pruned2_matched"  # the default since blur3 (default_rule.md)
    c.flow_fusion = "modes_pruned2"
    assert c.check() == [] and c.flow_fusion_used() == "modes_pruned2"
    c.flow_fusion = "modes_pruned2_matched"
    assert c.check() == [] and c.flow_fusion_used() == "modes_pruned2_matched"
