import numpy as np
import torch

from hzsr.baseline_model.blend import blend, blend_weight
from hzsr.baseline_model.color import (
    match_colour,
    rgb_to_yuv,
    rgb_to_yuv_torch,
    yuv_to_rgb,
    yuv_to_rgb_torch,
)


def test_yuv_roundtrip_and_torch_agrees():
    rng = np.random.default_rng(1)
    rgb = rng.random((8, 9, 3), dtype=np.float32)
    yuv = rgb_to_yuv(rgb)
    assert np.allclose(yuv_to_rgb(yuv), rgb, atol=1e-4)
    # JPEG's Y: white is 1, chroma of grey is 0
    assert np.allclose(rgb_to_yuv(np.ones((1, 1, 3), np.float32)), [[[1, 0, 0]]], atol=1e-5)
    t = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    assert np.allclose(rgb_to_yuv_torch(t)[0].permute(1, 2, 0).numpy(), yuv, atol=1e-5)
    assert np.allclose(yuv_to_rgb_torch(rgb_to_yuv_torch(t)).numpy(), t.numpy(), atol=1e-4)


def test_blend_weight_formula_numpy_and_torch():
    occ = np.array([0.0, 0.5, 0.2, 0.9], np.float32)
    dfc = np.array([0.0, 0.1, 0.2, 0.5], np.float32)
    unc = np.array([0.0, 0.1, 0.2, 0.0], np.float32)
    rej = np.array([0.0, 0.1, 0.2, 0.0], np.float32)
    want = np.array([1.0, 0.2, 0.2, 0.0], np.float32)  # max(1 - sum, 0)
    assert np.allclose(blend_weight(occ, dfc, unc, rej), want, atol=1e-6)
    got_t = blend_weight(*(torch.from_numpy(a) for a in (occ, dfc, unc, rej)))
    assert np.allclose(got_t.numpy(), want, atol=1e-6)
    # A switched-off map counts as zero.
    assert np.allclose(blend_weight(occ, None, None, None), 1 - occ)
    fused, src = np.full(4, 0.8, np.float32), np.full(4, 0.2, np.float32)
    assert np.allclose(blend(fused, src, want), 0.2 + want * 0.6)


def test_match_colour_recovers_gain_and_offset():
    rng = np.random.default_rng(2)
    src = rng.random((32, 32, 3), dtype=np.float32)
    ref = (src - 0.1) / 1.3
    gain, offset = match_colour(ref, src)
    assert np.allclose(ref * gain + offset, src, atol=1e-3)
