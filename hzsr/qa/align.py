"""Alignment primitives of HZSR (``docs/method.md``, steps 1-2), torch-free.

Conventions (``docs/qa.md``):

- images are numpy arrays, ``HxW`` (grey) or ``HxWx3`` (RGB), uint8 or float32 in [0, 1];
- pixel coordinates follow OpenCV: integer coordinates are pixel centres;
- a flow ``F`` from SRC to REF is ``float32 HxWx2`` on SRC's grid, in SRC pixels, channels
  ``(dx, dy)``, with ``REF(x + F(x)) ~ SRC(x)``; so ``warp(ref, F)`` looks like ``src``;
- a global translation ``(dx, dy)`` is the constant flow with the same meaning:
  ``REF(x + d) ~ SRC(x)``, and ``shift_image(ref, dx, dy)`` looks like ``src``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hzsr.core.geometry import CropRect, tele_crop_rect
from hzsr.qa.config import AlignConfig, QAConfig


@dataclass(frozen=True)
class GlobalShift:
    """A global translation ``REF(x + (dx, dy)) ~ SRC(x)`` and its support."""

    dx: float
    dy: float
    inliers: int  # matches within ``ransac_threshold_px`` of the translation
    matches: int  # descriptor matches that passed the ratio test

    @property
    def magnitude(self) -> float:
        return float(np.hypot(self.dx, self.dy))


def _align_cfg(cfg: QAConfig | AlignConfig | None) -> AlignConfig:
    if cfg is None:
        return AlignConfig()
    return cfg.align if isinstance(cfg, QAConfig) else cfg


def _check_image(img: np.ndarray, name: str) -> None:
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"{name}: expected an HxW or HxWx3 array, got shape {getattr(img, 'shape', None)}")
    if img.shape[0] < 8 or img.shape[1] < 8:
        raise ValueError(f"{name}: image {img.shape[1]}x{img.shape[0]} is too small (min 8x8)")


def to_luma(rgb: np.ndarray) -> np.ndarray:
    """Luminance ``Y = 0.299 R + 0.587 G + 0.114 B`` (BT.601), same dtype family as the input.

    uint8 in gives uint8 out; float in gives float32 out. A grey image is returned as is.
    """
    if rgb.ndim == 2:
        return rgb
    if rgb.shape[2] == 1:
        return rgb[..., 0]
    if rgb.dtype == np.uint8:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.cvtColor(np.ascontiguousarray(rgb, np.float32), cv2.COLOR_RGB2GRAY)


def _to_u8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    return np.clip(np.asarray(img, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def crop_w_to_t(w_img: np.ndarray, k_w: np.ndarray, k_t: np.ndarray,
                t_size: tuple[int, int]) -> tuple[np.ndarray, CropRect]:
    """Crop W to T's field of view (from the intrinsics) and bicubic-resize it to ``t_size``.

    The crop is ``cw = w_T fx_W / fx_T`` wide, centred on W's image centre
    (``hzsr.core.geometry.tele_crop_rect``); it is resampled sub-pixel exactly with an affine
    warp (``CropRect.crop_to_w``), so crop-grid pixel ``u`` shows W pixel ``crop_to_w @ u``.

    Args:
        w_img: the W frame (HxW or HxWx3).
        k_w: W intrinsics (3x3), in the pixels of ``w_img``.
        k_t: T intrinsics (3x3), in T's pixels.
        t_size: T's image size (width, height).

    Returns:
        The crop resized to ``t_size``, same dtype as ``w_img``, and its ``CropRect``.
    """
    _check_image(w_img, "w_img")
    rect = tele_crop_rect(np.asarray(k_w, np.float64), np.asarray(k_t, np.float64), tuple(t_size),
                          (w_img.shape[1], w_img.shape[0]))
    m = rect.crop_to_w()[:2]
    # WARP_INVERSE_MAP: m maps output (crop grid) to input (W), which is what crop_to_w gives.
    out = cv2.warpAffine(w_img, m, (int(t_size[0]), int(t_size[1])),
                         flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return out, rect


def _resize_long(img: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    s = min(1.0, long_side / max(h, w))
    if s >= 1.0:
        return img, 1.0
    out = cv2.resize(img, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)
    return out, out.shape[1] / w


def _keypoints(y: np.ndarray, c: AlignConfig, mask: np.ndarray | None = None):
    """FAST corners (the strongest ``max_keypoints`` by FAST score) with ORB descriptors.

    OpenCV's ORB detector at one pyramid level with ``ORB_FAST_SCORE`` is exactly that, run in C++.
    ``mask`` (uint8, nonzero = allowed): corners only there.
    """
    border = c.orb_patch // 2 + 1
    orb = cv2.ORB_create(nfeatures=c.max_keypoints, nlevels=1, edgeThreshold=border, patchSize=c.orb_patch,
                         fastThreshold=c.fast_threshold, scoreType=cv2.ORB_FAST_SCORE)
    kps, desc = orb.detectAndCompute(y, mask)
    pts = cv2.KeyPoint_convert(kps).reshape(-1, 2) if kps else np.zeros((0, 2), np.float32)  # the .pt, float32
    return pts, desc


def _phase_shift(ys: np.ndarray, yr: np.ndarray, s_src: float, s_ref: float) -> np.ndarray:
    """Translation ``REF(x + d) ~ SRC(x)`` by phase correlation (Hann window), full-res pixels."""
    if ys.shape != yr.shape:
        yr = cv2.resize(yr, (ys.shape[1], ys.shape[0]), interpolation=cv2.INTER_AREA)
    a = ys.astype(np.float32)
    b = yr.astype(np.float32)
    win = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a - a.mean(), b - b.mean(), win)
    return np.array([dx, dy], np.float64) / s_src


def hypothesis_support(hyp: np.ndarray, disp: np.ndarray, thr2: float) -> np.ndarray:
    """Per hypothesis (row of ``hyp``, Hx2), how many displacements (``disp``, Nx2) lie within
    ``sqrt(thr2)`` of it: ``count(dx^2 + dy^2 <= thr2)`` with ``dx = h_x - d_x``, ``dy = h_y - d_y``.

    All hypotheses against all matches at once, in two (H, N) float64 buffers computed in place:
    the same operations in the same order as ``ex * ex + ey * ey`` (so the same values), without
    the three further temporaries of a few MB each (1000 keypoints T vs T: ~0.5 M pairs).
    """
    ex = np.subtract(hyp[:, None, 0], disp[None, :, 0])
    ey = np.subtract(hyp[:, None, 1], disp[None, :, 1])
    np.multiply(ex, ex, out=ex)
    np.multiply(ey, ey, out=ey)
    np.add(ex, ey, out=ex)
    return np.count_nonzero(ex <= thr2, axis=1)


def global_translation(src: np.ndarray, ref: np.ndarray, cfg: QAConfig | AlignConfig | None = None, *,
                       optical_scale: float = 1.0, hints=(), src_mask: np.ndarray | None = None,
                       ref_mask: np.ndarray | None = None) -> GlobalShift:
    """One global translation ``REF(x + d) ~ SRC(x)`` from FAST keypoint matches, with RANSAC.

    FAST corners (strongest ``max_keypoints``) on the luminance, downscaled to
    ``keypoint_long_side``; ORB descriptors at those corners; nearest Hamming neighbours with a
    ratio test. RANSAC: each hypothesis is one match's displacement; the one with most matches
    within ``ransac_threshold_px`` wins, and ``d`` is the median displacement of its inliers.

    Args:
        optical_scale: SRC's optical resolution over its grid's (``1 / k`` for a W crop
            upsampled ``k`` times). Both images are then matched at two pixels per W pixel, where
            a blurry upsampled W crop and a sharp T look alike to FAST and ORB.
        hints: extra ``(dx, dy)`` hypotheses (e.g. the composition of two other pairings'
            shifts); like the phase-correlation one, a hint wins within 30 % of the best count.
        src_mask: bool HxW on SRC's grid: SRC's keypoints only there, and no phase-correlation
            hypothesis (it sees the whole frame): the translation of one part of SRC.
        ref_mask: the same on REF's grid, for REF's keypoints.

    Returns ``GlobalShift(0, 0, 0, n)`` when fewer than two keypoints match (flat images): the
    inlier count, not an exception, says the shift is unreliable.
    """
    c = _align_cfg(cfg)
    _check_image(src, "src")
    _check_image(ref, "ref")
    long_side = max(src.shape[:2])
    kp_long = min(c.keypoint_long_side, max(64, int(round(2 * optical_scale * long_side))))
    ys, s_src = _resize_long(_to_u8(to_luma(src)), kp_long)
    yr, s_ref = _resize_long(_to_u8(to_luma(ref)), kp_long)
    def kp_mask(m, y):
        return None if m is None else cv2.resize(m.astype(np.uint8) * 255, (y.shape[1], y.shape[0]),
                                                 interpolation=cv2.INTER_NEAREST)

    p_src, d_src = _keypoints(ys, c, kp_mask(src_mask, ys))
    p_ref, d_ref = _keypoints(yr, c, kp_mask(ref_mask, yr))
    if d_src is None or d_ref is None or len(p_src) < 2 or len(p_ref) < 2:
        return GlobalShift(0.0, 0.0, 0, 0)
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    knn = matcher.knnMatch(d_src, d_ref, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < c.match_ratio * m[1].distance]
    if len(good) < 2:
        return GlobalShift(0.0, 0.0, 0, len(good))
    a = p_src[[m.queryIdx for m in good]] / s_src
    b = p_ref[[m.trainIdx for m in good]] / s_ref
    disp = (b - a).astype(np.float64)  # in full-resolution pixels
    rng = np.random.default_rng(c.seed)
    n = len(disp)
    hyp = disp if n <= c.ransac_iters else disp[rng.choice(n, c.ransac_iters, replace=False)]
    # One more hypothesis from phase correlation of the whole images: where few keypoints match
    # across W's blur and T's detail, wrong matches can outvote the right ones by chance; the
    # photometric consensus wins ties (within 30 % of the best count).
    pcs = [] if src_mask is not None or ref_mask is not None else [_phase_shift(ys, yr, s_src, s_ref)[None]]
    extra = np.vstack(pcs + [np.asarray(h, np.float64).reshape(1, 2) for h in hints] or [np.zeros((0, 2))])
    hyp = np.vstack([hyp, extra])
    thr2 = c.ransac_threshold_px**2
    counts = hypothesis_support(hyp, disp, thr2)
    best = int(np.argmax(counts))
    n_extra = len(extra)
    strong = [i for i in range(len(counts) - n_extra, len(counts)) if counts[i] >= max(2, 0.7 * counts[best])]
    if strong:
        best = max(strong, key=lambda i: counts[i])
    else:
        # Repetitive texture (tiles, windows, brick) makes several shifts almost equally good;
        # rigs mount their cameras to look the same way, so the smallest of those wins.
        near = np.flatnonzero(counts >= c.ransac_tie_ratio * counts[best])
        best = int(near[np.argmin(np.hypot(hyp[near, 0], hyp[near, 1]))])
    e = hyp[best] - disp  # the winner's row of the distances hypothesis_support counted, the same values
    inl = e[:, 0] * e[:, 0] + e[:, 1] * e[:, 1] <= thr2
    d = np.median(disp[inl], axis=0)
    # One refinement round around the median, which is closer to the truth than any one match.
    inl = ((disp - d) ** 2).sum(1) <= thr2
    if inl.sum() >= counts[best]:
        d = np.median(disp[inl], axis=0)
    return GlobalShift(float(d[0]), float(d[1]), int(inl.sum()), n)


def structure_ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray, sigma: float = 6.0) -> float:
    """Normalised cross-correlation of the band-passed luminances over ``mask``.

    Subtracting a ``sigma``-blurred copy removes shading and exposure, so the score measures
    whether the two images show the same structures where they are aligned: about 0.8-1 for a
    real reference, about 0 for one of another scene. It decides that a reference "does not
    overlap" more robustly than the keypoint count, which is low on small or flat images.
    """
    if mask.sum() < 64:
        return 0.0
    ha = a - cv2.GaussianBlur(a, (0, 0), sigma)
    hb = b - cv2.GaussianBlur(b, (0, 0), sigma)
    x, y = ha[mask].astype(np.float64), hb[mask].astype(np.float64)
    x -= x.mean()
    y -= y.mean()
    return float((x * y).sum() / max(np.sqrt((x * x).sum() * (y * y).sum()), 1e-12))


def _band_ncc(ys: np.ndarray, yr: np.ndarray, d: np.ndarray, sigma: float = 4.0) -> tuple[float, float]:
    """(``structure_ncc`` of ``ys`` and ``yr`` moved by ``d`` where both have pixels, overlap fraction)."""
    h, w = ys.shape
    m = np.array([[1, 0, d[0]], [0, 1, d[1]]], np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    moved = cv2.warpAffine(yr.astype(np.float32), m, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    inside = cv2.warpAffine(np.ones((h, w), np.float32), m, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT) > 0.99
    if inside.sum() < 0.2 * h * w:
        return -1.0, float(inside.mean())
    return structure_ncc(ys.astype(np.float32), moved, inside, sigma), float(inside.mean())


def prefer_expected(src: np.ndarray, ref: np.ndarray, found: GlobalShift, expected: tuple[float, float], *,
                    radius_frac: float = 0.05, ncc_margin: float = 0.1) -> tuple[GlobalShift, bool]:
    """The rig's expected shift where the images register about as well there as at ``found``.

    A repeating texture (tiles, windows, a mirror-tiled backdrop) registers almost equally well
    at several shifts a period apart, and the keypoints' vote can pick a wrong period: two
    untouched portrait shots of the demo found T vs T shifts of (144, 56) and (-160, -96) px
    where the rig's parallax at the focus distance puts (-8, -97), and both read as a bumped rig.
    The geometry breaks the tie: when ``found`` departs from ``expected`` by more than
    ``radius_frac`` of the width, the shift near ``expected`` (refined by phase correlation of
    the overlap) replaces it if its band-passed structure correlation is within ``ncc_margin`` of
    ``found``'s. A bumped rig does not register near ``expected`` at all (correlation ~0), so it
    keeps ``found``.

    Returns:
        The shift (``inliers`` counts the matches' support as ``found``'s did, so the inlier gate
        still reads the keypoints' confidence) and whether ``expected`` was preferred.
    """
    h, w = src.shape[:2]
    e = np.asarray(expected, np.float64)
    if np.hypot(found.dx - e[0], found.dy - e[1]) <= radius_frac * w:
        return found, False
    ys, s = _resize_long(_to_u8(to_luma(src)), min(512, max(h, w)))
    yr, _ = _resize_long(_to_u8(to_luma(ref)), min(512, max(h, w)))
    if ys.shape != yr.shape:
        return found, False
    ncc_found, _ = _band_ncc(ys, yr, np.array([found.dx, found.dy]) * s)
    # Refine the expected shift: phase correlation of SRC and REF moved by it (what is left is
    # the rig's small rotations and the subject's departure from the focus plane).
    m = np.array([[1, 0, e[0] * s], [0, 1, e[1] * s]], np.float64)
    moved = cv2.warpAffine(yr.astype(np.float32), m, (ys.shape[1], ys.shape[0]),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    a = ys.astype(np.float32)
    win = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (rx, ry), _ = cv2.phaseCorrelate(a - a.mean(), moved - moved.mean(), win)
    cand = e + np.array([rx, ry]) / s
    if np.hypot(*(cand - e)) > radius_frac * w:
        cand = e
    ncc_cand, overlap = _band_ncc(ys, yr, cand * s)
    if ncc_cand < max(0.3, ncc_found - ncc_margin):
        return found, False
    return GlobalShift(float(cand[0]), float(cand[1]), found.inliers, found.matches), True


def masked_ncc_surface(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised cross-correlation of ``a(x)`` and ``b(x + d)`` over their overlap, for every
    integer shift ``d`` at once (masked NCC by FFT, Padfield 2012).

    With ``1`` the indicator of an image's grid and ``C(f, g)(d) = sum_x f(x) g(x + d)``:
    ``n = C(1, 1)``, ``cov = C(a, b) - C(a, 1) C(1, b) / n``, ``var_a = C(a^2, 1) - C(a, 1)^2 / n``
    (``var_b`` alike), ``NCC = cov / sqrt(var_a var_b)``: each shift's correlation over the pixels
    both images have, six FFT correlations of the zero-padded images.

    Returns:
        ``(ncc, overlap)``, both ``2h x 2w``, indexed ``[dy mod 2h, dx mod 2w]``; ``overlap`` is the
        shared fraction of the view.
    """
    h, w = a.shape
    shape = (2 * h, 2 * w)
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    one = np.ones_like(a)

    def f(x: np.ndarray) -> np.ndarray:
        return np.fft.rfft2(x, shape)

    def corr(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        return np.fft.irfft2(np.conj(fx) * fy, shape)

    fa, fb, f1 = f(a), f(b), f(one)
    n = np.maximum(np.round(corr(f1, f1)), 1.0)
    sa, sb = corr(fa, f1), corr(f1, fb)
    cov = corr(fa, fb) - sa * sb / n
    va = corr(f(a * a), f1) - sa * sa / n
    vb = corr(f1, f(b * b)) - sb * sb / n
    return cov / np.sqrt(np.maximum(va * vb, 1e-12)), n / (h * w)


def prefer_structure(src: np.ndarray, ref: np.ndarray, found: GlobalShift, expected: tuple[float, float], *,
                     radius_frac: float = 0.05, below_ncc: float = 0.6, min_ncc: float = 0.3, ncc_margin: float = 0.15,
                     min_overlap: float = 0.3, search_long_side: int = 160, peaks: int = 4,
                     ) -> tuple[GlobalShift, bool, float]:
    """The keypoints' vote checked against the images: a shift the two images do not line up at
    gives way to the shift they line up at best.

    A repeating texture over part of the view can outvote the true shift where little of the view
    is shared: ``make demo``'s bumped moving shot (the reference T turned by 0.50 of the width,
    half the view shared, a mirror-tiled backdrop) voted (-151, -52) px with 21 matches, where the
    images line up at (-327, -8) (band-passed correlation 0.72 over the shared half; at the voted
    shift -0.04); the quick check's keypoints voted another period, (-146, 114), at 0.46. The bump
    then read 0.21-0.24 of the width, under ``large_shift``'s fail level.

    Only where ``large_shift`` is at stake: ``found`` departs from the rig's ``expected`` shift by
    more than ``radius_frac`` of the width (a clean moving shot registered at its parallax with 230
    matches correlates 0.27 only, its subject having moved); a negative ``radius_frac`` searches
    wherever ``found`` lies (``capture_qa.tt_vote``: a vote the inlier gate refuses). There, when
    ``found``'s band-passed structure correlation (``structure_ncc`` where both images have pixels) is under
    ``below_ncc``, every shift is scored at once on the images reduced to ``search_long_side``
    (``masked_ncc_surface`` of the band-passed luminances, over at least ``min_overlap`` of the
    view: a sliver of overlap correlates by chance); its ``peaks`` best separate peaks are refined
    by phase correlation on the 512 px images and scored there, and the best of them replaces
    ``found`` if it correlates at least ``min_ncc`` and ``ncc_margin`` better.

    Returns:
        The shift (``inliers`` as ``found``'s: the inlier gate still reads the keypoints'
        confidence, as in ``prefer_expected``), whether the images' best shift replaced it, and
        the best band-passed correlation seen (``found``'s or a peak's; NaN where ``found`` lies
        near ``expected`` and nothing was measured): under ~0.2 the two views share no structure
        anywhere, a phone knocked off the scene (``thresholds.fail_no_overlap_structure_ncc``).
    """
    h, w = src.shape[:2]
    if np.hypot(found.dx - expected[0], found.dy - expected[1]) <= radius_frac * w:
        return found, False, float("nan")
    ys, s = _resize_long(_to_u8(to_luma(src)), min(512, max(h, w)))
    yr, _ = _resize_long(_to_u8(to_luma(ref)), min(512, max(h, w)))
    if ys.shape != yr.shape:
        return found, False, float("nan")
    ncc_found, _ = _band_ncc(ys, yr, np.array([found.dx, found.dy]) * s)
    if ncc_found >= below_ncc:
        return found, False, float(ncc_found)
    # Every shift at once, on small band-passed images (the band as _band_ncc's, in its pixels).
    ss, s_small = _resize_long(ys, search_long_side)
    rs, _ = _resize_long(yr, search_long_side)
    sigma = max(1.0, 4.0 * ss.shape[1] / ys.shape[1])

    def band(y: np.ndarray) -> np.ndarray:
        y = y.astype(np.float32)
        return y - cv2.GaussianBlur(y, (0, 0), sigma)

    ncc, overlap = masked_ncc_surface(band(ss), band(rs))
    ncc[overlap < min_overlap] = -1.0
    hh, ww = ncc.shape
    cands: list[np.ndarray] = []
    sep = 0.05 * ss.shape[1]  # separate peaks: 5 % of the width apart
    for k in np.argsort(-ncc, axis=None)[: 50 * peaks]:
        ky, kx = divmod(int(k), ww)
        if ncc[ky, kx] < -0.5:  # under min_overlap
            break
        d = np.array([kx if kx < ww // 2 else kx - ww, ky if ky < hh // 2 else ky - hh], np.float64)
        if all(np.hypot(*(d - e)) > sep for e in cands):
            cands.append(d)
            if len(cands) == peaks:
                break
    a = ys.astype(np.float32)
    win = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    best, best_ncc = None, ncc_found
    for d in cands:
        d = d / s_small  # in the 512 px images' pixels
        m = np.array([[1, 0, d[0]], [0, 1, d[1]]], np.float64)
        moved = cv2.warpAffine(yr.astype(np.float32), m, (ys.shape[1], ys.shape[0]),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        (rx, ry), _ = cv2.phaseCorrelate(a - a.mean(), moved - moved.mean(), win)
        c_d, ov = _band_ncc(ys, yr, d)
        if np.hypot(rx, ry) <= 2 / s_small:  # two of the search grid's steps: refine within them
            c_r, ov_r = _band_ncc(ys, yr, d + np.array([rx, ry]))
            if c_r > c_d and ov_r >= min_overlap:
                d, c_d, ov = d + np.array([rx, ry]), c_r, ov_r
        if ov >= min_overlap and c_d > best_ncc:
            best, best_ncc = d / s, c_d
    seen = float(max(best_ncc, ncc_found))
    if best is None or best_ncc < max(min_ncc, ncc_found + ncc_margin):
        return found, False, seen
    return GlobalShift(float(best[0]), float(best[1]), found.inliers, found.matches), True, seen


def gate_shift(shift: GlobalShift, cfg: QAConfig | AlignConfig | None = None,
               fallback: tuple[float, float] = (0.0, 0.0)) -> tuple[GlobalShift, bool]:
    """The inlier gate: ``shift`` if at least ``align.min_inliers`` matches support it, else none.

    A translation from a handful of matches is as likely chance agreement as the truth (a bumped
    rig, W's blur, flat or repetitive texture); a wrong one would start the dense flow from the
    wrong place, which is worse than starting it from the rig's own alignment: ``fallback``, zero
    shift unless the caller knows where the rig puts the scene (main T vs reference T: the
    parallax of the focus distance, ``check.tt_unanchored_from_rig_parallax``).

    Returns:
        The shift to use (``fallback`` with the same support when refused) and whether it is
        ``shift`` itself.
    """
    c = _align_cfg(cfg)
    if shift.inliers >= c.min_inliers:
        return shift, True
    return GlobalShift(float(fallback[0]), float(fallback[1]), shift.inliers, shift.matches), False


def shift_image(img: np.ndarray, dx: float, dy: float,
                border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """``out(x) = img(x + (dx, dy))``, bilinear: a constant-flow ``warp``.

    With ``d`` from ``global_translation(src, ref)``, ``shift_image(ref, d.dx, d.dy) ~ src``.
    """
    h, w = img.shape[:2]
    m = np.array([[1, 0, dx], [0, 1, dy]], np.float64)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=border)


def flow_grid_scale(shape: tuple[int, ...], cfg: QAConfig | AlignConfig | None = None) -> float:
    """Scale from an image of ``shape`` to its dense-flow grid (<= 1: never upsampled).

    The grid is the largest size with the image's aspect ratio that fits ``flow_size``
    (both orientations: a portrait image fits 384x512).
    """
    c = _align_cfg(cfg)
    h, w = shape[:2]
    fw, fh = c.flow_size
    if (w >= h) != (fw >= fh):
        fw, fh = fh, fw
    return min(1.0, fw / w, fh / h)


def _dis(c: AlignConfig):
    presets = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
    if c.dis_preset not in presets:
        raise ValueError(f"align.dis_preset: expected one of {', '.join(presets)}, got {c.dis_preset!r}")
    dis = cv2.DISOpticalFlow_create(presets[c.dis_preset])
    if c.dis_finest_scale:
        dis.setFinestScale(c.dis_finest_scale)
    return dis


def dense_flow_lowres(src: np.ndarray, ref: np.ndarray, cfg: QAConfig | AlignConfig | None = None, *,
                      optical_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Forward and backward DIS flow on the flow grid, in flow-grid pixels, and the grid scale.

    With ``optical_scale < 1`` (SRC is an upsampled W crop) both images are first low-passed to
    W's optical resolution (Gaussian, sigma ``optical_blur / optical_scale`` input px): DIS then
    matches what both images show, not T's detail against W's blur.
    """
    c = _align_cfg(cfg)
    _check_image(src, "src")
    _check_image(ref, "ref")
    if src.shape[:2] != ref.shape[:2]:
        raise ValueError(f"src {src.shape[1]}x{src.shape[0]} and ref {ref.shape[1]}x{ref.shape[0]} differ in size")
    s = flow_grid_scale(src.shape, c)
    h, w = src.shape[:2]
    size = (max(8, round(w * s)), max(8, round(h * s)))
    ys = _to_u8(to_luma(src))
    yr = _to_u8(to_luma(ref))
    if optical_scale < 1.0 and c.optical_blur > 0:
        sigma = c.optical_blur / optical_scale
        ys = cv2.GaussianBlur(ys, (0, 0), sigma)
        yr = cv2.GaussianBlur(yr, (0, 0), sigma)
    if s < 1.0:
        ys = cv2.resize(ys, size, interpolation=cv2.INTER_AREA)
        yr = cv2.resize(yr, size, interpolation=cv2.INTER_AREA)
    dis = _dis(c)
    fwd = dis.calc(ys, yr, None)
    bwd = dis.calc(yr, ys, None)
    return fwd, bwd, ys.shape[1] / w


def upsample_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a flow field to ``size`` (width, height), scaling its vectors with the grid."""
    h, w = flow.shape[:2]
    if (w, h) == tuple(size):
        return flow
    out = cv2.resize(flow, tuple(size), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= size[0] / w
    out[..., 1] *= size[1] / h
    return out


def dense_flow(src: np.ndarray, ref: np.ndarray, cfg: QAConfig | AlignConfig | None = None, *,
               optical_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward dense flow between two same-size images, at full resolution.

    DIS optical flow (``cv2.DISOpticalFlow``) on the luminance, downscaled to the flow grid
    (``flow_size``, 512x384 by default), then bilinearly upsampled and scaled to the images' size.

    Returns:
        ``(flow_fwd, flow_bwd)``, float32 HxWx2, channels (dx, dy), in pixels of the input grid:
        ``REF(x + F_fwd(x)) ~ SRC(x)`` and ``SRC(x + F_bwd(x)) ~ REF(x)``.
    """
    fwd, bwd, _ = dense_flow_lowres(src, ref, cfg, optical_scale=optical_scale)
    size = (src.shape[1], src.shape[0])
    return upsample_flow(fwd, size), upsample_flow(bwd, size)


def warp(img: np.ndarray, flow: np.ndarray, border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """Bilinear backward warp: ``out(x) = img(x + flow(x))`` (``cv2.remap``).

    ``img`` and ``flow`` may differ in size only if the flow was computed for a grid of that size;
    the output has the flow's size. ``img`` may have any number of channels (flows too).
    """
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow: expected HxWx2, got shape {flow.shape}")
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = gx + flow[..., 0]
    map_y = gy + flow[..., 1]
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=border)


def inframe_mask(flow: np.ndarray, ref_size: tuple[int, int] | None = None) -> np.ndarray:
    """Pixels whose flow target ``x + F(x)`` lies inside REF (size ``(w, h)``, default the flow's)."""
    h, w = flow.shape[:2]
    rw, rh = ref_size if ref_size is not None else (w, h)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    tx = gx + flow[..., 0]
    ty = gy + flow[..., 1]
    return (tx >= -0.5) & (tx <= rw - 0.5) & (ty >= -0.5) & (ty <= rh - 0.5)


def shift_inframe_mask(shape: tuple[int, ...], dx: float, dy: float) -> np.ndarray:
    """``inframe_mask`` of the constant flow ``(dx, dy)`` on a grid of ``shape``, the same booleans:
    a row test times a column test, not a full-size grid (two HxW float maps at 12 MP's analysis size)."""
    h, w = shape[:2]
    tx = np.arange(w, dtype=np.float32) + np.float32(dx)
    ty = np.arange(h, dtype=np.float32) + np.float32(dy)
    return ((ty >= -0.5) & (ty <= h - 0.5))[:, None] & ((tx >= -0.5) & (tx <= w - 0.5))[None, :]
