"""Occlusion along a known baseline by semi-global matching, and the reference T's through main T.

``M_occ`` for the W crop against the reference T (``maps.hidden_map`` given the baseline) misses
the thin strips of small depth steps: its step gate (``maps.hidden_min_step_px``) lets through
only steps of 16 flow-grid px, and DIS between the blurry W crop and the reference T does not
resolve smaller ones. Main T and the reference T are alike (same lens, same focus, same blur), and
the 1.5 cm between main W and main T hides next to nothing: ``sgbm_fold`` on the T-vs-T pair,
where its parallax steps are small, sampled at each W-crop pixel's target in main T, finds those
strips (``hidden_through_main_t``; figures in ``docs/qa.md``).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from hzsr.qa.align import GlobalShift, _to_u8, flow_grid_scale, shift_image, to_luma, warp
from hzsr.qa.config import MapsConfig, QAConfig
from hzsr.qa.maps import _unit
from hzsr.qa.register import Registration

# Semi-global matching's settings: OpenCV's recommended penalties (P1 = 8 n^2, P2 = 32 n^2 for an
# n-px block) and a disparity range of -32..63 flow-grid px around the global shift (the steps it
# is used for are under 16 px). The speckle filter and the opening remove isolated wrong
# disparities, each of which would hide a strip as wide as its error (chosen on calibration seeds
# 2024 2025 among speckle 0-200 px and opening 0-9 px: bench/qa.py --part occ-alternatives).
SGBM_MIN_DISPARITY = -32
SGBM_NUM_DISPARITIES = 96
SGBM_BLOCK = 5
SGBM_UNIQUENESS = 10
SGBM_SPECKLE_WINDOW = 100
SGBM_OPENING = 5


def grid_lumas(src: np.ndarray, ref: np.ndarray, shift: GlobalShift, cfg: QAConfig,
               optical_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SRC and REF moved by ``shift`` as DIS sees them in ``register_pair`` (uint8 lumas on the
    flow grid: W-crop pairs low-passed to W's optical resolution first), and ``shift`` in
    flow-grid px."""
    c = cfg.align
    ys, yr = _to_u8(to_luma(src)), _to_u8(to_luma(shift_image(ref, shift.dx, shift.dy)))
    if optical_scale < 1.0 and c.optical_blur > 0:
        sigma = c.optical_blur / optical_scale
        ys, yr = cv2.GaussianBlur(ys, (0, 0), sigma), cv2.GaussianBlur(yr, (0, 0), sigma)
    s = flow_grid_scale(src.shape, c)
    h, w = src.shape[:2]
    if s < 1.0:
        size = (max(8, round(w * s)), max(8, round(h * s)))
        ys = cv2.resize(ys, size, interpolation=cv2.INTER_AREA)
        yr = cv2.resize(yr, size, interpolation=cv2.INTER_AREA)
    return ys, yr, np.array([shift.dx, shift.dy], np.float32) * (ys.shape[1] / w)


