"""Image a layered scene through a phone camera, and compute ground-truth flow.

Each layer is a plane, so texture-to-image is a homography ``H = K R [s e1, s e2, P0 - C]`` where
``P0`` is the world position of texel (0, 0), ``s`` the texel size, and ``(R, C)`` the camera's
rotation and centre. Rendering warps each layer's mip-mapped texture with ``H`` (prefiltering in
texture space is the same as rendering finer and downsampling), blurs it by its defocus, and
composites back to front in linear light. The defocus blur-circle diameter in pixels is

    c = f_px * D * |1/Z - 1/Z_f|,   sigma = c / (2 sqrt 2)

with ``D`` the aperture diameter (focal length / f-number) and ``1/Z_f`` the focus distance in
diopters. Ground-truth flow from the W crop to a T frame uses the same homographies, so it is exact
up to float rounding wherever the same layer is visible in both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from hzsr.sim.profiles import CameraModel
from hzsr.sim.scene import Layer, Scene, alpha_mask, detail, photo


@dataclass
class CameraPose:
    """A camera in the world: ``x ~ K R (X - C)``."""

    K: np.ndarray
    R: np.ndarray
    C: np.ndarray
    size: tuple[int, int]  # (width, height)

    def to_json(self) -> dict:
        return {"K": self.K.tolist(), "R": self.R.tolist(), "C": self.C.tolist(), "size": list(self.size)}


def rotation_xyz(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix from small angles in radians (pitch, yaw, roll)."""
    r, _ = cv2.Rodrigues(np.array([rx, ry, rz], np.float64))
    return r


def layer_origin(layer: Layer, t: float) -> np.ndarray:
    """World position of texel (0, 0) at time ``t`` (seconds)."""
    h, w = photo(layer.photo).shape[:2]
    s = layer.texel_m
    # Movers swing back and forth: velocity_mps at t = 0, amplitude v T / (2 pi), so a rig that
    # runs for hours keeps them in view. Over the milliseconds between a triplet's frames this is
    # the same as straight-line motion.
    swing = layer.motion_period_s / (2 * np.pi) * np.sin(2 * np.pi * t / layer.motion_period_s)
    cx = layer.center_m[0] + layer.velocity_mps[0] * swing
    cy = layer.center_m[1] + layer.velocity_mps[1] * swing
    return np.array([cx - w / 2 * s, cy - h / 2 * s, layer.depth_m])


def layer_homography(pose: CameraPose, layer: Layer, t: float, texel_m: float | None = None,
                     origin: np.ndarray | None = None) -> np.ndarray:
    """Texture pixel -> image pixel homography of ``layer`` seen by ``pose`` at time ``t``."""
    s = layer.texel_m if texel_m is None else texel_m
    p0 = layer_origin(layer, t) if origin is None else origin
    m = np.array([[s, 0, p0[0] - pose.C[0]], [0, s, p0[1] - pose.C[1]], [0, 0, p0[2] - pose.C[2]]])
    return pose.K @ pose.R @ m


#: Linear light is carried as uint16 with 1.0 = ONE, leaving 2x headroom for surface detail.
#: uint16 warps, blurs and blends run ~8x faster than float32 in OpenCV, which is what lets a
#: 12 MP triplet render in about a second on one core.
ONE = 32768


