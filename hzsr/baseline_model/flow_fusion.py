"""Flow hypotheses beyond DIS's reach, fused per pixel (``PipelineConfig.flow_fusion``; issue20epic).

DIS refines coarse to fine from a zero flow, so a layer whose parallax exceeds what its coarsest
patches can reach (a near foreground, a mover: the simulator's 100-200 T px) is matched with the
background's flow, and its patches blur depth edges. The other hypotheses, on the flow grid,
forward and backward:

- ``modes``: keypoint matches (FAST + ORB at two grid px per W pixel, mutual and ratio-tested) whose
  displacement is far from the DIS flow's median are clustered; DIS is re-run from each cluster's
  displacement as its initial flow (OpenCV's DIS starts from a flow passed in), so a near layer
  gets a start within its reach.

RicFlow's edge-aware interpolation of DIS's consistent matches (OpenCV-contrib's ``cv2.ximgproc``)
was measured as a second source of hypotheses and failed the selection rule (it loses landscapes);
it needs a package the project does not depend on, so it was removed after the measurement (the
code that measured it: commit 48ca1ec, docs/model.md "Fused flow hypotheses").

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
from hzsr.qa.align import warp

DisFn = Callable[[np.ndarray, np.ndarray, np.ndarray | None], np.ndarray]


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


def _one_direction(a_y: np.ndarray, b_y: np.ndarray, fwd: np.ndarray, pa: np.ndarray, pb: np.ndarray,
                   dis_from: DisFn) -> np.ndarray:
    """``fwd`` (DIS's flow from ``a_y`` to ``b_y``) fused with DIS re-run from each keypoint mode."""
    flows = [fwd]
    main = np.median(fwd.reshape(-1, 2), axis=0)
    for m in displacement_modes(pa, pb, main):
        init = np.empty_like(fwd)
        init[...] = np.float32(m)
        flows.append(dis_from(a_y, b_y, init))
    return pick_per_pixel(a_y, b_y, flows)


def fuse_flows(src_y: np.ndarray, ref_y: np.ndarray, fwd: np.ndarray,
               bwd: np.ndarray, dis_from: DisFn, mode: str, w_px_on_grid: float) -> tuple[np.ndarray, np.ndarray]:
    """DIS's forward and backward grid flows with ``mode``'s hypotheses fused in (``"none"``: as they are).

    Args:
        src_y, ref_y: the uint8 lumas DIS matched (blurred as the pipeline blurs them).
        dis_from: ``dis_from(a, b, init)``: the pipeline's DIS (level, smoothness) from ``a`` to ``b``,
            started from ``init``.
        w_px_on_grid: grid pixels per W pixel (where keypoints are matched).
    """
    if mode not in FUSION_MODES:
        raise ValueError(f"pipeline.flow_fusion: expected one of {', '.join(FUSION_MODES)}, got {mode!r}")
    if mode == "none":
        return fwd, bwd
    pa, pb = keypoint_matches(src_y, ref_y, w_px_on_grid)
    f = _one_direction(src_y, ref_y, fwd, pa, pb, dis_from)
    b = _one_direction(ref_y, src_y, bwd, pb, pa, dis_from)
    return f, b
