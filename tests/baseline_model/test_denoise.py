"""The output denoiser: a noisy flat-plus-edge image gets less noisy and keeps its edge; a clean one is untouched."""

from __future__ import annotations

import cv2
import numpy as np

from hzsr.baseline_model.denoise import DenoiseSettings, denoise_output, noise_sigma


def _flat_plus_edge() -> np.ndarray:
    img = np.full((240, 320), 90.0, np.float32)
    img[:, 160:] = 170.0  # a vertical step edge of 80 levels
    return img


def _rgb(img: np.ndarray, noise: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = img[..., None] + rng.normal(0.0, noise, (*img.shape, 3)) if noise else np.repeat(img[..., None], 3, 2)
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _y(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)


def test_noise_sigma_measures_the_added_noise() -> None:
    clean = _flat_plus_edge()
    assert noise_sigma(clean.astype(np.uint8)) < 0.1  # the edge alone is not noise
    for sd in (3.0, 8.0):
        rng = np.random.default_rng(1)
        noisy = np.clip(clean + rng.normal(0, sd, clean.shape) + 0.5, 0, 255).astype(np.uint8)
        assert 0.75 * sd < noise_sigma(noisy) < 1.1 * sd


def test_noisy_image_gets_less_noisy_and_keeps_its_edge() -> None:
    img = _flat_plus_edge()
    noisy = _rgb(img, 8.0)
    out, sigma = denoise_output(noisy, noisy, DenoiseSettings())
    assert sigma > DenoiseSettings().min_sigma
    y_in, y_out, y_true = _y(noisy), _y(out), _y(_rgb(img, 0.0))
    flat = np.s_[:, 20:140]
    assert y_out[flat].std() < 0.85 * y_in[flat].std()  # measured: 0.68
    assert np.abs(y_out - y_true).mean() < np.abs(y_in - y_true).mean()
    step_in = y_in[:, 165:175].mean() - y_in[:, 145:155].mean()
    step_out = y_out[:, 165:175].mean() - y_out[:, 145:155].mean()
    assert abs(step_out - step_in) < 1.0  # the edge is kept
    assert np.abs(out.astype(int) - noisy.astype(int)).max() > 0  # it did change the image


def test_clean_capture_is_untouched() -> None:
    clean = _rgb(_flat_plus_edge(), 0.0)
    final = _rgb(_flat_plus_edge(), 4.0, seed=3)  # even a noisy output: only the reference's noise decides
    out, sigma = denoise_output(final, clean, DenoiseSettings())
    assert sigma < DenoiseSettings().min_sigma
    assert out is final
    off, _ = denoise_output(final, _rgb(_flat_plus_edge(), 8.0), DenoiseSettings(strength=0.0))
    assert off is final