@lru_cache(maxsize=64)
def _layer_pyramids(photo_name: str, shape: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Premultiplied linear RGB (uint16) and coverage (uint16) pyramids of a layer texture.

    pyrDown puts level-L texel ``i`` at base texel ``2^L i``, so the level-L homography is
    ``H diag(2^L, 2^L, 1)``.
    """
    rgb = photo(photo_name)
    a = alpha_mask(shape, rgb.shape[0], rgb.shape[1])
    col = [np.round(rgb * a[..., None] * ONE).astype(np.uint16)]
    cov = [np.round(a * ONE).astype(np.uint16)]
    while min(col[-1].shape[:2]) > 16:
        col.append(cv2.pyrDown(col[-1]))
        cov.append(cv2.pyrDown(cov[-1]))
    return col, cov


def _periodic_levels(img: np.ndarray) -> list[np.ndarray]:
    """Pyramid of ``img`` mirror-tiled into one periodic texture, each level exactly periodic.

    ``img`` is cropped to a multiple of 32 texels and laid out as ``[img | flip]`` over its
    vertical flip: a tile of twice its size that repeats by plain wrapping. Each ``pyrDown`` level
    is then exactly half the size and repeats with exactly half the period, so a repeated texture
    sits at the same place at every mip level. (Reflect-101 tiling, whose period is ``2 (n - 1)``,
    does not halve: its repeats drift by two texels per period and level, which shifts what a
    minifying camera like W sees against what T sees.)
    """
    h, w = img.shape[:2]
    img = img[: h - h % 32, : w - w % 32]
    tile = np.concatenate([img, img[:, ::-1]], 1)
    levels = [np.ascontiguousarray(np.concatenate([tile, tile[::-1]], 0))]
    while min(levels[-1].shape[:2]) > 16 and levels[-1].shape[0] % 2 == 0 and levels[-1].shape[1] % 2 == 0:
        pad = [(8, 8), (8, 8)] + [(0, 0)] * (img.ndim - 2)
        levels.append(np.ascontiguousarray(cv2.pyrDown(np.pad(levels[-1], pad, mode="wrap"))[4:-4, 4:-4]))
    return levels


@lru_cache(maxsize=16)
def _photo_pyramid(photo_name: str) -> list[np.ndarray]:
    """Linear RGB (uint16, not premultiplied) periodic pyramid of a photograph (tiled layers)."""
    return _periodic_levels(np.round(photo(photo_name) * ONE).astype(np.uint16))


@lru_cache(maxsize=16)
def _detail_pyramid(name: str) -> list[np.ndarray]:
    return _periodic_levels(detail(name))


def _mip_level(n_levels: int, magnification: float) -> int:
    """The pyramid level whose texels are about one image pixel."""
    if magnification >= 1:
        return 0
    # Rounded, not floored: a floored level leaves up to 2 texels per pixel, which aliases
    # (moire) on repeated photographs and fools optical flow.
    return min(int(np.round(np.log2(1 / magnification))), n_levels - 1)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; large sigmas run on a downsampled copy (same result to the eye, 100x faster)."""
    if sigma < 0.3:
        return img
    if sigma <= 4:
        return cv2.GaussianBlur(img, (0, 0), sigma)
    f = 2 ** int(np.ceil(np.log2(sigma / 2.0)))
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / f)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def defocus_sigma_px(cam: CameraModel, fx_px: float, depth_m: float, focus_diopters: float) -> float:
    """Gaussian sigma of the defocus blur of a plane at ``depth_m`` (see module docstring)."""
    c = fx_px * cam.aperture_m() * abs(1.0 / depth_m - focus_diopters)
    return c / (2 * np.sqrt(2))


