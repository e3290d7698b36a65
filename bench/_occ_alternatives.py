"""Occlusion maps other than ``maps.hidden_map``, measured beside it by ``bench/qa.py``
(``--part occ-alternatives`` and ``--part middlebury``). Bench-only: each was tried for issue 18's
map goals and none beat ``hidden_map`` on the calibration seeds (``docs/qa.md``).

Every function works on the flow grid of ``register_pair`` (``align.dense_flow_lowres``'s lumas:
W-crop pairs low-passed to W's optical resolution, then area-resized to the grid) with REF
already moved by the pair's global shift ``d`` (flow-grid px), and returns flows that include
``d`` again, so they compare with ``Registration.flow_fwd`` on that grid.
"""

from __future__ import annotations

import cv2
import numpy as np

from hzsr.qa.align import _to_u8, flow_grid_scale, shift_image, to_luma, warp
from hzsr.qa.config import QAConfig
from hzsr.qa.maps import _unit, fb_error, hidden_map

#: The DIS settings tried beside the shipped ``medium`` (OpenCV's preset, finest scale 1):
#: the finest scale 0 (the flow grid itself), smaller patches, more variational refinement.
DIS_VARIANTS: dict[str, dict[str, int]] = {
    "finest0": {"FinestScale": 0},
    "finest0_patch8_stride4": {"FinestScale": 0, "PatchSize": 8, "PatchStride": 4},
    "finest0_variational20": {"FinestScale": 0, "VariationalRefinementIterations": 20},
}


def grid_lumas(src: np.ndarray, ref: np.ndarray, shift, cfg: QAConfig, optical_scale: float = 1.0):
    """SRC and the shifted REF as DIS sees them in ``register_pair`` (uint8 lumas on the flow
    grid), and the shift in flow-grid px. ``shift``: the gated ``GlobalShift`` (input px)."""
    c = cfg.align
    ys, yr = _to_u8(to_luma(src)), _to_u8(to_luma(shift_image(ref, shift.dx, shift.dy)))
    if optical_scale < 1.0 and c.optical_blur > 0:
        sigma = c.optical_blur / optical_scale
        ys, yr = cv2.GaussianBlur(ys, (0, 0), sigma), cv2.GaussianBlur(yr, (0, 0), sigma)
    s = flow_grid_scale(src.shape, c)
    h, w = src.shape[:2]
    size = (max(8, round(w * s)), max(8, round(h * s)))
    if s < 1.0:
        ys = cv2.resize(ys, size, interpolation=cv2.INTER_AREA)
        yr = cv2.resize(yr, size, interpolation=cv2.INTER_AREA)
    g = ys.shape[1] / w
    return ys, yr, np.array([shift.dx, shift.dy], np.float32) * g


def _with_shift(fwd_r: np.ndarray, bwd_r: np.ndarray, d: np.ndarray):
    """Add the global shift back, as ``register_pair`` does."""
    return fwd_r + d, shift_image(bwd_r, -float(d[0]), -float(d[1])) - d


