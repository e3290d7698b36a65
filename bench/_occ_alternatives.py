"""Occlusion maps other than ``maps.hidden_map``, measured beside it by ``bench/qa.py``
(``--part occ-alternatives`` and ``--part middlebury``). Bench-only: each was tried for issue 18's
map goals and none beat ``hidden_map`` on the calibration seeds (``docs/qa.md``).

Every function works on the flow grid of ``register_pair`` (``stereo_occlusion.grid_lumas``: the
lumas DIS sees) with REF already moved by the pair's global shift ``d`` (flow-grid px), and
returns flows that include ``d`` again, so they compare with ``Registration.flow_fwd`` there.
``sgbm_fold`` (semi-global matching along the baseline and its z-buffer) is QA's own
(``hzsr.qa.stereo_occlusion``): measured here between the W crop and each T, where it loses.
"""

from __future__ import annotations

import cv2
import numpy as np

from hzsr.qa.align import shift_image, warp
from hzsr.qa.config import QAConfig
from hzsr.qa.maps import _unit, fb_error, hidden_map
from hzsr.qa.stereo_occlusion import grid_lumas, sgbm_fold

#: The DIS settings tried beside the shipped ``medium`` (OpenCV's preset, finest scale 1):
#: the finest scale 0 (the flow grid itself), smaller patches, more variational refinement.
DIS_VARIANTS: dict[str, dict[str, int]] = {
    "finest0": {"FinestScale": 0},
    "finest0_patch8_stride4": {"FinestScale": 0, "PatchSize": 8, "PatchStride": 4},
    "finest0_variational20": {"FinestScale": 0, "VariationalRefinementIterations": 20},
}


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


def chain_through_main_t(main_t: np.ndarray, ref_t: np.ndarray, flow_w_to_main: np.ndarray, cfg: QAConfig
                         ) -> np.ndarray:
    """``stereo_occlusion.hidden_through_main_t`` without its small-step gate: SGBM's fold between
    the two Ts everywhere, carried to the W crop through main T."""
    from hzsr.qa.align import gate_shift, global_translation

    g = gate_shift(global_translation(main_t, ref_t, cfg), cfg)[0]
    ys, yr, _ = grid_lumas(main_t, ref_t, g, cfg)
    fold = sgbm_fold(ys, yr, cfg.rig.ref_baseline_m).astype(np.float32)
    h, w = flow_w_to_main.shape[:2]
    full = cv2.resize(fold, (w, h), interpolation=cv2.INTER_LINEAR)
    return warp(full, flow_w_to_main, border=cv2.BORDER_CONSTANT) >= 0.5