def _bbox(h_mat: np.ndarray, tex_w: int, tex_h: int, size: tuple[int, int], margin: float):
    corners = np.array([[-1, -1], [tex_w, -1], [tex_w, tex_h], [-1, tex_h]], np.float64)
    pts = cv2.perspectiveTransform(corners[None], h_mat)[0]
    x0, y0 = np.floor(pts.min(0) - margin).astype(int)
    x1, y1 = np.ceil(pts.max(0) + margin).astype(int)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, size[0]), min(y1, size[1])
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def _warp_wrapped(tex: np.ndarray, h_mat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``warpPerspective`` of a periodic texture (``_periodic_levels``) repeated without end.

    The homography is moved by whole periods to start near the origin and the texture is
    wrap-padded to cover the view, so the warp runs on OpenCV's fast in-range path.
    """
    w, h = size
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    uv = cv2.perspectiveTransform(corners[None], np.linalg.inv(h_mat))[0]
    th, tw = tex.shape[:2]
    u0, v0 = np.floor(uv.min(0)).astype(int) - 2
    u1, v1 = np.ceil(uv.max(0)).astype(int) + 2
    su, sv = (u0 // tw) * tw, (v0 // th) * th
    pad = [(0, max(0, v1 - sv - th + 2)), (0, max(0, u1 - su - tw + 2))] + [(0, 0)] * (tex.ndim - 2)
    big = np.pad(tex, pad, mode="wrap") if any(p[1] for p in pad) else tex
    shift = np.array([[1, 0, su], [0, 1, sv], [0, 0, 1]], np.float64)
    return cv2.warpPerspective(big, h_mat @ shift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def render_linear16(scene: Scene, pose: CameraPose, cam: CameraModel, t: float,
                    focus_diopters: float, optics: bool = True) -> np.ndarray:
    """Linear-light image (H, W, 3) uint16, 1.0 = ``ONE``, of ``scene`` through ``cam`` at ``t``.

    Args:
        optics: apply defocus and lens blur. Off gives the ideal pinhole image (for tests).
    """
    w, h = pose.size
    acc = np.zeros((h, w, 3), np.uint16)
    fx = float(pose.K[0, 0])
    for layer in scene.layers:
        p0 = layer_origin(layer, t)
        h_tex = layer_homography(pose, layer, t, origin=p0)
        col, cov = _layer_pyramids(layer.photo, layer.shape)
        lvl = _mip_level(len(col), fx * layer.texel_m / (layer.depth_m - pose.C[2]))
        h_lvl = h_tex @ np.diag([2.0**lvl, 2.0**lvl, 1.0])
        sigma = defocus_sigma_px(cam, fx, layer.depth_m, focus_diopters) if optics else 0.0
        if layer.tile:
            box = (0, 0, w, h)
        else:
            box = _bbox(h_tex, col[0].shape[1], col[0].shape[0], (w, h), 3 * sigma + 2)
            if box is None:
                continue
        x0, y0, x1, y1 = box
        shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
        border = cv2.BORDER_REFLECT_101 if layer.tile else cv2.BORDER_CONSTANT
        roi_size = (x1 - x0, y1 - y0)
        opaque = layer.tile and layer.shape == "full"
        a = None if opaque else cv2.warpPerspective(cov[lvl], shift @ h_lvl, roi_size,
                                                    flags=cv2.INTER_LINEAR, borderMode=border)
        if layer.tile or layer.photo_repeat > 1:
            # The photograph repeats across the layer (beyond its edges, or photo_repeat times
            # within them): its own texel and mip level, tiled, then cut out by the coverage.
            pyr = _photo_pyramid(layer.photo)
            lvl_p = _mip_level(len(pyr), fx * layer.photo_texel_m / (layer.depth_m - pose.C[2]))
            h_p = layer_homography(pose, layer, t, texel_m=layer.photo_texel_m, origin=p0)
            rgb = _warp_wrapped(pyr[lvl_p], shift @ h_p @ np.diag([2.0**lvl_p, 2.0**lvl_p, 1.0]), roi_size)
            if a is not None:
                rgb = cv2.multiply(rgb, cv2.merge([a, a, a]), scale=1 / ONE)
        else:
            rgb = cv2.warpPerspective(col[lvl], shift @ h_lvl, roi_size, flags=cv2.INTER_LINEAR,
                                      borderMode=border)
        scale = layer.gain
        if layer.detail_gain > 0:
            d_levels = _detail_pyramid(layer.detail)
            d_lvl = _mip_level(len(d_levels), fx * layer.detail_texel_m / (layer.depth_m - pose.C[2]))
            h_d = layer_homography(pose, layer, t, texel_m=layer.detail_texel_m, origin=p0)
            h_d = shift @ h_d @ np.diag([2.0**d_lvl, 2.0**d_lvl, 1.0])
            d = _warp_wrapped(d_levels[d_lvl], h_d, roi_size)
            # mod = gain * max(1 + g d, 0), as uint16 with 1.0 = 4096, applied with saturation.
            mod = cv2.max(d * np.float32(layer.detail_gain * scale) + np.float32(scale), 0.0)
            mod16 = (mod * 4096).astype(np.uint16)
            rgb = cv2.multiply(rgb, cv2.merge([mod16, mod16, mod16]), scale=1 / 4096)
        elif scale != 1.0:
            rgb = cv2.multiply(rgb, (scale, scale, scale, 0))
        rgb = _blur(rgb, sigma)
        roi = acc[y0:y1, x0:x1]
        if a is None:
            roi[...] = rgb
            continue
        a = _blur(a, sigma)
        inv = cv2.subtract(np.full_like(a, ONE), a)
        kept = cv2.multiply(roi, cv2.merge([inv, inv, inv]), scale=1 / ONE)
        roi[...] = cv2.add(kept, rgb)
    if optics:
        lens = cam.lens_blur_px * w / cam.native_size[0]
        acc = _blur(acc, lens)
    return acc


def motion_blur(lin16: np.ndarray, length_px: float, angle_rad: float) -> np.ndarray:
    """A straight-line motion blur (the camera turning during the exposure) of ``length_px``."""
    if length_px < 1:
        return lin16
    n = int(np.ceil(length_px)) | 1
    k = np.zeros((n, n), np.float32)
    c = (n - 1) / 2
    dx, dy = np.cos(angle_rad) * length_px / 2, np.sin(angle_rad) * length_px / 2
    cv2.line(k, (round((c - dx) * 16), round((c - dy) * 16)), (round((c + dx) * 16), round((c + dy) * 16)),
             1.0, 1, cv2.LINE_AA, shift=4)
    return cv2.filter2D(lin16, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT_101)


def render_radiance(scene: Scene, pose: CameraPose, cam: CameraModel, t: float,
                    focus_diopters: float, optics: bool = True) -> np.ndarray:
    """``render_linear16`` as float32 linear light (1.0 = white). For tests and analysis."""
    return render_linear16(scene, pose, cam, t, focus_diopters, optics).astype(np.float32) / ONE


def _tone(x: np.ndarray) -> np.ndarray:
    """Linear -> display: soft shoulder above 0.8, then gamma 1/2.2."""
    y = np.where(x < 0.8, x, 0.8 + 0.2 * np.tanh((x - 0.8) / 0.2))
    return np.clip(y, 0, 1) ** (1 / 2.2)


def expose(lin16: np.ndarray, *, exposure_gain: float, wb: tuple[float, float, float],
           iso: int, cam: CameraModel, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
    """Sensor + ISP: exposure, white balance, tone curve and noise -> uint8 RGB.

    Exposure and white balance are folded into one 65536-entry tone LUT per channel. Noise is
    added after the tone curve: gamma 1/2.2 is close to the square root that makes Poisson noise
    signal-independent, so a single sigma per frame is a fair model. It is taken at mid-grey
    ``x_m = 0.18`` from ``var = g a x + (g b)^2`` (``g = ISO / 100``):

        sigma_out = 255 * sqrt(g a x_m + (g b)^2) * (1/2.2) x_m^(1/2.2 - 1)
    """
    idx = np.arange(65536, dtype=np.float64) / ONE * exposure_gain
    out = np.empty(lin16.shape, np.uint8)
    for c in range(3):
        lut = np.round(_tone(idx * wb[c]) * 255).astype(np.uint8)
        out[..., c] = lut[lin16[..., c]]
    if noise:
        g = iso / 100.0
        xm = 0.18
        sigma = 255 * np.sqrt(g * cam.shot_noise * xm + (g * cam.read_noise) ** 2) / 2.2 * xm ** (1 / 2.2 - 1)
        n = np.empty(out.shape, np.int16)
        cv2.randn(n, 0.0, float(sigma))
        out = cv2.add(out, n, dtype=cv2.CV_8U)
    return out


def visible_layer_map(scene: Scene, pose: CameraPose, t: float) -> np.ndarray:
    """Index of the front-most layer covering each pixel (coverage > 0.5), or -1."""
    w, h = pose.size
    label = np.full((h, w), -1, np.int16)
    for i, layer in enumerate(scene.layers):
        a = alpha_mask(layer.shape, *photo(layer.photo).shape[:2])
        h_tex = layer_homography(pose, layer, t)
        border = cv2.BORDER_REFLECT_101 if layer.tile else cv2.BORDER_CONSTANT
        cov = cv2.warpPerspective(a, h_tex, (w, h), flags=cv2.INTER_LINEAR, borderMode=border)
        label[cov > 0.5] = i
    return label


def true_flow(scene: Scene, src: CameraPose, t_src: float, dst: CameraPose, t_dst: float):
    """Exact flow from ``src``'s pixel grid into ``dst``: ``dst(x + F(x)) ~ src(x)``.

    Returns:
        flow: (H, W, 2) float32, in ``dst`` pixels.
        valid: (H, W) bool: the same layer is visible at both ends and the target is in frame.
    """
    w, h = src.size
    label_src = visible_layer_map(scene, src, t_src)
    label_dst = visible_layer_map(scene, dst, t_dst)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    flow = np.zeros((h, w, 2), np.float32)
    valid = np.zeros((h, w), bool)
    for i, layer in enumerate(scene.layers):
        m = label_src == i
        if not m.any():
            continue
        h_src = layer_homography(src, layer, t_src)
        h_dst = layer_homography(dst, layer, t_dst)
        h_s2d = h_dst @ np.linalg.inv(h_src)
        pts = np.stack([xx[m], yy[m], np.ones(m.sum())])
        q = h_s2d @ pts
        qx, qy = q[0] / q[2], q[1] / q[2]
        flow[m, 0] = qx - xx[m]
        flow[m, 1] = qy - yy[m]
        ix, iy = np.round(qx).astype(int), np.round(qy).astype(int)
        inside = (ix >= 0) & (ix < dst.size[0]) & (iy >= 0) & (iy < dst.size[1])
        same = np.zeros_like(inside)
        same[inside] = label_dst[iy[inside], ix[inside]] == i
        valid[m] = same
    return flow, valid