def dis_flows(ys: np.ndarray, yr: np.ndarray, d: np.ndarray, params: dict[str, int] | None = None):
    """Forward and backward DIS (preset ``medium`` with ``params`` set) between grid lumas."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    for k, v in (params or {}).items():
        getattr(dis, "set" + k)(v)
    return _with_shift(dis.calc(ys, yr, None), dis.calc(yr, ys, None), d)


def multi_hypothesis_flows(ys: np.ndarray, yr: np.ndarray, d: np.ndarray, baseline,
                           offsets=(0.0, -48.0, 48.0), window: int = 9, photo_weight: float = 0.1):
    """DIS started from several shifts along the baseline, the best per pixel.

    REF is moved by ``-k b`` for each offset ``k`` (flow-grid px): a nearer plane whose parallax
    DIS's pyramid does not reach from the global shift can start next to it. Each pixel takes the
    hypothesis with the least ``box(min(e_fb, 10) + photo_weight |SRC - REF(x + F)|)`` over a
    ``window`` square (forward and backward chosen apart).
    """
    b = _unit(baseline)
    hyp = []
    for k in offsets:
        o = (-b * k).astype(np.float32)
        yr_k = shift_image(yr, float(o[0]), float(o[1]))
        hyp.append(dis_flows(ys, yr_k, d + o))
    a, r = ys.astype(np.float32), yr.astype(np.float32)

    def pick(flows, others, x, y):
        cost = [cv2.blur(np.minimum(fb_error(f, o), 10.0) + photo_weight * np.abs(x - warp(y, f)), (window, window))
                for f, o in zip(flows, others, strict=True)]
        k = np.argmin(np.stack(cost), 0)
        return np.take_along_axis(np.stack(flows), k[None, ..., None].repeat(2, -1), 0)[0]

    fwd = pick([h[0] for h in hyp], [h[1] for h in hyp], a, r)
    bwd = pick([h[1] for h in hyp], [h[0] for h in hyp], r, a)
    return fwd, bwd


def magnitude_scaled_fb(flow_fwd: np.ndarray, flow_bwd: np.ndarray, alpha: float = 0.01, beta: float = 0.5):
    """Forward-backward check with a threshold that grows with the flow (Sundaram et al. 2010):
    ``|F + B'|^2 > alpha (|F|^2 + |B'|^2) + beta``, ``B' = F_bwd(x + F_fwd(x))`` (flow-grid px)."""
    back = warp(flow_bwd.astype(np.float32), flow_fwd)
    lhs = ((flow_fwd + back) ** 2).sum(-1)
    return lhs > alpha * ((flow_fwd**2).sum(-1) + (back**2).sum(-1)) + beta


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


