"""Colour handling: full-range BT.601 YCbCr (JPEG's), in numpy and in torch.

The fusion network works on luminance only; colour comes from the source's chroma
(``docs/method.md``, step 4). With ``r, g, b`` in [0, 1]:

    Y  =  0.299 r + 0.587 g + 0.114 b
    U  = -0.168736 r - 0.331264 g + 0.5 b      (Cb - 0.5)
    V  =  0.5 r - 0.418688 g - 0.081312 b      (Cr - 0.5)

and back ``r = Y + 1.402 V``, ``g = Y - 0.344136 U - 0.714136 V``, ``b = Y + 1.772 U``.
Chroma is kept zero-centred so that a colour gain applies without an offset.
"""

from __future__ import annotations

import numpy as np

RGB_TO_YUV = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=np.float32
)
YUV_TO_RGB = np.array([[1.0, 0.0, 1.402], [1.0, -0.344136, -0.714136], [1.0, 1.772, 0.0]], dtype=np.float32)


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB (uint8, or float in [0, 1]) to float32 HxWx3 YUV, Y in [0, 1], U/V in [-0.5, 0.5]."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB, got shape {rgb.shape}")
    x = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32, copy=False)
    return x @ RGB_TO_YUV.T


def yuv_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """HxWx3 YUV (as ``rgb_to_yuv`` makes) to float32 RGB, not clipped."""
    if yuv.ndim != 3 or yuv.shape[2] != 3:
        raise ValueError(f"expected HxWx3 YUV, got shape {yuv.shape}")
    return yuv.astype(np.float32, copy=False) @ YUV_TO_RGB.T


def luma(rgb: np.ndarray) -> np.ndarray:
    """Y of an HxWx3 RGB image as float32 in [0, 1]."""
    x = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32, copy=False)
    return x @ RGB_TO_YUV[0]


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] to uint8 with rounding and clipping."""
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def match_colour(ref: np.ndarray, src: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel gain and offset that give ``ref`` the mean and standard deviation of ``src``.

    ``ref' = (ref - mu_ref) * sd_src / sd_ref + mu_src`` per RGB channel (``docs/method.md``, step 1),
    returned as ``(gain, offset)`` so it can be applied tile by tile:
    ``ref' = gain * ref + offset``. Statistics are taken on (small) images of the same content,
    optionally only where ``mask`` is true.

    Returns:
        gain, offset: float32 arrays of 3, for images scaled to [0, 1].
    """
    s = src.astype(np.float32) / 255.0 if src.dtype == np.uint8 else src.astype(np.float32)
    r = ref.astype(np.float32) / 255.0 if ref.dtype == np.uint8 else ref.astype(np.float32)
    if mask is not None and mask.sum() > 16:
        s, r = s[mask], r[mask]
    else:
        s, r = s.reshape(-1, 3), r.reshape(-1, 3)
    mu_s, mu_r = s.mean(0), r.mean(0)
    sd_s, sd_r = s.std(0), r.std(0)
    gain = np.clip(sd_s / np.maximum(sd_r, 1e-4), 0.5, 2.0).astype(np.float32)
    return gain, (mu_s - gain * mu_r).astype(np.float32)


def rgb_to_yuv_torch(rgb):  # noqa: ANN001, ANN201 - torch is imported lazily
    """Nx3xHxW RGB in [0, 1] to Nx3xHxW YUV (same matrix as ``rgb_to_yuv``)."""
    import torch

    m = torch.as_tensor(RGB_TO_YUV, dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("ij,njhw->nihw", m, rgb)


def yuv_to_rgb_torch(yuv):  # noqa: ANN001, ANN201
    """Nx3xHxW YUV to Nx3xHxW RGB (same matrix as ``yuv_to_rgb``)."""
    import torch

    m = torch.as_tensor(YUV_TO_RGB, dtype=yuv.dtype, device=yuv.device)
    return torch.einsum("ij,njhw->nihw", m, yuv)
