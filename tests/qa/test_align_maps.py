"""Alignment primitives and maps on images whose true motion is known by construction."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hzsr.core.geometry import intrinsics_matrix
from hzsr.qa.align import (
    crop_w_to_t,
    dense_flow,
    global_translation,
    inframe_mask,
    shift_image,
    to_luma,
    warp,
)
from hzsr.qa.config import QAConfig
from hzsr.qa.maps import defocus_map, flow_uncertainty_map, occlusion_map, reject_map
from hzsr.qa.register import register_pair


@pytest.fixture(scope="module")
def photo_rgb() -> np.ndarray:
    import skimage.data as data

    img = data.astronaut()  # 512x512 RGB, real photograph
    return cv2.resize(img, (480, 360), interpolation=cv2.INTER_AREA)


def test_to_luma_matches_bt601():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    assert to_luma(rgb).tolist() == [[76, 150, 29]]
    f = to_luma(rgb.astype(np.float32) / 255)
    assert f.dtype == np.float32 and abs(float(f[0, 1]) - 0.587) < 1e-4


def test_crop_w_to_t_picks_the_centre_at_the_focal_ratio():
    w_img = np.zeros((300, 400), np.uint8)
    w_img[120:180, 150:250] = 200  # a central 100x60 box
    k_w = intrinsics_matrix(100.0, 100.0, 199.5, 149.5)
    k_t = intrinsics_matrix(400.0, 400.0, 199.5, 149.5)  # 4x the focal length
    crop, rect = crop_w_to_t(w_img, k_w, k_t, (400, 300))
    assert crop.shape == (300, 400)
    assert rect.scale == pytest.approx(4.0)
    assert (rect.x0, rect.y0, rect.width, rect.height) == (150.0, 112.5, 100.0, 75.0)
    # The crop spans W rows 112.5..187.5: 7.5 dark W rows (30 T rows) above and below the box.
    assert crop[40:260, 10:390].min() > 190
    assert crop[:25].max() < 10 and crop[-25:].max() < 10


@pytest.mark.parametrize("d", [(12.3, -7.6), (-40.0, 25.5)])
def test_global_translation_recovers_a_known_shift(photo_rgb, d):
    src = photo_rgb
    ref = shift_image(src, -d[0], -d[1])  # ref(x) = src(x - d): REF(x + d) = SRC(x)
    g = global_translation(src, ref, QAConfig())
    assert g.inliers >= 30 and g.matches >= g.inliers
    assert g.dx == pytest.approx(d[0], abs=0.6) and g.dy == pytest.approx(d[1], abs=0.6)


def test_global_translation_on_a_flat_image_reports_no_support():
    flat = np.full((200, 300, 3), 128, np.uint8)
    g = global_translation(flat, flat)
    assert g.inliers == 0


def test_dense_flow_convention_and_warp(photo_rgb):
    src = photo_rgb
    ref = shift_image(src, -3.0, 2.0)  # REF(x + (3, -2)) = SRC(x)
    fwd, bwd = dense_flow(src, ref)
    assert fwd.dtype == np.float32 and fwd.shape == (360, 480, 2)
    inner = (slice(40, -40), slice(40, -40))
    assert np.median(fwd[inner][..., 0]) == pytest.approx(3.0, abs=0.2)
    assert np.median(fwd[inner][..., 1]) == pytest.approx(-2.0, abs=0.2)
    assert np.median(bwd[inner][..., 0]) == pytest.approx(-3.0, abs=0.2)
    warped = warp(ref, fwd)
    err = np.abs(warped.astype(np.float32) - src.astype(np.float32))[inner].mean()
    assert err < 4.0, err
    assert occlusion_map(fwd, bwd, 1.0)[inner].mean() < 0.1


def test_occlusion_map_flags_inconsistent_flow():
    h, w = 64, 80
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[..., 0] = 5.0
    bwd = np.zeros((h, w, 2), np.float32)
    bwd[..., 0] = -5.0
    bwd[:, 40:, 0] = 0.0  # where x + 5 lands here, the way back is wrong by 5 px
    m = occlusion_map(fwd, bwd, 0.5)
    assert m[:, :30].max() == 0.0
    assert np.all(m[:, 37:70] == 1.0)
    assert inframe_mask(fwd)[:, -3:].sum() == 0


def test_defocus_map_marks_flow_away_from_the_af_roi_cluster():
    h, w = 96, 128
    flow = np.zeros((h, w, 2), np.float32)
    flow[:, :64, 0] = 10.0  # the subject (in the AF ROI)
    flow[:, 64:, 0] = 2.0  # a background plane, 8 px of parallax away
    m = defocus_map(flow, [8, 8, 40, 40], QAConfig(), grid_scale=1.0)
    assert m[:, :64].max() < 0.05
    assert m[:, 64:].min() > 0.95


def test_defocus_map_takes_the_focus_distances_plane_not_the_rois_largest_cluster():
    """A near foreground fills most of the AF ROI (its centre), the subject behind it is the plane
    in focus: the depth-flow relation (the focus distance's parallax plus the session's offset)
    names the subject's plane, and the map marks the foreground, not the subject."""
    h, w = 96, 128
    flow = np.zeros((h, w, 2), np.float32)
    flow[:, :, 0] = -14.0  # the subject at the focus distance: parallax -f b D = -14 px ...
    flow[:, :, 1] = 25.0  # ... plus the rig's constant offset (0, 25)
    flow[20:76, 30:90, 0] = -41.0  # a near foreground over the ROI's centre, 27 px more parallax
    roi = [24, 16, 72, 64]  # 78 % foreground: the largest cluster
    cfg = QAConfig()
    largest = defocus_map(flow, roi, cfg, grid_scale=1.0)
    assert largest[40, 60] < 0.05 and largest[5, 5] > 0.95  # today's choice inverts the map
    focus = np.array([-14.0, 0.0]) + np.array([0.0, 25.0])  # expected_parallax + session offset
    m = defocus_map(flow, roi, cfg, grid_scale=1.0, focus_flow=focus)
    assert m[20:76, 30:90].min() > 0.95  # the foreground is out of focus
    assert m[:20].max() < 0.05 and m[:, :30].max() < 0.05  # the subject's plane is in focus
    # Where the largest cluster is the focus distance's plane as DIS measured it (within the
    # map's in-focus radius, sqrt(gamma)), the cluster is kept: an offset 2 px off changes nothing.
    near = defocus_map(flow, roi, cfg, grid_scale=1.0, focus_flow=np.array([-39.0, 25.0]))
    assert np.array_equal(near, largest)


