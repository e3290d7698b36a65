"""Flow hypotheses beyond DIS's reach, fused per pixel (``PipelineConfig.flow_fusion``; issue20epic).

DIS refines coarse to fine from a zero flow, so a layer whose parallax exceeds what its coarsest
patches can reach (a near foreground, a mover: the simulator's 100-200 T px) is matched with the
background's flow, and its patches blur depth edges. The other hypotheses, on the flow grid,
forward and backward:

- ``modes``: keypoint matches (FAST + ORB at two grid px per W pixel, mutual and ratio-tested) whose
  displacement is far from the DIS flow's median are clustered; DIS is re-run from each cluster's
  displacement as its initial flow (OpenCV's DIS starts from a flow passed in), so a near layer
  gets a start within its reach.
- ``modes_fast`` (issue20modes): the same modes at a fraction of the cost at 12 MP, where every
  whole-grid DIS counts (issue 19's 3 s). A mode is first tested where its own keypoints are
  (``mode_is_kept``): one that neither beats DIS there (its 7x7 patch error against DIS's) nor is
  followed by DIS's flow there (a repeating texture's next period) is dropped before any dense
  work. A kept mode's DIS runs on a window around its keypoints only (``mode_window``),
  the reference's window moved by the mode, and the pick runs in that window; elsewhere the flow
  is DIS's own.

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

from typing import Any, Protocol

import cv2
import numpy as np

from hzsr.baseline_model.config import FLOW_FUSION_MODES as FUSION_MODES
from hzsr.qa.align import warp


class DisFn(Protocol):
    """The pipeline's DIS from ``a`` to ``b`` started from ``init``; ``coarser`` levels above the pipeline's finest."""

    def __call__(self, a: np.ndarray, b: np.ndarray, init: np.ndarray | None, coarser: int = 0) -> np.ndarray: ...


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


def displacement_clusters(p_src: np.ndarray, p_ref: np.ndarray, main: np.ndarray, *, n_min: int = 6,
                          thr: float = 3.0, max_modes: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """``displacement_modes``' clusters with their members: ``(mode, member mask over the matches)``.

    The members are the matches the mode's median was taken over (within ``thr`` of the cluster's
    seed and not explained by ``main``): ``modes_fast`` tests a mode and bounds its DIS on them.
    """
    d = (p_ref - p_src).astype(np.float64)
    out: list[tuple[np.ndarray, np.ndarray]] = []
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
        members = inl & left
        out.append((np.median(d[members], axis=0), members))
        left &= ~inl
    return out


def displacement_modes(p_src: np.ndarray, p_ref: np.ndarray, main: np.ndarray, *, n_min: int = 6,
                       thr: float = 3.0, max_modes: int = 3) -> list[np.ndarray]:
    """Clusters of keypoint displacements ``p_ref - p_src`` more than ``2 thr`` from ``main``.

    Greedy: the displacement with most others within ``thr`` grid px, if at least ``n_min``; its
    members' median is a mode; repeated on the rest, at most ``max_modes`` times.
    """
    return [m for m, _ in displacement_clusters(p_src, p_ref, main, n_min=n_min, thr=thr, max_modes=max_modes)]


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


def _matched_to(src_y: np.ndarray, ref_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both lumas as float32, the reference given the source's global mean and spread (``pick_per_pixel``'s)."""
    s = src_y.astype(np.float32)
    r = ref_y.astype(np.float32)
    return s, (r - r.mean()) * (s.std() / max(float(r.std()), 1e-6)) + s.mean()