def _fill_background(disp: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Invalid runs of each row take the smaller disparity of their two valid neighbours (the
    background: what an occluded strip beside a depth edge shows)."""
    h, w = disp.shape
    cols = np.arange(w)[None, :]
    left = np.maximum.accumulate(np.where(ok, cols, -1), axis=1)
    right = np.minimum.accumulate(np.where(ok, cols, w)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(h)[:, None]
    a = np.where(left >= 0, disp[rows, np.clip(left, 0, w - 1)], np.inf)
    b = np.where(right < w, disp[rows, np.clip(right, 0, w - 1)], np.inf)
    f = np.minimum(a, b)
    return np.where(ok, disp, np.where(np.isfinite(f), f, 0.0)).astype(np.float32)


def sgbm_fold(ys: np.ndarray, yr: np.ndarray, baseline, margin: float = 0.5) -> np.ndarray:
    """SRC pixels REF does not see: semi-global matching along the baseline, then its z-buffer.

    Both lumas are rotated so the baseline ``b`` (REF's position minus SRC's) runs along +x: a
    nearer point moves further along -b, OpenCV's left/right convention, with disparity
    ``d = -F.b/|b|``. ``cv2.StereoSGBM`` (3-way) gives SRC's disparity; invalid pixels take the
    background's (``_fill_background``); an opening removes isolated spikes. SRC pixel ``s`` lands
    at ``tau(s) = s - d(s)`` and is hidden when a pixel further along b lands more than ``margin``
    px before it (``maps.fold_map``'s test). Bool mask on the lumas' grid.
    """
    if ys.shape != yr.shape or ys.ndim != 2:
        raise ValueError(f"sgbm_fold: expected two lumas of one size, got {ys.shape} and {yr.shape}")
    h, w = ys.shape
    b = _unit(baseline)
    ang = float(np.degrees(np.arctan2(b[1], b[0])))
    quarter = round(ang / 90.0)
    if abs(ang - 90.0 * quarter) < 1e-6:
        # A baseline along an image axis (the rig's: x for W -> main T, y for the mount): a
        # lossless quarter turn, and SGBM on the image alone rather than on a canvas twice its size.
        turn = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, -1: cv2.ROTATE_90_CLOCKWISE, 2: cv2.ROTATE_180,
                -2: cv2.ROTATE_180}.get(quarter)
        back = {1: cv2.ROTATE_90_CLOCKWISE, -1: cv2.ROTATE_90_COUNTERCLOCKWISE}.get(quarter, turn)
        left, right = (ys, yr) if turn is None else (cv2.rotate(ys, turn), cv2.rotate(yr, turn))
        # Margins as wide as the disparity search (as the canvas below has): SGBM leaves the first
        # min + num disparity columns unmatched, which would drop the strips along the frame.
        pad_l, pad_r = max(0, SGBM_MIN_DISPARITY + SGBM_NUM_DISPARITIES), max(0, -SGBM_MIN_DISPARITY)
        inside = np.zeros((left.shape[0], left.shape[1] + pad_l + pad_r), bool)
        inside[:, pad_l:pad_l + left.shape[1]] = True
        left, right = (cv2.copyMakeBorder(im, 0, 0, pad_l, pad_r, cv2.BORDER_CONSTANT, value=0) for im in (left, right))

        def unrotate(m: np.ndarray) -> np.ndarray:
            m = m[:, pad_l:m.shape[1] - pad_r]
            return m if back is None else cv2.rotate(m.astype(np.uint8), back) > 0
    else:
        side = int(np.ceil(np.hypot(h, w))) + 2
        rot = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), ang, 1.0)
        rot[0, 2] += (side - w) / 2.0
        rot[1, 2] += (side - h) / 2.0
        left = cv2.warpAffine(ys, rot, (side, side), flags=cv2.INTER_LINEAR, borderValue=0)
        right = cv2.warpAffine(yr, rot, (side, side), flags=cv2.INTER_LINEAR, borderValue=0)
        inside = cv2.warpAffine(np.ones((h, w), np.uint8), rot, (side, side), flags=cv2.INTER_NEAREST) > 0

        def unrotate(m: np.ndarray) -> np.ndarray:
            return cv2.warpAffine(m.astype(np.uint8), cv2.invertAffineTransform(rot), (w, h),
                                  flags=cv2.INTER_NEAREST) > 0
    n = SGBM_BLOCK
    matcher = cv2.StereoSGBM_create(minDisparity=SGBM_MIN_DISPARITY, numDisparities=SGBM_NUM_DISPARITIES,
                                    blockSize=n, P1=8 * n * n, P2=32 * n * n, uniquenessRatio=SGBM_UNIQUENESS,
                                    disp12MaxDiff=-1, speckleWindowSize=SGBM_SPECKLE_WINDOW, speckleRange=2,
                                    mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    disp = matcher.compute(left, right).astype(np.float32) / 16.0  # fixed point, 4 fractional bits
    disp = _fill_background(disp, (disp >= SGBM_MIN_DISPARITY) & inside)
    if SGBM_OPENING > 1:
        k = np.ones((SGBM_OPENING, SGBM_OPENING), np.uint8)
        disp = cv2.dilate(cv2.erode(disp, k), k)
    s = np.arange(left.shape[1], dtype=np.float32)[None, :]
    tau = np.where(inside, s - disp, np.inf).astype(np.float32)
    ahead = np.minimum.accumulate(tau[:, ::-1], axis=1)[:, ::-1]  # min over s' >= s
    ahead = np.concatenate([ahead[:, 1:], np.full((left.shape[0], 1), np.inf, np.float32)], axis=1)  # s' > s
    with np.errstate(invalid="ignore"):
        hid = inside & (tau - ahead > margin)
    return unrotate(hid)


def small_steps(flow: np.ndarray, baseline, cfg: MapsConfig, grid_scale: float = 1.0) -> np.ndarray:
    """Where the parallax along the baseline spans less than ``hidden_min_step_px`` within a
    ``hidden_step_window`` square (flow-grid px): what ``hidden_map``'s step gate leaves out."""
    b = _unit(baseline)
    p = (flow[..., 0] * b[0] + flow[..., 1] * b[1]).astype(np.float32)
    win = max(1, int(round(cfg.hidden_step_window / grid_scale)))
    k = np.ones((win, win), np.uint8)
    return (cv2.dilate(p, k) - cv2.erode(p, k)) * grid_scale < cfg.hidden_min_step_px


def hidden_through_main_t(main_t: np.ndarray, ref_t: np.ndarray, tt_shift: GlobalShift, tt_flow: np.ndarray,
                          w_to_main_flow: np.ndarray, cfg: QAConfig) -> np.ndarray:
    """W-crop pixels the reference T does not see, found between the two Ts (bool, W crop's grid).

    ``sgbm_fold`` along the mount's baseline (``rig.ref_baseline_m``) on main T vs the reference
    T (their global shift ``tt_shift``), kept where ``small_steps`` of the T-vs-T flow ``tt_flow``
    (main T's grid, input px, as ``Registration.flow_fwd``), then sampled at each W-crop pixel's
    target in main T (``w_to_main_flow``, W crop -> main T; W crop and main T on one grid).
    """
    ys, yr, _ = grid_lumas(main_t, ref_t, tt_shift, cfg)
    h, w = main_t.shape[:2]
    g = ys.shape[1] / w
    fold = sgbm_fold(ys, yr, cfg.rig.ref_baseline_m, cfg.maps.hidden_fold_margin_px)
    flow_g = cv2.resize(tt_flow, (ys.shape[1], ys.shape[0]), interpolation=cv2.INTER_LINEAR) * g
    keep = (fold & small_steps(flow_g, cfg.rig.ref_baseline_m, cfg.maps)).astype(np.float32)
    full = cv2.resize(keep, (w, h), interpolation=cv2.INTER_LINEAR)
    return warp(full, w_to_main_flow, border=cv2.BORDER_CONSTANT) >= 0.5


def add_hidden(reg: Registration, extra: np.ndarray) -> Registration:
    """``reg`` with ``extra`` (bool, SRC's grid) added to its ``M_occ`` (``hidden``) and
    ``stats["hidden_frac"]`` counted again."""
    if reg.hidden is None:
        raise ValueError("add_hidden: the registration has no hidden map (maps.hidden is off)")
    if extra.shape != reg.hidden.shape:
        raise ValueError(f"add_hidden: extra {extra.shape} and hidden {reg.hidden.shape} differ in shape")
    hid = np.maximum(reg.hidden, extra.astype(np.float32))
    stats = dict(reg.stats)
    stats["hidden_frac"] = float((hid[reg.valid] >= 0.5).mean()) if reg.valid.any() else 0.0
    return replace(reg, hidden=hid, stats=stats)
