"""Camera geometry shared by every stage: the W crop that covers T's field of view.

Pixel convention (OpenCV's): integer coordinates are pixel centres. Resizing a crop of width
``cw`` to ``w_t`` pixels maps a crop-grid coordinate ``u_c`` to W as
``u_w = x0 + (u_c + 0.5) / k - 0.5`` with ``k = w_t / cw``, which is what ``cv2.resize`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CropRect:
    """A sub-pixel crop of W, and the scale that resizes it to T's resolution."""

    x0: float  # left edge of the crop in W pixel-edge coordinates
    y0: float
    width: float  # crop size in W pixels
    height: float
    out_width: int  # T's image size, which the crop is resized to
    out_height: int

    @property
    def scale(self) -> float:
        """T pixels per W pixel, ``k = out_width / width`` (about the focal-length ratio)."""
        return self.out_width / self.width

    def crop_to_w(self) -> np.ndarray:
        """3x3 affine taking crop-grid pixel coordinates (at T resolution) to W pixels."""
        k = self.out_width / self.width
        ky = self.out_height / self.height
        return np.array(
            [[1 / k, 0, self.x0 + 0.5 / k - 0.5], [0, 1 / ky, self.y0 + 0.5 / ky - 0.5], [0, 0, 1]],
            dtype=np.float64,
        )

    def crop_intrinsics(self, k_w: np.ndarray) -> np.ndarray:
        """Intrinsics of a virtual camera, posed like W, whose image is the resized crop.

        ``K_crop = inv(crop_to_w) @ K_W``.
        """
        return np.linalg.inv(self.crop_to_w()) @ k_w


def tele_crop_rect(
    k_w: np.ndarray, k_t: np.ndarray, t_size: tuple[int, int], w_size: tuple[int, int]
) -> CropRect:
    """The W crop matching T's field of view, centred on W's image centre.

    The crop size follows the focal ratio: ``cw = w_T * fx_W / fx_T``. Any residual offset between
    the two optical axes is left to coarse alignment, as on a phone.

    Args:
        k_w: W intrinsics (3x3, pixels).
        k_t: T intrinsics (3x3, pixels).
        t_size: T image size as (width, height).
        w_size: W image size as (width, height).
    """
    w_t, h_t = t_size
    w_w, h_w = w_size
    cw = w_t * k_w[0, 0] / k_t[0, 0]
    ch = h_t * k_w[1, 1] / k_t[1, 1]
    if cw > w_w or ch > h_w:
        raise ValueError(f"T's field of view ({cw:.0f}x{ch:.0f} W px) is wider than W ({w_w}x{h_w})")
    return CropRect((w_w - cw) / 2, (h_w - ch) / 2, cw, ch, w_t, h_t)


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
