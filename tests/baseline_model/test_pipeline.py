"""The pipeline on simulated captures, checked against the simulator's ground truth."""

import json

import cv2
import numpy as np
import pytest

from hzsr.baseline_model.align import camera_geometry
from hzsr.baseline_model.pipeline import HZSRPipeline, uncrop, unet_inputs, zoom_affine
from hzsr.baseline_model.unet import FusionUNet
from hzsr.sim.truth import load_capture_truth


def _read(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _capture(session, cid="c00002"):
    d = session / "captures" / cid
    return (_read(d / "main_W.jpg"), _read(d / "main_T.jpg"), _read(d / "ref_T.jpg"),
            json.loads((d / "capture.json").read_text()))


@pytest.fixture(scope="module")
def pipe():
    return HZSRPipeline(FusionUNet())


def test_alignment_matches_the_simulators_true_flow(tiny_session, pipe):
    w, _, ref, meta = _capture(tiny_session)
    al = pipe.align(w, ref, meta)
    truth, arrays = load_capture_truth(tiny_session, "c00002")
    # The truth is on the unshifted centred crop; ours is shifted by the coarse translation d, so
    # our flow should equal truth(x - d) - ... to first order: truth - d in the residual.
    true_res = arrays["flow_ref_T"] - np.array([al.shift.dx, al.shift.dy], np.float32)
    valid = arrays["valid_ref_T"] > 0
    h, w_ = true_res.shape[:2]
    ours = cv2.resize(al.flow_fwd, (w_, h)) * np.array([w_ / al.flow_fwd.shape[1], h / al.flow_fwd.shape[0]])
    epe = np.linalg.norm(ours - true_res, axis=-1)[valid]
    assert np.median(epe) < 1.5, np.median(epe)
    assert al.use_reference and not al.warnings
    # Maps are in range and M_blend follows the published formula where the reference has pixels.
    m = al.maps
    for k in ("occlusion", "occlusion_blend", "defocus", "uncertainty", "reject", "blend"):
        assert 0 <= m[k].min() and m[k].max() <= 1, k
    # (the blend's own M_occ: at the simulator's level-2 flow it is not the UNet's; test_blend_maps_level.py)
    # (and M_defocus weighted there by blend_defocus_weight, maps["defocus"] unscaled)
    w_dfc = pipe.cfg.blend_defocus_weight if al.flow_level >= pipe.cfg.blend_maps_level else 1.0
    want = np.clip(1 - m["occlusion_blend"] - w_dfc * m["defocus"] - m["uncertainty"] - m["reject"], 0,
                   None) * m["valid"]
    assert np.allclose(m["blend"], want, atol=1e-6)


def test_warped_reference_is_closer_to_the_target_than_bicubic(tiny_session, pipe):
    from hzsr.baseline_model.data import make_target
    from hzsr.baseline_model.evaluate import psnr

    w, main_t, ref, meta = _capture(tiny_session)
    res = pipe.run(w, ref, meta, extras=("bicubic", "warped_ref", "fusion"))
    tgt = make_target(res.alignment, main_t, pipe.cfg, res.alignment.rect.scale)
    from hzsr.baseline_model.color import luma

    p_bic = psnr(luma(res.extras["bicubic"]), tgt.y, tgt.mask)
    p_ref = psnr(luma(res.extras["warped_ref"]), tgt.y, tgt.mask)
    assert p_ref > p_bic + 2, (p_ref, p_bic)
    # The untrained UNet starts near the identity, so fusion ~ bicubic; colour is the source's.
    yuv_f = cv2.cvtColor(res.extras["fusion"], cv2.COLOR_RGB2YCrCb).astype(int)
    yuv_s = cv2.cvtColor(res.extras["bicubic"], cv2.COLOR_RGB2YCrCb).astype(int)
    assert np.abs(yuv_f[..., 1:] - yuv_s[..., 1:]).mean() < 1.5


def test_training_inputs_are_inference_inputs(tiny_session, pipe):
    w, _, ref, meta = _capture(tiny_session)
    al = pipe.align(w, ref, meta)
    x_full, _ = unet_inputs(al, 0, al.src.shape[0], 0, al.src.shape[1])
    x_win, _ = unet_inputs(al, 40, 104, 64, 160)
    assert np.allclose(x_full[:, 40:104, 64:160], x_win, atol=1e-5)


def test_fast_unet_inputs_and_blending_keep_the_formulas_bits(tiny_session, pipe):
    """issue19x's in-place rewrite of the per-tile work gives the plain formulas' float32 bits."""
    from hzsr.baseline_model.blend import blend, blend_planes
    from hzsr.baseline_model.color import RGB_TO_YUV, YUV_TO_RGB
    from hzsr.baseline_model.pipeline import _rgb_u8, _yuv, sample_grid

    w, _, ref, meta = _capture(tiny_session)
    al = pipe.align(w, ref, meta)
    h, w_ = al.src.shape[:2]
    gh, gw = al.grid_shape
    wy0, wy1, wx0, wx1 = 24, 200, 40, 290
    # The formulas as written before the rewrite (two maps, fresh temporaries, np.stack).
    flow = sample_grid(al.flow_fwd, (h, w_), wy0, wy1, wx0, wx1) * np.array([w_ / gw, h / gh], np.float32)
    gx = np.arange(wx0, wx1, dtype=np.float32)[None, :]
    gy = np.arange(wy0, wy1, dtype=np.float32)[:, None]
    warped = cv2.remap(al.ref, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    ref_f = np.clip(warped.astype(np.float32) * (al.colour_gain / 255.0) + al.colour_offset, 0, 1)
    y_src = cv2.transform(al.src[wy0:wy1, wx0:wx1].astype(np.float32) * (1 / 255.0), RGB_TO_YUV)[..., 0]
    y_ref = cv2.transform(ref_f, RGB_TO_YUV[:1]).reshape(y_src.shape)
    occ = sample_grid(np.maximum(al.maps["occlusion"], 1.0 - al.maps["valid"]), (h, w_), wy0, wy1, wx0, wx1)
    x, ref_fast = unet_inputs(al, wy0, wy1, wx0, wx1)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    assert np.array_equal(x, np.stack([y_src, y_ref, occ]))
    assert np.array_equal(ref_fast, ref_f)
    # Blending and back to RGB: in place, the same bits as the out-of-place formulas.
    rng = np.random.default_rng(3)
    fus, src, wb = (rng.random((50, 70), dtype=np.float32) for _ in range(3))
    fus_before = fus.copy()
    assert np.array_equal(blend_planes(fus, src, wb), blend(fus, src, wb))
    assert np.array_equal(fus, fus_before)  # inputs untouched (the fusion may be kept as an extra)
    yuv = _yuv(al.src[:64, :96])
    want = np.clip(cv2.transform(yuv, YUV_TO_RGB) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    into = np.zeros((80, 120, 3), np.uint8)
    _rgb_u8(yuv, into[8:72, 16:112])
    assert np.array_equal(_rgb_u8(yuv), want) and np.array_equal(into[8:72, 16:112], want)


def test_missing_af_roi_falls_back_to_the_centre_with_a_warning(tiny_session, pipe):
    w, _, ref, meta = _capture(tiny_session)
    for f in meta["frames"]:
        f.pop("af_roi", None)
    res = pipe.run(w, ref, meta)
    assert any("no AF ROI" in s and "centre" in s for s in res.warnings)
    assert res.alignment.use_reference
    geom = camera_geometry(meta, (320, 240), (320, 240))
    assert geom.af_roi is None


def test_non_overlapping_reference_gives_bicubic_and_a_warning(tiny_session, pipe):
    w, _, _, meta = _capture(tiny_session)
    # A reference of another scene entirely: an image the source never saw.
    other = _read(tiny_session / "captures" / "c00004" / "ref_T.jpg")
    other = cv2.flip(other, -1)
    res = pipe.run(w, other, meta, extras=("bicubic",))
    assert not res.alignment.use_reference
    assert any("reference" in s and "bicubic" in s for s in res.warnings)
    assert np.array_equal(res.final, res.extras["bicubic"])


def test_uncrop_pastes_the_crop_where_it_came_from(tiny_session, pipe):
    w, _, ref, meta = _capture(tiny_session)
    al = pipe.align(w, ref, meta)
    k = al.rect.scale
    # At the focal ratio the output is T's field of view: the fused image itself.
    assert np.array_equal(uncrop(w, al.src, al.rect, k), al.src)
    # Below it, pasting the bicubic crop back must look like W zoomed there.
    z = 0.9 * k
    out = uncrop(w, al.src, al.rect, z)
    assert out.shape == w.shape
    zoomed = uncrop(w, np.zeros_like(al.src), al.rect, z)  # where the crop lands, it is black
    inside = zoomed.max(-1) == 0
    assert inside.mean() > 0.5
    a = zoom_affine((w.shape[1], w.shape[0]), z)
    plain_zoom = cv2.warpAffine(w, a[:2], (w.shape[1], w.shape[0]), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
    diff = np.abs(out.astype(float) - plain_zoom.astype(float))
    assert diff[inside].mean() < 2.0  # the same W pixels, resampled through the crop instead
    # A misplaced paste would show: shift the crop by 5 px and the error jumps.
    shifted = uncrop(w, np.roll(al.src, 5, axis=1), al.rect, z)
    assert np.abs(shifted.astype(float) - plain_zoom)[inside].mean() > 3 * diff[inside].mean()
    with pytest.raises(ValueError, match="zoom"):
        uncrop(w, al.src, al.rect, 0.5)
    # At zoom 1 the crop is a small patch of the full W frame.
    z1 = uncrop(w, np.zeros_like(al.src), al.rect, 1.0)
    assert 0.02 < (z1.max(-1) == 0).mean() < 0.06


@pytest.mark.parametrize("in_flight", [1, 2])
def test_tiled_blend_reuses_each_windows_yuv_at_the_right_place(tiny_session, pipe, in_flight):
    """issue19x (second pass): the blending takes I_src's YUV from its tile's window (computed for
    the UNet's input), cut to the core; small tiles, borders and tiles in flight must still give
    the whole frame's formula: RGB(Y = blend(Y_fus, Y_src, M_blend), U, V of I_src)."""
    import dataclasses

    from hzsr.baseline_model.blend import blend
    from hzsr.baseline_model.pipeline import _rgb_u8, _yuv, sample_grid

    class Half:  # a numpy "network": half the window's Y_src, so every pixel's Y_fus is known
        takes_numpy = True
        tiles_in_flight = in_flight
        size_multiple = 16

        def __call__(self, x: np.ndarray) -> np.ndarray:
            return x[:, :1] * np.float32(0.5)

    w, _, ref, meta = _capture(tiny_session)
    cfg = dataclasses.replace(pipe.cfg, tile=48, halo=8)
    half = HZSRPipeline(None, cfg, runtime="openvino", runner=Half())
    al = half.align(w, ref, meta)
    assert al.use_reference
    res = half.fuse(al)
    assert res.tiles > 9  # many tiles, some at the image's borders
    h, w_ = al.src.shape[:2]
    yuv = _yuv(al.src)
    y_src = yuv[..., 0].copy()
    yuv[..., 0] = blend(0.5 * y_src, y_src, sample_grid(al.maps["blend"], (h, w_), 0, h, 0, w_))
    want = _rgb_u8(yuv)
    diff = np.abs(res.final.astype(int) - want.astype(int))
    # Up to one level where OpenCV's vector loops round a pixel by its place in the row.
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