def sgbm_fold(ys: np.ndarray, yr: np.ndarray, baseline, margin: float = 0.5, min_disparity: int = -32,
              num_disparities: int = 96, block: int = 5, uniqueness: int = 10, speckle_window: int = 100,
              opening: int = 5) -> np.ndarray:
    """Semi-global matching along the baseline, then its z-buffer (``maps.fold_map``'s test).

    Both grid lumas are rotated so the baseline runs along +x (a nearer point moves further along
    -b: OpenCV's left/right convention, disparity ``-F.b/|b|``); ``cv2.StereoSGBM`` (3-way,
    ``block`` px, P1 = 8 block^2, P2 = 32 block^2, speckle filter) gives SRC's disparity; invalid
    pixels take the background's (``_fill_background``); an opening of ``opening`` px removes
    isolated spikes; a pixel is hidden when one further along b lands more than ``margin`` before
    it. Bool mask on the grid.
    """
    h, w = ys.shape
    b = _unit(baseline)
    ang = float(np.degrees(np.arctan2(b[1], b[0])))
    side = int(np.ceil(np.hypot(h, w))) + 2
    rot = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), ang, 1.0)
    rot[0, 2] += (side - w) / 2.0
    rot[1, 2] += (side - h) / 2.0
    left = cv2.warpAffine(ys, rot, (side, side), flags=cv2.INTER_LINEAR, borderValue=0)
    right = cv2.warpAffine(yr, rot, (side, side), flags=cv2.INTER_LINEAR, borderValue=0)
    inside = cv2.warpAffine(np.ones((h, w), np.uint8), rot, (side, side), flags=cv2.INTER_NEAREST) > 0
    m = cv2.StereoSGBM_create(minDisparity=min_disparity, numDisparities=num_disparities, blockSize=block,
                              P1=8 * block * block, P2=32 * block * block, uniquenessRatio=uniqueness,
                              disp12MaxDiff=-1, speckleWindowSize=speckle_window, speckleRange=2,
                              mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    disp = m.compute(left, right).astype(np.float32) / 16.0
    disp = _fill_background(disp, (disp >= min_disparity) & inside)
    if opening > 1:
        k = np.ones((opening, opening), np.uint8)
        disp = cv2.dilate(cv2.erode(disp, k), k)
    s = np.arange(side, dtype=np.float32)[None, :]
    tau = np.where(inside, s - disp, np.inf).astype(np.float32)
    ahead = np.minimum.accumulate(tau[:, ::-1], axis=1)[:, ::-1]
    ahead = np.concatenate([ahead[:, 1:], np.full((side, 1), np.inf, np.float32)], axis=1)
    with np.errstate(invalid="ignore"):
        hid = inside & (tau - ahead > margin)
    return cv2.warpAffine(hid.astype(np.uint8), cv2.invertAffineTransform(rot), (w, h), flags=cv2.INTER_NEAREST) > 0


def alternatives(ys: np.ndarray, yr: np.ndarray, d: np.ndarray, fwd: np.ndarray, bwd: np.ndarray, baseline,
                 cfg: QAConfig) -> dict[str, np.ndarray]:
    """Every alternative's bool mask on the grid. ``fwd``, ``bwd``: the shipped DIS flows
    (with the shift); ``baseline``: REF's position minus SRC's, or None (then no fold-based map)."""
    out: dict[str, np.ndarray] = {}
    e = fb_error(fwd, bwd)
    for t in (1, 2, 4, 8, 16):
        out[f"plain_dis_fb_over_{t}px"] = e > t  # the simplest alternative
    out["magnitude_scaled_fb"] = magnitude_scaled_fb(fwd, bwd)
    guide = ys.astype(np.float32)
    for name, params in DIS_VARIANTS.items():
        f2, b2 = dis_flows(ys, yr, d, params)
        out[f"hidden_map_dis_{name}"] = hidden_map(f2, b2, cfg, baseline=baseline, guide=guide) >= 0.5
    if baseline is not None:
        f3, b3 = multi_hypothesis_flows(ys, yr, d, baseline)
        out["hidden_map_multi_hypothesis_dis"] = hidden_map(f3, b3, cfg, baseline=baseline, guide=guide) >= 0.5
        out["sgbm_fold"] = sgbm_fold(ys, yr, baseline)
    return out


def chain_through_main_t(main_t: np.ndarray, ref_t: np.ndarray, flow_w_to_main: np.ndarray, tt_baseline,
                         cfg: QAConfig, max_step_px: float = 16.0, window: int = 65) -> tuple[np.ndarray, np.ndarray]:
    """Where the reference T hides the W crop's surface, found between the two Ts and carried back.

    Main T and the reference T are alike (same lens, same focus, same blur), unlike the W crop and
    the reference T: ``sgbm_fold`` along the mount's baseline on the T-vs-T pair (its own global
    shift), sampled at each W-crop pixel's target in main T (``flow_w_to_main``, W crop -> main T
    on the full grid; the 1.5 cm between W and main T hides next to nothing). Returns the map and
    the same map kept only where the T-vs-T DIS parallax along the baseline spans less than
    ``max_step_px`` in a ``window`` square (flow-grid px): ``hidden_map``'s step gate inverted,
    the small steps ``hidden_map`` leaves out.
    """
    from hzsr.qa.align import gate_shift, global_translation

    g = gate_shift(global_translation(main_t, ref_t, cfg), cfg)[0]
    ys, yr, d = grid_lumas(main_t, ref_t, g, cfg)
    fold = sgbm_fold(ys, yr, tt_baseline).astype(np.float32)
    fwd, _ = dis_flows(ys, yr, d)
    b = _unit(tt_baseline)
    p = (fwd[..., 0] * b[0] + fwd[..., 1] * b[1]).astype(np.float32)
    k = np.ones((window, window), np.uint8)
    small = ((cv2.dilate(p, k) - cv2.erode(p, k)) < max_step_px).astype(np.float32)
    h, w = flow_w_to_main.shape[:2]
    out = []
    for m in (fold, fold * small):
        full = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        out.append(warp(full, flow_w_to_main, border=cv2.BORDER_CONSTANT) >= 0.5)
    return out[0], out[1]
