"""Flow hypotheses beyond DIS's reach, fused per pixel (``PipelineConfig.flow_fusion``; issue20epic).

DIS refines coarse to fine from a zero flow, so a layer whose parallax exceeds what its coarsest
patches can reach (a near foreground, a mover: the simulator's 100-200 T px) is matched with the
background's flow, and its patches blur depth edges. Two sources of other hypotheses, both on the
flow grid and both forward and backward:

- ``modes``: keypoint matches (FAST + ORB at two grid px per W pixel, mutual and ratio-tested) whose
  displacement is far from the DIS flow's median are clustered; DIS is re-run from each cluster's
  displacement as its initial flow (OpenCV's DIS starts from a flow passed in), so a near layer
  gets a start within its reach.
- ``ric``: RicFlow's edge-aware sparse-to-dense interpolation (``cv2.ximgproc``'s
  ``RICInterpolator``, OpenCV-contrib: superpixels of the grid image, a robust affine model per
  superpixel) of the forward-backward-consistent DIS matches, both as it is and with DIS re-run
  from it: a flow whose edges follow the image's. (EpicFlow's ``EdgeAwareInterpolator`` in the same
  module cannot be used from Python in OpenCV-contrib 5.1.0: its ``interpolate`` reads the points'
  array as a ``std::vector`` while Python passes a ``Mat``, and returns zeros or garbage.)

Each pixel then takes the hypothesis (the plain DIS flow first) whose warp of the reference's luma
matches the source's best over a small box (|difference|, the reference's luma first given the
source's global mean and spread: W and T differ in exposure). None of it runs unless
``flow_fusion`` asks for it; ``"none"`` leaves the flow as DIS gave it, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from hzsr.baseline_model.config import FLOW_FUSION_MODES as FUSION_MODES
from hzsr.core.errors import ConfigError
from hzsr.qa.align import warp

DisFn = Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]


def require_ximgproc(mode: str = "ric") -> None:
    """Raise a one-line ``ConfigError`` where OpenCV-contrib's ``ximgproc`` (RicFlow's interpolator) is missing.

    An error, not a fallback to DIS alone: a figure run with ``ric`` must not silently be DIS's.
    """
    if not hasattr(cv2, "ximgproc"):
        raise ConfigError(f"{mode!r} needs OpenCV-contrib's cv2.ximgproc: install opencv-contrib-python-headless "
                          "of the same version in place of opencv-python-headless", field="pipeline.flow_fusion")


def keypoint_matches(src_y: np.ndarray, ref_y: np.ndarray, w_px_on_grid: float,
                     max_keypoints: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Mutual, ratio-tested (0.8) ORB matches of two uint8 grid lumas, in grid pixels: ``(p_src, p_ref)``.

    Matched at two grid pixels per W pixel (I_src is W upsampled: finer, FAST sees blur only).
    """
    s = min(1.0, 2.0 / max(w_px_on_grid, 1e-6))
    a = cv2.resize(src_y, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else src_y
    b = cv2.resize(ref_y, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else ref_y
    orb = cv2.ORB_create(nfeatures=max_keypoints, nlevels=1, edgeThreshold=16, patchSize=15, fastThreshold=5,
                         scoreType=cv2.ORB_FAST_SCORE)
    ka, da = orb.detectAndCompute(a, None)
    kb, db = orb.detectAndCompute(b, None)
    empty = np.zeros((0, 2), np.float32)
    if da is None or db is None or len(ka) < 2 or len(kb) < 2:
        return empty, empty
    bf = cv2.BFMatcher(cv2.NORM_HAMMING)
    back = {m.queryIdx: m.trainIdx for m in bf.match(db, da)}
    good = [m[0] for m in bf.knnMatch(da, db, k=2)
            if len(m) == 2 and m[0].distance < 0.8 * m[1].distance and back.get(m[0].trainIdx) == m[0].queryIdx]
    if not good:
        return empty, empty
    pa = np.float32([ka[m.queryIdx].pt for m in good]).reshape(-1, 2) / s
    pb = np.float32([kb[m.trainIdx].pt for m in good]).reshape(-1, 2) / s
    return pa, pb


def displacement_modes(p_src: np.ndarray, p_ref: np.ndarray, main: np.ndarray, *, n_min: int = 6,
                       thr: float = 3.0, max_modes: int = 3) -> list[np.ndarray]:
    """Clusters of keypoint displacements ``p_ref - p_src`` more than ``2 thr`` from ``main``.

    Greedy: the displacement with most others within ``thr`` grid px, if at least ``n_min``; its
    members' median is a mode; repeated on the rest, at most ``max_modes`` times.
    """
    d = (p_ref - p_src).astype(np.float64)
    out: list[np.ndarray] = []
    left = np.linalg.norm(d - np.asarray(main, np.float64), axis=1) > 2 * thr
    for _ in range(max_modes):
        if left.sum() < n_min:
            break
        dd = d[left]
        cnt = (np.linalg.norm(dd[:, None] - dd[None], axis=2) < thr).sum(1)
        b = int(np.argmax(cnt))
        if cnt[b] < n_min:
            break
        inl = np.linalg.norm(d - dd[b], axis=1) < thr
        out.append(np.median(d[inl & left], axis=0))
        left &= ~inl
    return out


def consistent_matches(fwd: np.ndarray, bwd: np.ndarray, step: int = 4,
                       thr: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """DIS's flow as sparse matches every ``step`` grid px where forward and backward agree within ``thr`` px.

    Returns ``(p_src, p_ref)`` float32 Nx2; the backward flow is read at the nearest pixel of the target.
    """
    h, w = fwd.shape[:2]
    ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
    ys, xs = ys.ravel(), xs.ravel()
    f = fwd[ys, xs]
    tx, ty = xs + f[:, 0], ys + f[:, 1]
    ok = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    b = bwd[np.clip(np.rint(ty), 0, h - 1).astype(int), np.clip(np.rint(tx), 0, w - 1).astype(int)]
    ok &= np.linalg.norm(f + b, axis=1) < thr
    p0 = np.stack([xs, ys], 1)[ok].astype(np.float32)
    p1 = np.stack([tx, ty], 1)[ok].astype(np.float32)
    return p0, p1


def ric_interpolate(guide: np.ndarray, p_src: np.ndarray, p_ref: np.ndarray) -> np.ndarray:
    """RicFlow's edge-aware interpolation of sparse matches to a dense flow on ``guide``'s grid.

    ``guide``: uint8 RGB. OpenCV-contrib's defaults (superpixels of 15 px, K 32, FGS post-processing).
    Run on one thread with OpenCV's RNG seeded: its robust fits draw from the RNG across threads, and
    with OpenCV's thread pool the same call gave different flows (and once crashed the process,
    issue20epic's stage-1 run); on one thread it is deterministic.
    """
    require_ximgproc()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        cv2.setRNGSeed(0)
        it = cv2.ximgproc.createRICInterpolator()
        return it.interpolate(guide, np.ascontiguousarray(p_src, np.float32).reshape(-1, 1, 2), guide,
                              np.ascontiguousarray(p_ref, np.float32).reshape(-1, 1, 2))
    finally:
        cv2.setNumThreads(threads)


def pick_per_pixel(src_y: np.ndarray, ref_y: np.ndarray, flows: list[np.ndarray], box: int = 7) -> np.ndarray:
    """Per pixel, the flow of ``flows`` whose warp of ``ref_y`` matches ``src_y`` best (``box``-filtered |diff|).

    Ties go to the earlier flow (``flows[0]``: DIS's own). ``ref_y`` is first given ``src_y``'s mean and
    standard deviation, so an exposure difference does not swamp the comparison.
    """
    if len(flows) == 1:
        return flows[0]
    s = src_y.astype(np.float32)
    r = ref_y.astype(np.float32)
    r = (r - r.mean()) * (s.std() / max(float(r.std()), 1e-6)) + s.mean()
    errs = np.stack([cv2.blur(np.abs(warp(r, f) - s), (box, box)) for f in flows])
    idx = np.argmin(errs, axis=0)
    out = flows[0].copy()
    for j in range(1, len(flows)):
        sel = idx == j
        out[sel] = flows[j][sel]
    return out


def _one_direction(guide: np.ndarray, a_y: np.ndarray, b_y: np.ndarray, fwd: np.ndarray, bwd: np.ndarray,
                   pa: np.ndarray, pb: np.ndarray, dis_from: DisFn, mode: str) -> np.ndarray:
    flows = [fwd]
    if mode in ("ric", "ric_modes"):
        p0, p1 = consistent_matches(fwd, bwd)
        if len(p0) >= 3:
            e = ric_interpolate(guide, p0, p1)
            flows += [e, dis_from(a_y, b_y, e)]
    if mode in ("modes", "ric_modes"):
        main = np.median(fwd.reshape(-1, 2), axis=0)
        for m in displacement_modes(pa, pb, main):
            init = np.empty_like(fwd)
            init[...] = np.float32(m)
            flows.append(dis_from(a_y, b_y, init))
    return pick_per_pixel(a_y, b_y, flows)


def fuse_flows(src_g: np.ndarray, ref_g: np.ndarray, src_y: np.ndarray, ref_y: np.ndarray, fwd: np.ndarray,
               bwd: np.ndarray, dis_from: DisFn, mode: str, w_px_on_grid: float) -> tuple[np.ndarray, np.ndarray]:
    """DIS's forward and backward grid flows with ``mode``'s hypotheses fused in (``"none"``: as they are).

    Args:
        src_g, ref_g: the grid images (uint8 RGB; RicFlow's edge guide).
        src_y, ref_y: the uint8 lumas DIS matched (blurred as the pipeline blurs them).
        dis_from: ``dis_from(a, b, init)``: the pipeline's DIS (level, smoothness) from ``a`` to ``b``,
            started from ``init``.
        w_px_on_grid: grid pixels per W pixel (where keypoints are matched).
    """
    if mode not in FUSION_MODES:
        raise ValueError(f"pipeline.flow_fusion: expected one of {', '.join(FUSION_MODES)}, got {mode!r}")
    if mode == "none":
        return fwd, bwd
    if mode in ("ric", "ric_modes"):
        require_ximgproc(mode)
    pa, pb = keypoint_matches(src_y, ref_y, w_px_on_grid) if mode in ("modes", "ric_modes") else \
        (np.zeros((0, 2), np.float32),) * 2
    f = _one_direction(src_g, src_y, ref_y, fwd, bwd, pa, pb, dis_from, mode)
    b = _one_direction(ref_g, ref_y, src_y, bwd, fwd, pb, pa, dis_from, mode)
    return f, b