def test_uncertainty_is_low_on_smooth_flow_and_high_at_a_flow_edge():
    h, w = 96, 128
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[:, 64:, 0] = 6.0
    bwd = -fwd
    m = flow_uncertainty_map(fwd, bwd, QAConfig(), grid_scale=1.0)
    assert m[:, :50].max() == 0.0
    assert m[:, 62:66].min() > 0.5


def test_reject_map_accepts_aligned_and_rejects_misaligned_texture(photo_rgb):
    y = to_luma(photo_rgb).astype(np.float32) / 255
    assert reject_map(y, y * 0.8 + 0.1, QAConfig(), downscale=0.5).mean() < 0.02  # gain/offset forgiven
    shifted = shift_image(y, 6.0, 0.0)
    textured = cv2.blur(y * y, (9, 9)) - cv2.blur(y, (9, 9)) ** 2 > 0.05**2
    assert reject_map(y, shifted, QAConfig(), downscale=0.5)[textured].mean() > 0.45


def test_register_pair_aligns_a_shifted_photograph(photo_rgb):
    src = photo_rgb
    ref = shift_image(src, -25.0, 14.0)
    r = register_pair(src, ref, QAConfig(), af_roi=[200, 150, 80, 60])
    assert r.shift.dx == pytest.approx(25.0, abs=0.6)
    assert r.stats["psnr_db"] > 30 and r.stats["ssim"] > 0.9
    assert r.stats["occluded_frac"] < 0.05
    assert r.defocus is not None and r.stats["defocus_frac"] < 0.05
    assert r.flow_fwd.shape == (360, 480, 2)
    # The strip of SRC whose REF counterpart is out of frame is marked invalid.
    assert not r.valid[:, -20:].any() and not r.valid[:10].any() and r.valid[20:, :400].all()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="differ in size"):
        dense_flow(np.zeros((50, 60), np.uint8), np.zeros((50, 61), np.uint8))
    with pytest.raises(ValueError, match="HxWx2"):
        warp(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.float32))
