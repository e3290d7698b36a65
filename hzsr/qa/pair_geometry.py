"""The geometry of a W/T pair from the files and the pixels alone (no capture.json).

Used where a capture comes from outside hzsr's own sessions: ``model infer`` without ``--meta``
(``baseline_model.geometry_source``) and ``dataset ingest --layout camerafusion``.

- ``exif_focal_35mm``: EXIF ``FocalLengthIn35mmFilm``; the ratio of two of them is the ratio of
  the fields of view (both refer to the same 36 mm frame width). ``FocalLength`` alone is not
  used: without the sensor width it says nothing about the field of view.
- ``estimate_similarity``: SIFT keypoints (scale-invariant, so they match across the focal
  ratio), Lowe's ratio test and a RANSAC similarity ``x_W = s R x_T + t``
  (``cv2.estimateAffinePartial2D``).
- ``pinhole_pair``: intrinsics for both cameras from either. With ``fx_W`` arbitrary and W's
  principal point centred: ``fx_T = fx_W / s`` and ``c_T = (c_W - t) / s`` (the rotation, at most
  a degree on a phone, is ignored: dense flow absorbs it); from a ratio ``r`` alone, both
  principal points centred and ``fx_T = r fx_W T_width / W_width``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hzsr.core.geometry import intrinsics_matrix

#: EXIF tag of the 35 mm-equivalent focal length (Exif IFD).
EXIF_FOCAL_35MM = 0xA405
#: The plausible range of a phone pair's focal ratio (T over W); an estimate outside is refused.
RATIO_RANGE = (1.2, 15.0)


@dataclass(frozen=True)
class SimilarityEstimate:
    """``x_W = scale * x_T + (tx, ty)`` between full-resolution pixels, from ``inliers`` matches."""

    scale: float
    tx: float
    ty: float
    rotation_deg: float
    inliers: int


def exif_focal_35mm(path: str | Path) -> float | None:
    """``FocalLengthIn35mmFilm`` of an image file, or ``None`` (no EXIF, not a JPEG, unreadable)."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            v = im.getexif().get_ifd(0x8769).get(EXIF_FOCAL_35MM)
    except Exception:  # any unreadable EXIF means "not present"; the image itself is read elsewhere
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if f > 0 else None


def _luma_small(img: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    s = min(1.0, long_side / max(g.shape[:2]))
    if s < 1.0:
        g = cv2.resize(g, (max(8, round(g.shape[1] * s)), max(8, round(g.shape[0] * s))),
                       interpolation=cv2.INTER_AREA)
    return g, s


def estimate_similarity(w_img: np.ndarray, ref: np.ndarray, *, long_side: int = 1024, ratio: float = 0.75,
                        min_inliers: int = 12, seed: int = 0) -> SimilarityEstimate | None:
    """The similarity from the reference's pixels to W's, or ``None`` when it cannot be trusted.

    SIFT on both luminances (each downscaled to ``long_side``), Lowe's ratio test, then RANSAC
    (``cv2.estimateAffinePartial2D``, 3 px). ``None`` when fewer than ``min_inliers`` matches
    agree or the focal ratio ``1 / scale`` lies outside ``RATIO_RANGE``.
    """
    cv2.setRNGSeed(seed)
    gw, sw = _luma_small(w_img, long_side)
    gr, sr = _luma_small(ref, long_side)
    sift = cv2.SIFT_create(nfeatures=4000)
    kw, dw = sift.detectAndCompute(gw, None)
    kr, dr = sift.detectAndCompute(gr, None)
    if dw is None or dr is None or len(kw) < 2 or len(kr) < 2:
        return None
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dr, dw, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if len(good) < max(3, min_inliers):
        return None
    pr = np.float32([kr[m.queryIdx].pt for m in good]) / sr
    pw = np.float32([kw[m.trainIdx].pt for m in good]) / sw
    m, inl = cv2.estimateAffinePartial2D(pr, pw, method=cv2.RANSAC, ransacReprojThreshold=3.0 / sw,
                                         maxIters=5000, confidence=0.999)
    if m is None or inl is None or int(inl.sum()) < min_inliers:
        return None
    scale = float(np.hypot(m[0, 0], m[1, 0]))
    if not (RATIO_RANGE[0] <= 1.0 / max(scale, 1e-9) <= RATIO_RANGE[1]):
        return None
    return SimilarityEstimate(scale, float(m[0, 2]), float(m[1, 2]),
                              float(np.degrees(np.arctan2(m[1, 0], m[0, 0]))), int(inl.sum()))


def pinhole_pair(w_size: tuple[int, int], t_size: tuple[int, int], *, ratio: float | None = None,
                 similarity: SimilarityEstimate | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(K_W, K_T)`` from a field-of-view ratio (centred points) or a similarity (module docstring)."""
    fx = 0.8 * w_size[0]
    cw = np.array([(w_size[0] - 1) / 2, (w_size[1] - 1) / 2])
    k_w = intrinsics_matrix(fx, fx, cw[0], cw[1])
    if similarity is not None:
        ct = (cw - np.array([similarity.tx, similarity.ty])) / similarity.scale
        return k_w, intrinsics_matrix(fx / similarity.scale, fx / similarity.scale, ct[0], ct[1])
    if ratio is None:
        raise ValueError("pinhole_pair needs a ratio or a similarity")
    ft = fx * ratio * t_size[0] / w_size[0]
    return k_w, intrinsics_matrix(ft, ft, (t_size[0] - 1) / 2, (t_size[1] - 1) / 2)