def keypoint_patch_errors(s: np.ndarray, r: np.ndarray, pts: np.ndarray, flow: np.ndarray | None,
                          disp: np.ndarray | None = None, box: int = 7) -> np.ndarray:
    """Per point of ``pts`` (Kx2, grid px), the mean ``|s(x) - r(x + F(x))|`` over its ``box`` x ``box`` patch.

    ``F`` is ``flow`` (HxWx2, sampled bilinearly at each patch pixel, as ``pick_per_pixel``'s box
    error warps each pixel by its own flow) or, with ``flow`` None, the constant ``disp`` (2,).
    ``s`` and ``r`` as ``_matched_to`` gives them. What ``modes_fast`` asks of a mode before any
    dense work: whether, where its keypoints are, it explains the source better than DIS does.
    """
    o = np.arange(box, dtype=np.float32) - np.float32(box // 2)
    ox, oy = np.meshgrid(o, o)
    xs = np.ascontiguousarray(pts[:, :1].astype(np.float32) + ox.reshape(1, -1))  # K x box^2
    ys = np.ascontiguousarray(pts[:, 1:2].astype(np.float32) + oy.reshape(1, -1))
    a = cv2.remap(s, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if flow is None:
        d = np.asarray(disp, np.float32)
        fx, fy = np.full_like(xs, d[0]), np.full_like(ys, d[1])
    else:
        f = cv2.remap(flow, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        fx, fy = np.ascontiguousarray(f[..., 0]), np.ascontiguousarray(f[..., 1])
    b = cv2.remap(r, xs + fx, ys + fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.abs(a - b).mean(axis=1)


def mode_beats_dis(s: np.ndarray, r: np.ndarray, pts: np.ndarray, mode: np.ndarray, flow: np.ndarray, *,
                   ratio: float = 0.75, min_share: float = 0.5) -> bool:
    """Whether ``mode`` matches clearly better than DIS's ``flow`` on most of its supporting keypoints ``pts``.

    A keypoint counts for the mode where its 7x7 patch error under the mode is below ``ratio`` times
    that under DIS (``keypoint_patch_errors``); the mode is kept where at least ``min_share`` of
    its keypoints count. A near layer beyond DIS's reach has DIS's background flow on it: the mode
    wins there by far. A mode from a repeating texture (the next period: the ORB descriptors of
    two windows of a facade match mutually) matches as well as DIS does, and so does a mode DIS
    already follows: dropping those costs nothing in the pick and saves a whole DIS and warp each.
    """
    if len(pts) == 0:
        return False
    e_mode = keypoint_patch_errors(s, r, pts, None, mode)
    e_dis = keypoint_patch_errors(s, r, pts, flow)
    return float(np.mean(e_mode < ratio * e_dis)) >= min_share


def dis_follows_mode(pts: np.ndarray, mode: np.ndarray, flow: np.ndarray, *, thr: float = 3.0,
                     min_share: float = 0.5) -> bool:
    """Whether DIS's ``flow`` is within ``thr`` grid px of ``mode`` on at least ``min_share`` of the points ``pts``.

    A real layer that DIS reaches at its textured keypoints but loses between them (a slanted near
    layer: Middlebury's motorcycle) does not beat DIS at those keypoints (``mode_beats_dis``: a
    constant displacement fits a slanted layer worse than DIS's flow there), yet DIS re-run from it
    fills in what DIS from zero missed. A repeating texture's next period is followed by DIS
    nowhere: DIS keeps the neighbours' flow there.
    """
    if len(pts) == 0:
        return False
    xs = np.ascontiguousarray(pts[:, :1].astype(np.float32))
    ys = np.ascontiguousarray(pts[:, 1:2].astype(np.float32))
    f = cv2.remap(flow, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 2)
    return float(np.mean(np.linalg.norm(f - np.asarray(mode, np.float32), axis=1) < thr)) >= min_share


def mode_is_kept(s: np.ndarray, r: np.ndarray, pts: np.ndarray, mode: np.ndarray, flow: np.ndarray) -> bool:
    """``modes_fast``'s test of a mode before any dense work: kept unless it is spurious by both tests.

    Kept where it beats DIS at its keypoints (``mode_beats_dis``: a layer beyond DIS's reach) or
    DIS follows it there (``dis_follows_mode``: a layer DIS reaches at keypoints only). Dropped: a
    mode DIS neither follows nor loses to, which is what a repeating texture's next period gives
    (both match; DIS's is the one its neighbours agree with).
    """
    return mode_beats_dis(s, r, pts, mode, flow) or dis_follows_mode(pts, mode, flow)


def mode_window(pts: np.ndarray, shift: tuple[int, int], shape: tuple[int, int], margin: int,
                min_side: int) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)``: where ``modes_fast`` runs a mode's DIS, or None where there is no room.

    The bounding box of the mode's supporting keypoints ``pts``, dilated by ``margin`` grid px (the
    layer reaches beyond its keypoints, and DIS's patches need context), grown to ``min_side`` per
    side around its centre (a crop too small for DIS's pyramid at the pipeline's level makes OpenCV
    pick other patch sizes and scales), then cut to the pixels whose target under the integer
    ``shift`` lies inside the reference (nothing can be matched elsewhere). None where less than
    a quarter of ``min_side`` is left on a side.
    """
    h, w = shape
    sx, sy = shift
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - margin
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 1 + margin
    for lo, hi, n in ((0, 2, w), (1, 3, h)):  # grow each side to min_side (at most the image)
        box = [x0, y0, x1, y1]
        need = min(min_side, n) - (box[hi] - box[lo])
        if need > 0:
            box[lo] -= need // 2
            box[hi] += need - need // 2
            if box[lo] < 0:
                box[lo], box[hi] = 0, box[hi] - box[lo]
            if box[hi] > n:
                box[lo], box[hi] = box[lo] - (box[hi] - n), n
        x0, y0, x1, y1 = box
    x0, x1 = max(x0, 0, -sx), min(x1, w, w - sx)
    y0, y1 = max(y0, 0, -sy), min(y1, h, h - sy)
    if x1 - x0 < max(8, min_side // 4) or y1 - y0 < max(8, min_side // 4):
        return None
    return int(x0), int(y0), int(x1), int(y1)


def _box_error(s: np.ndarray, r: np.ndarray, flow: np.ndarray, x0: int, y0: int, box: int) -> np.ndarray:
    """``pick_per_pixel``'s box-filtered |s - r warped by flow| on the window of ``flow`` at ``(x0, y0)``."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(x0, x0 + w, dtype=np.float32), np.arange(y0, y0 + h, dtype=np.float32))
    warped = cv2.remap(r, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.blur(np.abs(warped - s[y0:y0 + h, x0:x0 + w]), (box, box))


def _one_direction_fast(a_y: np.ndarray, b_y: np.ndarray, fwd: np.ndarray, pa: np.ndarray, pb: np.ndarray,
                        dis_from: DisFn, *, prune: bool = True, window: bool = True, coarser: int = 0,
                        shifted: bool = True, max_modes: int = 3, margin_frac: float = 0.1,
                        min_side_frac: float = 0.3, box: int = 7) -> np.ndarray:
    """``_one_direction`` at a fraction of its cost: the same modes, tested first, each DIS'd on a window.

    A mode that DIS neither follows nor loses to at its keypoints (``mode_is_kept``) is dropped
    before any dense work. A kept one's DIS runs on the window of its keypoints (``mode_window``,
    ``margin_frac`` and ``min_side_frac`` of the grid's long side), on the source's window and
    the reference's window moved by the mode's integer part (DIS starts from the fraction left),
    and the per-pixel pick runs there only; outside every window the flow is DIS's own.

    ``prune`` False keeps every mode (``modes_windowed``); ``window`` False runs each kept mode as
    ``modes`` does, on the whole grid (``modes_pruned``: ``modes`` bit for bit where nothing is
    dropped). The two halves measured apart (issue20modes). ``coarser`` > 0 (``modes_pruned_coarse``,
    whole grid only): each kept mode's DIS stops that many levels above the pipeline's finest, a
    quarter of the finest level's work per level. ``shifted`` False (measured in scratch only): the
    reference's window is the source's own, DIS starting from the whole mode, as the whole grid's.
    ``max_modes``: the clusters looked for (``displacement_clusters``, largest first; ``modes``' 3);
    ``modes_pruned2`` takes 2, which bounds the worst capture's cost at two more DIS per direction.
    """
    h, w = fwd.shape[:2]
    main = np.median(fwd.reshape(-1, 2), axis=0)
    clusters = displacement_clusters(pa, pb, main, max_modes=max_modes)
    if not clusters:
        return fwd
    s, r = _matched_to(a_y, b_y)
    kept = [(m, pa[members]) for m, members in clusters if not prune or mode_is_kept(s, r, pa[members], m, fwd)]
    if not kept:
        return fwd
    if not window:
        flows = [fwd]
        for m, _ in kept:
            init = np.empty_like(fwd)
            init[...] = np.float32(m)
            flows.append(dis_from(a_y, b_y, init, coarser) if coarser else dis_from(a_y, b_y, init))
        return pick_per_pixel(a_y, b_y, flows)
    out = fwd.copy()
    err = _box_error(s, r, fwd, 0, 0, box)
    margin, min_side = round(margin_frac * max(h, w)), round(min_side_frac * max(h, w))
    for m, pts in kept:
        sx, sy = (int(round(float(m[0]))), int(round(float(m[1])))) if shifted else (0, 0)
        win = mode_window(pts, (sx, sy), (h, w), margin, min_side)
        if win is None:
            continue
        x0, y0, x1, y1 = win
        init = np.empty((y1 - y0, x1 - x0, 2), np.float32)
        init[...] = (np.float32(m[0] - sx), np.float32(m[1] - sy))
        f = dis_from(np.ascontiguousarray(a_y[y0:y1, x0:x1]),
                     np.ascontiguousarray(b_y[y0 + sy:y1 + sy, x0 + sx:x1 + sx]), init)
        f = f + np.float32((sx, sy))
        e = _box_error(s, r, f, x0, y0, box)
        better = e < err[y0:y1, x0:x1]
        out[y0:y1, x0:x1][better] = f[better]
        err[y0:y1, x0:x1][better] = e[better]
    return out


#: ``_one_direction_fast``'s options for each ``flow_fusion`` value it runs.
_FAST_OPTIONS: dict[str, dict[str, Any]] = {"modes_fast": {}, "modes_pruned": {"window": False},
                                            "modes_windowed": {"prune": False},
                                            "modes_pruned_coarse": {"window": False, "coarser": 1},
                                            "modes_pruned2": {"window": False, "max_modes": 2}}


def fuse_flows(src_y: np.ndarray, ref_y: np.ndarray, fwd: np.ndarray,
               bwd: np.ndarray, dis_from: DisFn, mode: str, w_px_on_grid: float) -> tuple[np.ndarray, np.ndarray]:
    """DIS's forward and backward grid flows with ``mode``'s hypotheses fused in (``"none"``: as they are).

    ``"modes"`` and ``"modes_fast"`` share the keypoints and their clusters; ``"modes_fast"`` prunes
    and windows them (``_one_direction_fast``), ``"modes"`` runs each on the whole grid;
    ``"modes_pruned"`` and ``"modes_windowed"`` are ``"modes_fast"``'s halves alone, ``"modes_pruned_coarse"``
    ``"modes_pruned"`` with each mode's DIS a level coarser, ``"modes_pruned2"`` ``"modes_pruned"`` with at
    most two clusters per direction (all measured, off; issue20modes).

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
    if mode == "modes":
        return _one_direction(src_y, ref_y, fwd, pa, pb, dis_from), _one_direction(ref_y, src_y, bwd, pb, pa, dis_from)
    opts = _FAST_OPTIONS[mode]
    return (_one_direction_fast(src_y, ref_y, fwd, pa, pb, dis_from, **opts),
            _one_direction_fast(ref_y, src_y, bwd, pb, pa, dis_from, **opts))
