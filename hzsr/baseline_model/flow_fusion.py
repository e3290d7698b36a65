"""Flow hypotheses beyond DIS's reach, fused per pixel (``PipelineConfig.flow_fusion``; issue20epic).

DIS refines coarse to fine from a zero flow, so a layer whose parallax exceeds what its coarsest
patches can reach (a near foreground, a mover: the simulator's 100-200 T px) is matched with the
background's flow, and its patches blur depth edges. The other hypotheses, on the flow grid,
forward and backward:

- ``modes``: keypoint matches (FAST + ORB at two grid px per W pixel, mutual and ratio-tested) whose
  displacement is far from the DIS flow's median are clustered; DIS is re-run from each cluster's
  displacement as its initial flow (OpenCV's DIS starts from a flow passed in), so a near layer
  gets a start within its reach.
- ``modes_pruned2`` (issue20modes; the default, through ``"auto"``, on 2026-12-08 until blur3's): at most two
  clusters per direction, and each is first tested where its own keypoints are (``mode_is_kept``):
  one that neither beats DIS there (its 7x7 patch error against DIS's) nor is followed by DIS's
  flow there (a repeating texture's next period) is dropped before any dense work. Its output is
  within 0.03 dB of ``modes``' on calibration, held-out and Middlebury. Where the modes are real
  layers it costs what ``modes`` costs (+0.13 s median at 12 MP's grid); on a facade's repeating
  windows it skips the DIS runs ``modes`` spends on the next period (the bench capture: +0.15 s
  against +0.45 s), and the cap bounds the worst capture (+0.35 s against +0.69 s).
- ``modes_pruned2_matched`` (blur3; what ``auto`` runs since 2026-12-08 06:20 UTC): ``modes_pruned2``
  whose per-pixel pick compares the two lumas at the source's sharpness (``blur_matched_sigma``). Against a
  soft W the reference at its own sharpness, warped wrongly onto a smooth patch, matches better than
  the right warp: Middlebury at W blur sigma 3.0 +1.57 -> +1.96 dB (DIS alone +1.85), the rest of the
  sweep within 0.02 dB or better, calibration 31-33 a tie (docs/model.md, "Flow fusion at a soft W").

Measured and removed (issue20modes; the code is at commit 146105f): a mode's DIS on a window around
its keypoints (moving scenes -0.17 to -0.19 dB: a window changes what DIS finds), a mode's DIS a
level coarser (-0.18 dB), and the test of beating DIS alone (it drops every real mode of
Middlebury's motorcycle, which DIS follows at its textured keypoints).

RicFlow's edge-aware interpolation of DIS's consistent matches (OpenCV-contrib's ``cv2.ximgproc``)
was measured as a second source of hypotheses and failed the selection rule (it loses landscapes);
it needs a package the project does not depend on, so it was removed after the measurement (the
code that measured it: commit 48ca1ec, docs/model.md "Fused flow hypotheses").

Each pixel then takes the hypothesis (the plain DIS flow first) whose warp of the reference's luma
matches the source's best over a small box (|difference|, the reference's luma given the source's
global mean and spread: W and T differ in exposure; with ``modes_pruned2_matched``, what ``"auto"``
runs, after the sharper of the two, T, is blurred to the source's measured sharpness). None of it runs unless
``flow_fusion`` asks for it; ``"none"`` leaves the flow as DIS gave it, bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import cv2
import numpy as np

from hzsr.baseline_model.config import FLOW_FUSION_MODES as FUSION_MODES  # noqa: F401 - the values, re-exported
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


def displacement_clusters(p_src: np.ndarray, p_ref: np.ndarray, main: np.ndarray, *, n_min: int = 6,
                          thr: float = 3.0, max_modes: int = 3) -> list[tuple[np.ndarray, np.ndarray]]:
    """``displacement_modes``' clusters with their members: ``(mode, member mask over the matches)``.

    The members are the matches the mode's median was taken over (within ``thr`` of the cluster's
    seed and not explained by ``main``): ``modes_pruned2`` tests a mode on them (``mode_is_kept``).
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


