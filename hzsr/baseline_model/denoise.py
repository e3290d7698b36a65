"""Noise-adaptive denoising of the pipeline's output, driven by the noise measured in the reference.

A night capture's reference carries sensor noise that the truth target (and a good output) does
not. The noise level is measured from the image itself (a real capture need not say its ISO, and
a scene-kind label does not exist outside the simulator):

    hp = Y * [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]             (Immerkaer 1996; ||k||_2 = 6)
    sigma = P_q(mean_B |hp|) * sqrt(pi / 2) / 6                 per B x B block, q-th percentile

The kernel cancels every linear ramp, so in the flattest blocks (the low percentile) ``|hp|`` is
the noise's alone; ``sqrt(pi / 2)`` turns a mean absolute deviation into a Gaussian sigma. Below
``denoise_min_sigma`` (8-bit units) nothing is done: a daylight capture's output is returned
bit for bit. Above it the output's luma goes through an edge-preserving bilateral filter whose
range sigma is ``denoise_strength * sigma`` (a non-local-means filter gains a few hundredths of
a dB more but costs 10 s at 12 MP on 2 cores, the bilateral pass 0.8 s: ``bench/denoise_cost.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Immerkaer's noise-estimation kernel (the difference of two Laplacians); its L2 norm is 6.
_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
#: Noise is measured on at most this central square (it is per pixel: a crop measures it as well).
_MAX_SIDE = 2048


@dataclass(frozen=True)
class DenoiseSettings:
    """The output denoiser's parameters (``PipelineConfig`` carries them; defaults tuned on the train seeds 11-14)."""

    min_sigma: float = 2.0  # below this measured noise sigma (8-bit luma) the output is untouched
    strength: float = 1.0  # bilateral range sigma = strength * measured sigma
    diameter: int = 7  # bilateral neighbourhood, pixels
    space_sigma: float = 1.5  # bilateral spatial sigma, pixels
    block: int = 16  # noise-estimation block side, pixels
    percentile: float = 10.0  # of the block noise estimates: the flattest blocks hold the noise alone


def noise_sigma(y: np.ndarray, block: int = 16, percentile: float = 10.0, max_side: int = _MAX_SIDE) -> float:
    """Gaussian noise sigma of a luma image in 8-bit units (Immerkaer's estimator, flattest blocks).

    Args:
        y: HxW luma, uint8 (0-255) or float (0-1).
        block: block side over which ``|hp|`` is averaged.
        percentile: which block estimate to report (low = flat regions).
        max_side: larger images are measured on their central ``max_side`` square crop (noise is
            per pixel, so a crop measures it as well as the whole; 12 MP would cost ~0.3 s).
    """
    if y.ndim != 2:
        raise ValueError(f"noise_sigma: expected an HxW luma image, got shape {y.shape}")
    h, w = y.shape
    y0, x0 = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
    crop = y[y0 : y0 + max_side, x0 : x0 + max_side].astype(np.float32)
    if y.dtype != np.uint8:
        crop *= 255.0
    hp = np.abs(cv2.filter2D(crop, -1, _KERNEL))[1:-1, 1:-1]
    bh, bw = hp.shape[0] // block, hp.shape[1] // block
    if bh == 0 or bw == 0:
        return float(hp.mean() * np.sqrt(np.pi / 2) / 6.0) if hp.size else 0.0
    blocks = hp[: bh * block, : bw * block].reshape(bh, block, bw, block).mean(axis=(1, 3))
    return float(np.percentile(blocks, percentile) * np.sqrt(np.pi / 2) / 6.0)


def reference_sigma(reference: np.ndarray, s: DenoiseSettings) -> float:
    """The noise sigma (8-bit luma) ``denoise_output`` measures in the uint8 RGB ``reference``.

    A function of the reference alone, so the pipeline measures it before the tiles
    (``HZSRPipeline.fuse``), not after them, where its temporaries were freshly trimmed pages
    (0.2-0.5 CPU-s of faults against 0.02-0.13: ``docs/benchmarks.md``, issue19wall).
    """
    h, w = reference.shape[:2]
    m = _MAX_SIDE
    y0, x0 = max(0, (h - m) // 2), max(0, (w - m) // 2)
    ref_y = cv2.cvtColor(np.ascontiguousarray(reference[y0 : y0 + m, x0 : x0 + m]), cv2.COLOR_RGB2GRAY)
    return noise_sigma(ref_y, s.block, s.percentile)


def denoise_output(final: np.ndarray, reference: np.ndarray | None, s: DenoiseSettings,
                   sigma: float | None = None) -> tuple[np.ndarray, float]:
    """The pipeline's uint8 RGB output with its luma denoised for the noise measured in ``reference``.

    Returns ``(image, sigma)``; ``image`` is ``final`` itself (not a copy) when ``sigma`` is below
    ``s.min_sigma`` or ``s.strength`` is 0. Only Y is filtered, U and V are kept: since every RGB
    channel is ``Y + (its U, V terms)``, that is ``RGB + (Y_denoised - Y)`` on each channel.
    ``sigma``: ``reference_sigma(reference, s)`` when the caller measured it already (``reference``
    may then be None).
    """
    if sigma is None:
        if reference is None:
            raise ValueError("denoise_output: give the reference or its measured sigma")
        sigma = reference_sigma(reference, s)
    if sigma < s.min_sigma or s.strength <= 0:
        return final, sigma
    y = cv2.cvtColor(final, cv2.COLOR_RGB2GRAY).astype(np.float32)  # BT.601 luma, the pipeline's Y
    d = cv2.bilateralFilter(y, s.diameter, s.strength * sigma, s.space_sigma)
    d -= y
    delta = np.rint(d).astype(np.int16)
    # Saturating uint8 + int16 in OpenCV: no float copy of the 3-channel frame (36 MB at 12 MP).
    return cv2.add(final, cv2.merge([delta, delta, delta]), dtype=cv2.CV_8U), sigma
