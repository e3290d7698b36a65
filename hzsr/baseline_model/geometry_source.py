"""Where the pipeline's camera geometry comes from when a capture has no ``capture.json``.

A phone pair's W and T differ by a focal ratio ``r = fx_T / fx_W`` (in the same physical pixel
units) and a principal-point offset. The pipeline needs both to crop W onto T's field of view
(``hzsr.core.geometry.CropRect``); a wrong ratio frames the wrong part of W and the reference
is dropped. In order of trust:

1. ``--focal-ratio R`` (``focal_ratio``): the user's word, centred principal points.
2. The capture's intrinsics (``capture.json``; what hzsr's own sessions always carry).
3. EXIF ``FocalLengthIn35mmFilm`` of both files: ``r = f35_T / f35_W``, centred principal
   points; the coarse alignment then finds the offset.
4. Estimated from the images: a RANSAC similarity of SIFT matches.
5. ``assumed_ratio`` (the simulator's 5x phone), with a warning that the framing may be wrong.

Steps 3 and 4 and the intrinsics they give are ``hzsr.qa.pair_geometry``'s, which
``dataset ingest`` shares.

Each result says which of these it came from (``CameraGeometry.source``), and ``model infer``
records it in ``OUT.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hzsr.baseline_model.align import CameraGeometry, camera_geometry, frames_by_slot
from hzsr.qa.pair_geometry import RATIO_RANGE, estimate_similarity, pinhole_pair


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
        k_w, k_t = pinhole_pair(w_size, t_size, ratio=focal_ratio)
        return CameraGeometry(k_w, k_t, roi, roi_warn, source="--focal-ratio")
    geom = camera_geometry(meta, w_size, t_size, assumed_ratio, ref_slot)
    if geom.source == "metadata":
        return geom
    f_w, f_t = exif_35mm
    if f_w and f_t:
        r = f_t / f_w
        if RATIO_RANGE[0] <= r <= RATIO_RANGE[1]:
            k_w, k_t = pinhole_pair(w_size, t_size, ratio=r)
            return CameraGeometry(k_w, k_t, roi, roi_warn + [
                f"no intrinsics in the metadata: focal ratio {r:.3g} from EXIF FocalLengthIn35mmFilm "
                f"({f_t:g} / {f_w:g} mm) and centred principal points"], source="exif")
    est = estimate_similarity(w_img, ref)
    if est is not None:
        k_w, k_t = pinhole_pair(w_size, t_size, similarity=est)
        return CameraGeometry(k_w, k_t, roi, roi_warn + [
            f"no intrinsics in the metadata: focal ratio {1 / est.scale:.3g} and principal point estimated from the "
            f"images ({est.inliers} SIFT inliers, rotation {est.rotation_deg:+.1f} deg)"], source="estimated")
    geom.warnings.append("the images gave no trustworthy estimate (too few SIFT inliers): the framing may be wrong; "
                         "pass --meta or --focal-ratio")
    return geom


__all__ = ["resolve_geometry"]
