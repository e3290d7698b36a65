"""Image-quality figures of one frame, and of one frame against another.

All take uint8 RGB (or luma) arrays; figures are resolution-independent where they can be
(fractions, ratios), since ``hzsr qa check`` analyses at a reduced grid.
"""

from __future__ import annotations

import cv2
import numpy as np

from hzsr.qa.align import to_luma


def clip_roi(roi, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """``[x, y, w, h]`` clipped to an image of ``shape``; None if nothing is left."""
    h, w = shape[:2]
    x, y, rw, rh = (int(round(v)) for v in roi)
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + rw), min(h, y + rh)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    return x0, y0, x1, y1


def sharpness(y: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean squared Laplacian of the luminance (in [0, 1] units), a focus measure.

    The image is lightly smoothed first (sigma 0.7) so JPEG and sensor noise weigh less than edges.
    """
    f = y.astype(np.float32) / (255.0 if y.dtype == np.uint8 else 1.0)
    lap = cv2.Laplacian(cv2.GaussianBlur(f, (0, 0), 0.7), cv2.CV_32F, ksize=3)
    v = lap * lap
    return float(v[mask].mean()) if mask is not None and mask.any() else float(v.mean())


def noise_sigma(y: np.ndarray) -> float:
    """Noise standard deviation of a luma image in 0..255 units (Immerkaer 1996).

    ``sigma = sqrt(pi / 2) / (6 (W - 2)(H - 2)) * sum |I * N|`` with the Laplacian-difference
    kernel ``N = [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]``, over pixels that are not edges (the
    90 % with the weakest gradient), where texture would otherwise count as noise.
    """
    f = y.astype(np.float32)
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = np.abs(cv2.filter2D(f, -1, k))[1:-1, 1:-1]
    g = cv2.magnitude(cv2.Sobel(f, cv2.CV_32F, 1, 0), cv2.Sobel(f, cv2.CV_32F, 0, 1))[1:-1, 1:-1]
    flat = g <= np.percentile(g[::3, ::3], 90)  # the percentile of a subsample: same value, 9x cheaper
    return float(np.sqrt(np.pi / 2) / 6 * r[flat].mean()) if flat.any() else float("nan")


def channel_max(rgb: np.ndarray) -> np.ndarray:
    """Per pixel, the largest of an HxWx3 image's channels (``rgb.max(axis=2)``, the same values).

    Two elementwise maxima: numpy's reduction over a length-3 last axis costs ~20x more (24 ms on
    a 1000x750 frame, twice per pairing at 12 MP).
    """
    return np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


def frame_quality(rgb: np.ndarray, roi=None, row_figures: bool = True) -> dict[str, float]:
    """Sharpness (whole frame and AF ROI), clipped fraction, noise, brightness and colour means.

    Args:
        rgb: a decoded frame, uint8, HxW or HxWx3 (RGB), not empty: the counts below are exact for it.
        roi: the AF ROI ``[x, y, w, h]`` in ``rgb``'s pixels, or None.
        row_figures: False: only what a verdict reads (clipped fraction, brightness, colour
            means; the capture line's quick check), not sharpness, noise or the dark fraction.

    Raises:
        ValueError: for another dtype, channel count or an empty frame.
    """
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3) or (rgb.ndim == 3 and rgb.shape[2] != 3) or rgb.size == 0:
        raise ValueError(f"frame_quality needs a non-empty uint8 HxW or HxWx3 frame, got {rgb.dtype} {rgb.shape}")
    y = to_luma(rgb)
    n = y.size
    # Counts and integer sums, divided once: the same values as numpy's means of these uint8 and
    # bool arrays (their float64 sums are exact), without its slow reductions over the channel axis.
    clipped = (np.count_nonzero(channel_max(rgb) >= 250) if rgb.ndim == 3 else np.count_nonzero(y >= 250)) / n
    if row_figures:
        out = {"sharpness": sharpness(y), "clipped_frac": clipped, "dark_frac": np.count_nonzero(y <= 5) / n,
               "noise_sigma": noise_sigma(y)}
    else:
        out = {"clipped_frac": clipped}
    out["brightness"] = cv2.sumElems(y)[0] / n / 255.0
    if rgb.ndim == 3:
        means = np.array(cv2.sumElems(rgb)[:3], np.float64) / n / 255.0
        for c, m in zip("rgb", means, strict=True):
            out[f"mean_{c}"] = float(m)
    if not row_figures:
        return out
    box = clip_roi(roi, y.shape) if roi is not None else None
    if box is not None:
        x0, y0, x1, y1 = box
        out["roi_sharpness"] = sharpness(y[y0:y1, x0:x1])
    else:
        out["roi_sharpness"] = float("nan")
    return out


def brightness_log_ratio(a: dict, b: dict) -> float:
    """``log(mean luma of b / mean luma of a)``: 0 when equal, ~0.69 for one stop."""
    return float(np.log(max(b["brightness"], 1e-4) / max(a["brightness"], 1e-4)))


def colour_delta(a: dict, b: dict) -> float:
    """Largest per-channel ``|log|`` ratio of grey-normalised channel means: a white-balance mismatch."""
    try:
        ca = np.array([a["mean_r"], a["mean_g"], a["mean_b"]]) + 1e-4
        cb = np.array([b["mean_r"], b["mean_g"], b["mean_b"]]) + 1e-4
    except KeyError:
        return float("nan")
    ca, cb = ca / ca.mean(), cb / cb.mean()
    return float(np.abs(np.log(cb / ca)).max())


def band_sharpness_ratio(t_y: np.ndarray, w_y: np.ndarray, mask: np.ndarray, optical_scale: float) -> float:
    """Sharpness of T over the W crop's, both seen at W's optical resolution, in ``mask``.

    At W's resolution an in-focus, still T carries at least W's detail (its own optics are finer), so
    the ratio sits near or above 1; a T blurred by camera shake or defocus by more than a W pixel
    falls well below it. ``t_y`` must be registered onto ``w_y``'s grid (the warped T).
    """
    h, w = w_y.shape
    s = min(1.0, max(optical_scale, 1e-3) * 1.5)
    size = (max(16, round(w * s)), max(16, round(h * s)))
    a = cv2.resize(t_y.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    b = cv2.resize(w_y.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    m = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    m = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if m.sum() < 32:
        return float("nan")
    st, sw = sharpness(a, m), sharpness(b, m)
    return float(st / max(sw, 1e-12))


def directional_sharpness_ratios(t_y: np.ndarray, w_y: np.ndarray, mask: np.ndarray, optical_scale: float,
                                 n_dirs: int = 4) -> np.ndarray:
    """T over W-crop gradient energy along ``n_dirs`` directions, at W's optical resolution.

    ``E_theta = mean((cos theta Gx + sin theta Gy)^2)`` over ``mask`` (Sobel gradients). Camera
    shake smears T along one direction: the ratio along it drops while the one across it does not,
    unlike defocus, which is isotropic. ``t_y`` must be registered onto ``w_y``'s grid.
    """
    h, w = w_y.shape
    s = min(1.0, max(optical_scale, 1e-3) * 1.5)
    size = (max(16, round(w * s)), max(16, round(h * s)))
    m = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    m = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if m.sum() < 32:
        return np.full(n_dirs, np.nan)
    out = []
    grads = []
    for img in (t_y, w_y):
        a = cv2.resize(img.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        grads.append((cv2.Sobel(a, cv2.CV_32F, 1, 0)[m], cv2.Sobel(a, cv2.CV_32F, 0, 1)[m]))
    for k in range(n_dirs):
        th = np.pi * k / n_dirs
        c, si = np.cos(th), np.sin(th)
        et = np.mean((c * grads[0][0] + si * grads[0][1]) ** 2)
        ew = np.mean((c * grads[1][0] + si * grads[1][1]) ** 2)
        out.append(et / max(ew, 1e-9))
    return np.array(out)


def directional_share_ratios(a_y: np.ndarray, b_y: np.ndarray, mask: np.ndarray, n_dirs: int = 8,
                             sigma: float = 2.0) -> np.ndarray:
    """``a`` over ``b``: how each image's local gradient energy is shared among ``n_dirs`` directions.

    Per pixel, ``s_theta = E_theta / sum_phi E_phi`` with ``E_theta`` the directional gradient energy
    ``(cos theta Gx + sin theta Gy)^2`` averaged in a Gaussian window (``sigma`` px); the result is
    ``mean(s_theta(a)) / mean(s_theta(b))`` over ``mask``. A local contrast change (tone curve,
    exposure, vignetting) scales every direction of a pixel alike and cancels; a smear along one
    direction takes that direction's share (``a`` and ``b`` registered on one grid, same optics).
    """
    m = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if m.sum() < 32:
        return np.full(n_dirs, np.nan)
    t = np.pi * np.arange(n_dirs) / n_dirs
    c, si = np.cos(t), np.sin(t)
    products, totals = [], []
    for img in (a_y, b_y):
        img = img.astype(np.float32)
        gx, gy = cv2.Sobel(img, cv2.CV_32F, 1, 0), cv2.Sobel(img, cv2.CV_32F, 0, 1)
        # (c Gx + s Gy)^2 = c^2 Gx^2 + s^2 Gy^2 + 2 c s Gx Gy, and the window is linear: three
        # blurred products give every direction (not one blur per direction).
        xx, yy, xy = (cv2.GaussianBlur(p, (0, 0), sigma)[m].astype(np.float64) for p in (gx * gx, gy * gy, gx * gy))
        # Over n equally spaced directions in [0, pi), sum c^2 = sum s^2 = n / 2 and sum c s = 0:
        # a pixel's total energy is n / 2 (xx + yy), whatever the directions.
        totals.append(n_dirs / 2 * (xx + yy) + 1e-6)
        products.append((xx, yy, xy))
    # Flat pixels (noise only) carry no direction: each pixel weighs by its energy, the same weight
    # in both images (the geometric mean of the two), so a region dimmed in one image alone does
    # not move the balance between regions.
    w = np.sqrt(totals[0] * totals[1])
    w /= w.sum()
    # The weighted mean share is linear in the three products: three weighted sums per image give
    # every direction's (sum_p w s_theta = c^2 <xx> + s^2 <yy> + 2 c s <xy>, <.> = sum_p w . / total).
    shares = []
    for (xx, yy, xy), total in zip(products, totals, strict=True):
        wt = w / total
        # Plain reductions, not a BLAS dot: OpenBLAS's worker threads spin after each call.
        a, b, d = float((wt * xx).sum()), float((wt * yy).sum()), float((wt * xy).sum())
        shares.append(c * c * a + si * si * b + 2 * c * si * d)
    return shares[0] / np.maximum(shares[1], 1e-9)


def matched_interpolation(img: np.ndarray, map_x: np.ndarray, map_y: np.ndarray,
                          origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``img`` through the same bilinear weights a warp by ``(map_x, map_y)`` gave another image.

    A bilinear warp (``cv2.remap``) samples its source at ``map``: at a fractional offset
    ``(fx, fy)`` that is the 2-tap filter ``[1 - fx, fx] x [1 - fy, fy]``, a low-pass along the
    offset (at half a pixel it removes the Nyquist frequency). Where the flow is smooth (a
    landscape's far planes), its fractional part is nearly constant over large areas, so the warped
    image is smoothed along the flow's direction, which a direction-share comparison reads as a smear.
    Sampling ``img`` on its own grid at ``grid + frac(map)`` (``origin``: the grid's top-left pixel,
    for a crop) applies the same filter to it, less than a pixel off its place.
    """
    h, w = map_x.shape
    gx, gy = np.meshgrid(np.arange(origin[0], origin[0] + w, dtype=np.float32),
                         np.arange(origin[1], origin[1] + h, dtype=np.float32))
    fx = (map_x - np.floor(map_x)).astype(np.float32)
    fy = (map_y - np.floor(map_y)).astype(np.float32)
    return cv2.remap(img, gx + fx, gy + fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
