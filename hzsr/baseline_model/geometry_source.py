"""Where the pipeline's camera geometry comes from when a capture has no ``capture.json``.

A phone pair's W and T differ by a focal ratio ``r = fx_T / fx_W`` (in the same physical pixel
units) and a principal-point offset. The pipeline needs both to crop W onto T's field of view
(``hzsr.core.geometry.CropRect``); a wrong ratio frames the wrong part of W and the reference
is dropped. In order of trust:

1. ``--focal-ratio R`` (``focal_ratio``): the user's word, centred principal points.
2. The capture's intrinsics (``capture.json``; what hzsr's own sessions always carry).
3. EXIF ``FocalLengthIn35mmFilm`` of both JPEGs: ``r = f35_T / f35_W`` (same 36 mm frame width,
   so the ratio of fields of view), centred principal points; the coarse alignment then finds
   the offset. ``FocalLength`` alone is not used: without the sensor width it says nothing about
   the field of view.
4. Estimated from the images: SIFT keypoints (scale-invariant, so they match across the focal
   ratio), Lowe's ratio test and a RANSAC similarity ``x_W = s R x_T + t``
   (``cv2.estimateAffinePartial2D``). Then, with ``fx_W`` arbitrary and W's principal point
   centred, ``fx_T = fx_W / s`` and ``c_T = (c_W - t) / s`` (rotation, at most a degree on a phone,
   is ignored: the dense flow absorbs it).
5. ``assumed_ratio`` (the simulator's 5x phone), with a warning that the framing may be wrong.

Each result says which of these it came from (``CameraGeometry.source``), and ``model infer``
records it in ``OUT.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hzsr.baseline_model.align import CameraGeometry, camera_geometry, centre_roi, frames_by_slot
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


def _centred(w_size: tuple[int, int], t_size: tuple[int, int], r: float) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics with centred principal points and focal ratio ``r`` (per unit of frame width)."""
    fx = 0.8 * w_size[0]
    k_w = intrinsics_matrix(fx, fx, (w_size[0] - 1) / 2, (w_size[1] - 1) / 2)
    ft = fx * r * t_size[0] / w_size[0]
    return k_w, intrinsics_matrix(ft, ft, (t_size[0] - 1) / 2, (t_size[1] - 1) / 2)


def _af_roi(meta: dict[str, Any] | None, ref_slot: str) -> list[float] | None:
    frames = frames_by_slot(meta)
    roi = (frames.get(ref_slot) or frames.get("main_T") or {}).get("af_roi")
    if isinstance(roi, list | tuple) and len(roi) == 4 and roi[2] > 0 and roi[3] > 0:
        return list(roi)
    return None


def resolve_geometry(meta: dict[str, Any] | None, w_img: np.ndarray, ref: np.ndarray, *,
                     focal_ratio: float | None = None, exif_35mm: tuple[float | None, float | None] = (None, None),
                     assumed_ratio: float = 5.0, ref_slot: str = "ref_T") -> CameraGeometry:
    """The camera geometry of one capture, from the most trusted source available (module docstring).

    Args:
        meta: capture.json (or a shard's meta), or ``None``.
        w_img, ref: the W image and the reference T, RGB uint8, full resolution.
        focal_ratio: ``--focal-ratio``: force ``fx_T / fx_W`` (per frame width), centred points.
        exif_35mm: ``(W, reference)`` 35 mm-equivalent focal lengths read from the files' EXIF.
        assumed_ratio: the last resort when nothing else answers.
    """
    w_size, t_size = (w_img.shape[1], w_img.shape[0]), (ref.shape[1], ref.shape[0])
    roi = _af_roi(meta, ref_slot)
    roi_warn = [] if roi is not None else ["no AF ROI in the metadata: the defocus map uses the image centre"]
    if focal_ratio is not None:
        if not (RATIO_RANGE[0] <= focal_ratio <= RATIO_RANGE[1]):
            from hzsr.core.errors import ConfigError

            raise ConfigError(f"{focal_ratio:g} is outside {RATIO_RANGE[0]:g}..{RATIO_RANGE[1]:g}",
                              field="--focal-ratio")
        k_w, k_t = _centred(w_size, t_size, focal_ratio)
        return CameraGeometry(k_w, k_t, roi, roi_warn, source="--focal-ratio")
    geom = camera_geometry(meta, w_size, t_size, assumed_ratio, ref_slot)
    if geom.source == "metadata":
        return geom
    f_w, f_t = exif_35mm
    if f_w and f_t:
        r = f_t / f_w
        if RATIO_RANGE[0] <= r <= RATIO_RANGE[1]:
            k_w, k_t = _centred(w_size, t_size, r)
            return CameraGeometry(k_w, k_t, roi, roi_warn + [
                f"no intrinsics in the metadata: focal ratio {r:.3g} from EXIF FocalLengthIn35mmFilm "
                f"({f_t:g} / {f_w:g} mm) and centred principal points"], source="exif")
    est = estimate_similarity(w_img, ref)
    if est is not None:
        fx = 0.8 * w_size[0]
        cw = np.array([(w_size[0] - 1) / 2, (w_size[1] - 1) / 2])
        ct = (cw - np.array([est.tx, est.ty])) / est.scale
        k_w = intrinsics_matrix(fx, fx, cw[0], cw[1])
        k_t = intrinsics_matrix(fx / est.scale, fx / est.scale, ct[0], ct[1])
        return CameraGeometry(k_w, k_t, roi, roi_warn + [
            f"no intrinsics in the metadata: focal ratio {1 / est.scale:.3g} and principal point estimated from the "
            f"images ({est.inliers} SIFT inliers, rotation {est.rotation_deg:+.1f} deg)"], source="estimated")
    geom.warnings.append("the images gave no trustworthy estimate (too few SIFT inliers): the framing may be wrong; "
                         "pass --meta or --focal-ratio")
    return geom


__all__ = ["SimilarityEstimate", "centre_roi", "estimate_similarity", "exif_focal_35mm", "resolve_geometry"]