def pick_per_pixel(src_y: np.ndarray, ref_y: np.ndarray, flows: list[np.ndarray], box: int = 7, *,
                   blur: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Per pixel, the flow of ``flows`` whose warp of ``ref_y`` matches ``src_y`` best (``box``-filtered |diff|).

    Ties go to the earlier flow (``flows[0]``: DIS's own). ``ref_y`` is given ``src_y``'s mean and
    standard deviation, so an exposure difference does not swamp the comparison.

    ``blur`` (``modes_pruned2_matched``, blur3): Gaussian sigmas (grid px) applied to ``src_y`` and
    ``ref_y`` first, so a sharp luma is compared with a soft one at the soft one's sharpness
    (``blur_matched_sigma``); the normalisation comes after, so the blur's loss of contrast is not
    counted against it. (0, 0) compares them as they are.
    """
    if len(flows) == 1:
        return flows[0]
    s, r = src_y.astype(np.float32), ref_y.astype(np.float32)
    if blur[0] > 0:
        s = cv2.GaussianBlur(s, (0, 0), blur[0])
    if blur[1] > 0:
        r = cv2.GaussianBlur(r, (0, 0), blur[1])
    r = _normalised_to(s, r)
    errs = np.stack([cv2.blur(np.abs(warp(r, f) - s), (box, box)) for f in flows])
    idx = np.argmin(errs, axis=0)
    out = flows[0].copy()
    for j in range(1, len(flows)):
        sel = idx == j
        out[sel] = flows[j][sel]
    return out


#: The Gaussian sigmas (grid px) ``blur_matched_sigma`` chooses from: none to a W pixel's worth at ratio 5.
MATCH_SIGMAS = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)


def blur_matched_sigma(src_y: np.ndarray, ref_y: np.ndarray, flow: np.ndarray,
                       sigmas: tuple[float, ...] = MATCH_SIGMAS) -> float:
    """How soft the source is against the reference: the sigma of ``sigmas`` (grid px) whose Gaussian on
    the reference warped by ``flow`` (DIS's forward flow), then given the source's mean and spread,
    matches the source best (mean |diff|).

    The reference (T) carries detail the source (W upsampled) does not resolve; compared at the
    reference's sharpness, a wrong flow that lands on a smooth patch of the reference can match a soft
    W better than the right one does (docs/model.md, "Flow fusion at a soft W"). Normalised after
    the blur, so a larger sigma is not charged for the contrast it removes: a source blurred by one
    of ``sigmas`` gets that sigma back (before 2026-12-08 06:50 UTC the normalisation came first and
    the answer was a step or two low; ``estimator_rule.md``).
    """
    s = src_y.astype(np.float32)
    wr = warp(ref_y.astype(np.float32), flow)
    errs = [float(np.abs(_normalised_to(s, cv2.GaussianBlur(wr, (0, 0), sg) if sg > 0 else wr) - s).mean())
            for sg in sigmas]
    return float(sigmas[int(np.argmin(errs))])


def _one_direction(a_y: np.ndarray, b_y: np.ndarray, fwd: np.ndarray, pa: np.ndarray, pb: np.ndarray,
                   dis_from: DisFn, *, prune: bool = False, max_modes: int = 3,
                   blur: Callable[[], tuple[float, float]] = lambda: (0.0, 0.0)) -> np.ndarray:
    """``fwd`` (DIS's flow from ``a_y`` to ``b_y``) fused with DIS re-run from each keypoint mode.

    ``prune`` drops, before its DIS, a mode that ``mode_is_kept`` finds spurious; ``max_modes``
    bounds the clusters looked for (``displacement_clusters``, largest first); ``blur()`` gives
    ``pick_per_pixel``'s, asked only when a mode is left to pick from.
    """
    main = np.median(fwd.reshape(-1, 2), axis=0)
    clusters = displacement_clusters(pa, pb, main, max_modes=max_modes)
    if prune and clusters:
        s, r = _matched_to(a_y, b_y)
        clusters = [(m, members) for m, members in clusters if mode_is_kept(s, r, pa[members], m, fwd)]
    flows = [fwd]
    for m, _ in clusters:
        init = np.empty_like(fwd)
        init[...] = np.float32(m)
        flows.append(dis_from(a_y, b_y, init))
    if len(flows) == 1:
        return fwd
    return pick_per_pixel(a_y, b_y, flows, blur=blur())


def _normalised_to(s: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``r`` given ``s``'s global mean and standard deviation (both float32)."""
    return (r - r.mean()) * (s.std() / max(float(r.std()), 1e-6)) + s.mean()


def _matched_to(src_y: np.ndarray, ref_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both lumas as float32, the reference given the source's global mean and spread (``pick_per_pixel``'s)."""
    s = src_y.astype(np.float32)
    return s, _normalised_to(s, ref_y.astype(np.float32))


def keypoint_patch_errors(s: np.ndarray, r: np.ndarray, pts: np.ndarray, flow: np.ndarray | None,
                          disp: np.ndarray | None = None, box: int = 7) -> np.ndarray:
    """Per point of ``pts`` (Kx2, grid px), the mean ``|s(x) - r(x + F(x))|`` over its ``box`` x ``box`` patch.

    ``F`` is ``flow`` (HxWx2, sampled bilinearly at each patch pixel, as ``pick_per_pixel``'s box
    error warps each pixel by its own flow) or, with ``flow`` None, the constant ``disp`` (2,).
    ``s`` and ``r`` as ``_matched_to`` gives them. What ``modes_pruned2`` asks of a mode before any
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
    already follows at its keypoints; the second may still win between them, so ``mode_is_kept``
    keeps it (``dis_follows_mode``) and drops only the first.
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
    """``modes_pruned2``'s test of a mode before any dense work: kept unless it is spurious by both tests.

    Kept where it beats DIS at its keypoints (``mode_beats_dis``: a layer beyond DIS's reach) or
    DIS follows it there (``dis_follows_mode``: a layer DIS reaches at keypoints only). Dropped: a
    mode DIS neither follows nor loses to, which is what a repeating texture's next period gives
    (both match; DIS's is the one its neighbours agree with).
    """
    return mode_beats_dis(s, r, pts, mode, flow) or dis_follows_mode(pts, mode, flow)


#: ``_one_direction``'s options for each ``flow_fusion`` value but "none" ("matched": ``fuse_flows``
#: measures how soft the source is against the reference, ``blur_matched_sigma``, and the pick
#: compares the two at the source's sharpness).
_OPTIONS: dict[str, dict[str, bool | int]] = {"modes": {}, "modes_pruned2": {"prune": True, "max_modes": 2},
                                             "modes_pruned2_matched": {"prune": True, "max_modes": 2,
                                                                       "matched": True}}


def fuse_flows(src_y: np.ndarray, ref_y: np.ndarray, fwd: np.ndarray,
               bwd: np.ndarray, dis_from: DisFn, mode: str, w_px_on_grid: float) -> tuple[np.ndarray, np.ndarray]:
    """DIS's forward and backward grid flows with ``mode``'s hypotheses fused in (``"none"``: as they are).

    ``"modes"`` runs DIS from each of at most three keypoint clusters per direction;
    ``"modes_pruned2"`` from at most two, each tested first (``mode_is_kept``);
    ``"modes_pruned2_matched"`` (what ``"auto"`` runs) as ``"modes_pruned2"``, its pick made at the
    source's sharpness: the sharp one of the two lumas, the reference (T), is blurred by
    ``blur_matched_sigma`` in both directions, measured once and only if a mode is left to pick from.

    Args:
        src_y, ref_y: the uint8 lumas DIS matched (blurred as the pipeline blurs them).
        dis_from: ``dis_from(a, b, init)``: the pipeline's DIS (level, smoothness) from ``a`` to ``b``,
            started from ``init``.
        w_px_on_grid: grid pixels per W pixel (where keypoints are matched).
    """
    if mode == "none":
        return fwd, bwd
    if mode not in _OPTIONS:  # "auto" is resolved before (PipelineConfig.flow_fusion_used)
        raise ValueError(f"pipeline.flow_fusion: expected none, {', '.join(_OPTIONS)} here, got {mode!r}")
    pa, pb = keypoint_matches(src_y, ref_y, w_px_on_grid)
    opts = dict(_OPTIONS[mode])
    matched = bool(opts.pop("matched", False))

    @functools.cache
    def t_blur() -> float:  # the reference (T) blurred to the source's sharpness, measured once
        return blur_matched_sigma(src_y, ref_y, fwd) if matched else 0.0

    # pick_per_pixel(a, b, ..., blur=(for a, for b)): forward a is the source, backward a is T.
    return (_one_direction(src_y, ref_y, fwd, pa, pb, dis_from, **opts, blur=lambda: (0.0, t_blur())),
            _one_direction(ref_y, src_y, bwd, pb, pa, dis_from, **opts, blur=lambda: (t_blur(), 0.0)))
