"""The simulator's ideal target on the pipeline's source grid: one function for training and scoring.

The ideal target (``hzsr.sim.ideal``: main W's viewpoint at T's resolution, all in focus,
noise-free) and the true masks are rendered on the truth's crop grid (the intrinsics' W crop,
``crop_rect``). The pipeline's ``I_src`` is the same crop moved by the coarse shift, so the ideal
is resampled onto ``I_src``'s grid:

    x_truth = inv(A_truth) A_src x_src,    A = CropRect.crop_to_w()  (crop px -> W px)

and colour-matched to ``I_src`` (per-channel mean and deviation over the pixels inside both
frames, ``color.match_colour``), so every method is scored, and the network trained, in the
source's photometry. ``inside`` is where the truth grid covers ``I_src``, eroded by 4 px so
resampling's border never counts. ``bench/eval_truth.py`` scores with it; ``data.py`` trains on
it (``data.target: ideal``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from hzsr.baseline_model.color import luma, match_colour, to_uint8
from hzsr.core.geometry import CropRect

#: A reference blur sigma above this many T px counts as truly defocused (one T pixel).
DEFOCUSED_SIGMA_T_PX = 1.0


def onto_src_grid(arr: np.ndarray, truth_rect: CropRect, src_rect: CropRect, interp: int) -> np.ndarray:
    """Resample an array on the truth's crop grid onto the pipeline's I_src grid (both T-sized)."""
    m = np.linalg.inv(truth_rect.crop_to_w()) @ src_rect.crop_to_w()  # I_src px -> truth crop px
    return cv2.warpAffine(arr, m[:2], (src_rect.out_width, src_rect.out_height), flags=interp | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@dataclass
class IdealOnSource:
    """The ideal target and the true masks on I_src's grid."""

    rgb: np.ndarray  # uint8 HxWx3, colour-matched to I_src
    y: np.ndarray  # float32 luminance in [0, 1] (from the unrounded colour match)
    inside: np.ndarray  # bool: the truth covers this pixel (eroded 4 px)
    occluded: np.ndarray  # bool: the reference does not see this surface (truth's valid_ref_T false)
    defocused: np.ndarray  # bool: the reference's true blur sigma > DEFOCUSED_SIGMA_T_PX


def ideal_on_source(al: Any, ideal_t: np.ndarray, valid_ref_t: np.ndarray, defocus_sigma_ref_t: np.ndarray,
                    crop_rect: dict[str, Any]) -> IdealOnSource:
    """Put a capture's truth on the grid of ``al`` (an ``align.Alignment``: ``al.src``, ``al.rect``).

    Args:
        al: the pipeline's alignment of the capture.
        ideal_t: uint8 RGB ideal target on the truth's crop grid.
        valid_ref_t: true where the reference sees the surface (bool or 0/1).
        defocus_sigma_ref_t: the reference's true blur sigma, T px.
        crop_rect: the truth's crop rectangle (``CropRect`` fields).
    """
    h, w = al.src.shape[:2]
    t_rect = CropRect(**crop_rect)
    inside = onto_src_grid(np.ones((h, w), np.uint8), t_rect, al.rect, cv2.INTER_NEAREST) > 0
    inside = cv2.erode(inside.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    ideal = onto_src_grid(np.ascontiguousarray(ideal_t), t_rect, al.rect, cv2.INTER_LINEAR)
    gain, offset = match_colour(ideal, al.src, inside)
    rgb = np.clip(ideal.astype(np.float32) / 255.0 * gain + offset, 0, 1)
    occluded = onto_src_grid((np.asarray(valid_ref_t) == 0).astype(np.uint8), t_rect, al.rect, cv2.INTER_NEAREST) > 0
    sigma = np.asarray(defocus_sigma_ref_t, dtype=np.float32)
    defocused = onto_src_grid((sigma > DEFOCUSED_SIGMA_T_PX).astype(np.uint8), t_rect, al.rect, cv2.INTER_NEAREST) > 0
    return IdealOnSource(to_uint8(rgb), luma(rgb), inside, occluded, defocused)
