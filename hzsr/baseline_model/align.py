"""The pipeline's alignment stage: coarse alignment, dense flow and the four blending maps.

``docs/method.md`` steps 1-3 and the maps of step 5, built from ``hzsr.qa``'s torch-free primitives
(global translation, DIS flow, warps, map formulas); nothing here re-implements them. What this
module adds is the arrangement that keeps a 12 MP capture cheap:

1. **Coarse.** ``global_translation`` between a small W crop and a small reference gives ``d``
   (``REF(x + d) ~ SRC(x)``). Rather than shift the source image, the W crop rectangle itself is
   moved by ``-d / k`` W pixels, so ``I_src`` is W resampled once (bicubic) onto T's field of view
   and ``uncrop`` is a plain paste at that rectangle.
2. **Dense.** Everything after runs on the flow grid (``qa.align.flow_size``, 512x384): both
   images are area-downscaled to it once, the flow backend computes forward and backward flow
   there, and the maps are computed there. Full resolution is only touched tile by tile when the
   fusion runs (``pipeline.py``), which samples flow and maps bilinearly per tile.
3. **Maps.** ``M_occ`` (forward-backward), ``M_defocus`` (k-means in the AF ROI), ``M_flow``
   (DIS has no uncertainty head: qa's stand-in from the forward-backward error and the local
   flow variance; see docs/model.md) and ``M_reject`` (at W's optical resolution), then
   ``M_blend = max(1 - sum, 0)``, zero wherever the reference has no pixel.

The flow backend is pluggable: ``FLOW_BACKENDS[name](src_y, ref_y, qa_cfg) -> (fwd, bwd)`` on
same-size grid images, flows in grid pixels with qa's convention.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from hzsr.baseline_model.blend import blend_weight
from hzsr.baseline_model.color import match_colour
from hzsr.baseline_model.flow_fusion import fuse_flows
from hzsr.core.geometry import CropRect, intrinsics_matrix
from hzsr.qa.align import (
    GlobalShift,
    crop_w_to_t,
    dense_flow_lowres,
    flow_grid_scale,
    global_translation,
    inframe_mask,
    structure_ncc,
    to_luma,
    warp,
)
from hzsr.qa.config import QAConfig
from hzsr.qa.maps import defocus_map, flow_uncertainty_map, occlusion_map, reject_map

FlowBackend = Callable[[np.ndarray, np.ndarray, QAConfig], tuple[np.ndarray, np.ndarray]]


def _dis_backend(src_y: np.ndarray, ref_y: np.ndarray, cfg: QAConfig) -> tuple[np.ndarray, np.ndarray]:
    fwd, bwd, _ = dense_flow_lowres(src_y, ref_y, cfg)
    return fwd, bwd


FLOW_BACKENDS: dict[str, FlowBackend] = {"dis": _dis_backend}

_DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
                "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def dis_finest_level(w_px_on_grid: float) -> int:
    """The DIS pyramid level to stop refining at: the coarsest whose pixel spans at most one W pixel.

    ``floor(log2(k g))`` (``k g``: flow-grid pixels per W pixel), 0 at least, with 1% of slack so
    that a W pixel of exactly 4 grid pixels (the simulator's 5x phone at 640x480) gets level 2.
    I_src is W upsampled: below a W pixel it has no structure for DIS's patches to match, only
    the reference's detail and noise against W's blur; above it the flow is coarser than W resolves.
    OpenCV's presets stop at level 1 whatever the images.
    """
    return max(0, int(np.floor(np.log2(max(w_px_on_grid, 1e-6) * 1.01))))


def dis_flows(src_y: np.ndarray, ref_y: np.ndarray, cfg: QAConfig, finest: int,
              alpha: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Forward and backward DIS flow (qa's preset, ``cfg.align.dis_preset``) refined down to level ``finest``.

    The same flow as the ``dis`` backend (``qa.align.dense_flow_lowres`` on grid-sized uint8
    lumas) at the preset's own level 1; only the finest level differs, and with ``alpha`` > 0 the
    smoothness weight of DIS's variational refinement (the presets' 20).
    """
    dis = _dis(cfg, finest, alpha)
    return dis.calc(src_y, ref_y, None), dis.calc(ref_y, src_y, None)


def dis_flow_from(src_y: np.ndarray, ref_y: np.ndarray, cfg: QAConfig, finest: int, alpha: float = 0.0,
                  init: np.ndarray | None = None) -> np.ndarray:
    """``dis_flows``' forward flow alone, started from ``init`` (grid px, HxWx2 float32) where given.

    OpenCV's DIS takes a flow passed in of the images' size as its initial flow (``init`` is copied,
    not overwritten); ``init=None`` is ``dis_flows``' forward flow, bit for bit.
    """
    return _dis(cfg, finest, alpha).calc(src_y, ref_y,
                                         None if init is None else np.ascontiguousarray(init, np.float32).copy())


def _dis(cfg: QAConfig, finest: int, alpha: float) -> cv2.DISOpticalFlow:
    """qa's DIS preset (``cfg.align.dis_preset``) stopping at level ``finest``, with ``alpha`` > 0 as
    its variational refinement's smoothness weight (the presets' 20 otherwise)."""
    if cfg.align.dis_preset not in _DIS_PRESETS:
        raise ValueError(f"align.dis_preset: expected one of {', '.join(_DIS_PRESETS)}, got {cfg.align.dis_preset!r}")
    dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[cfg.align.dis_preset])
    dis.setFinestScale(int(finest))
    if alpha > 0:
        dis.setVariationalRefinementAlpha(float(alpha))
    return dis


def blurred_lumas(src_g: np.ndarray, ref_g: np.ndarray, blur_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Both grid images' lumas, blurred with a Gaussian of ``blur_px`` grid pixels (0: as they are).

    What DIS matches where its flow stops at a W pixel of 4 grid pixels or more (``align``'s
    ``flow_blur_px``): there I_src is W upsampled, smooth below a W pixel, while the reference
    carries detail finer than W resolves, and at night 3-5x daylight's noise; DIS's 8-pixel
    patches match that against blur. A quarter of a W pixel of blur on both takes most of it out
    of the match and keeps the structure the two share (docs/model.md, "Blurred lumas for the
    level-2 flow", issue20n).
    """
    src_l, ref_l = to_luma(src_g), to_luma(ref_g)
    if blur_px <= 0:
        return src_l, ref_l
    return cv2.GaussianBlur(src_l, (0, 0), blur_px), cv2.GaussianBlur(ref_l, (0, 0), blur_px)


def flow_blur_w_fraction(w_px_on_grid: float, blend_maps_level: int) -> float:
    """How much of ``flow_blur_px`` applies where DIS stops below ``blend_maps_level``.

    ``flow_blur_px`` is in grid pixels at a W pixel of ``2 ** blend_maps_level`` grid pixels (the
    simulator's 5x at 640x480: 1 grid px, a quarter of a W pixel); a finer level, where a W pixel
    spans ``w_px_on_grid`` grid pixels, gets the same fraction of its W pixel:
    ``w_px_on_grid / 2 ** blend_maps_level``. (At ``blend_maps_level`` itself the blur is not
    scaled: ``flow_blur_px`` wherever a W pixel spans 4-8 grid px, so "the same fraction" holds
    relative to a W pixel of exactly ``2 ** blend_maps_level`` grid px.)

    Capped at 1: a level that ``flow_level_max`` clamped below ``blend_maps_level`` (a W pixel of
    more than ``2 ** blend_maps_level`` grid px run at level 1) never gets more blur than
    ``blend_maps_level`` itself would. Unclamped, DIS stops below ``blend_maps_level`` only where a
    W pixel spans fewer grid px, so the cap changes nothing there.
    """
    return min(1.0, float(w_px_on_grid) / float(2 ** blend_maps_level))


def register_flow_backend(name: str, fn: FlowBackend) -> None:
    """Make ``fn`` available as ``pipeline.flow_backend: <name>`` (e.g. a learned flow net)."""
    FLOW_BACKENDS[name] = fn


@dataclass
class CameraGeometry:
    """What the pipeline needs to know about the two cameras, and where it came from."""

    k_w: np.ndarray  # W intrinsics, pixels of the W image
    k_t: np.ndarray  # T intrinsics, pixels of the reference image
    af_roi: list[float] | None  # [x, y, w, h] in the reference's pixels, or None
    warnings: list[str] = field(default_factory=list)
    source: str = "metadata"  # metadata | --focal-ratio | exif | estimated | assumed (geometry_source.py)

    @property
    def focal_ratio(self) -> float:
        return float(self.k_t[0, 0] / self.k_w[0, 0])


def _intrinsics(frame: dict[str, Any]) -> np.ndarray | None:
    k = frame.get("intrinsics")
    if isinstance(k, dict) and all(n in k for n in ("fx", "fy", "cx", "cy")):
        return intrinsics_matrix(float(k["fx"]), float(k["fy"]), float(k["cx"]), float(k["cy"]))
    if isinstance(k, list | tuple) and len(k) == 4:
        return intrinsics_matrix(*(float(v) for v in k))
    return None


def frames_by_slot(meta: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """A capture's frames keyed by slot, from capture.json (a list) or a shard's meta (a dict)."""
    frames = (meta or {}).get("frames") or {}
    if isinstance(frames, list):
        return {f.get("slot"): f for f in frames if isinstance(f, dict)}
    return dict(frames)


def camera_geometry(meta: dict[str, Any] | None, w_size: tuple[int, int], t_size: tuple[int, int],
                    focal_ratio: float = 5.0, ref_slot: str = "ref_T") -> CameraGeometry:
    """Intrinsics and AF ROI from capture metadata, with warned fallbacks.

    Missing intrinsics: centred principal points and ``focal_ratio`` (the simulator's 5x phone).
    Missing AF ROI: the centre fifth of the frame, as a phone's default AF region.
    """
    frames = frames_by_slot(meta)
    warnings = []
    w_frame, t_frame = frames.get("main_W", {}), frames.get(ref_slot) or frames.get("main_T", {})
    k_w, k_t = _intrinsics(w_frame), _intrinsics(t_frame)
    if k_w is None or k_t is None:
        fx = 0.8 * w_size[0]
        k_w = intrinsics_matrix(fx, fx, (w_size[0] - 1) / 2, (w_size[1] - 1) / 2)
        ft = fx * focal_ratio * t_size[0] / w_size[0]
        k_t = intrinsics_matrix(ft, ft, (t_size[0] - 1) / 2, (t_size[1] - 1) / 2)
        warnings.append(f"no intrinsics in the metadata: assumed a focal ratio of {focal_ratio:g} and centred "
                        "principal points")
        source = "assumed"
    else:
        source = "metadata"
    roi = t_frame.get("af_roi")
    if not (isinstance(roi, list | tuple) and len(roi) == 4 and roi[2] > 0 and roi[3] > 0):
        roi = None
        warnings.append("no AF ROI in the metadata: the defocus map uses the image centre")
    return CameraGeometry(k_w, k_t, list(roi) if roi is not None else None, warnings, source)


def centre_roi(width: int, height: int) -> list[float]:
    return [width * 0.4, height * 0.4, width * 0.2, height * 0.2]


@dataclass
class Alignment:
    """The source on T's field of view, the reference's flow onto it, and the maps (grid scale)."""

    rect: CropRect  # the (shifted) W crop that ``src`` resamples
    src: np.ndarray  # I_src: uint8 RGB, T's size
    ref: np.ndarray  # the reference as given: uint8 RGB, T's size
    shift: GlobalShift  # coarse translation, T pixels
    grid_scale: float  # flow-grid pixels per T pixel
    flow_fwd: np.ndarray  # I_src -> ref, grid HxWx2, grid pixels (residual after the shift)
    flow_bwd: np.ndarray
    colour_gain: np.ndarray  # ref' = gain * ref + offset (RGB in [0, 1])
    colour_offset: np.ndarray
    maps: dict[str, np.ndarray]  # grid float32: occlusion, defocus, uncertainty, reject, valid, blend
    overlap_ncc: float  # structure correlation of I_src and the warped reference (1 = same content)
    use_reference: bool  # False: the reference cannot be trusted anywhere (output = bicubic)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    geometry_source: str = "metadata"  # CameraGeometry.source
    flow_level: int = -1  # the DIS level the flow was refined down to (-1: the backend's own)
    flow_blur_px: float = 0.0  # the Gaussian DIS's lumas were blurred with (grid px; 0: none; ``blurred_lumas``)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return self.flow_fwd.shape[:2]


def _grid(img: np.ndarray, g: float) -> np.ndarray:
    if g >= 1.0:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (max(8, round(w * g)), max(8, round(h * g))), interpolation=cv2.INTER_AREA)


def coarse_align(w_img: np.ndarray, ref: np.ndarray, geom: CameraGeometry, cfg: QAConfig, *,
                 optical: bool = True, min_inliers: int | None = None, verify_ncc: float = 0.4,
                 verify_margin: float = 0.05) -> tuple[np.ndarray, CropRect, GlobalShift, list[str]]:
    """Crop W onto the reference's field of view, shifted by the global translation.

    The translation is estimated on a crop and a reference no larger than qa's
    ``keypoint_long_side`` (``global_translation`` works at that size anyway). With ``optical``
    (the default) keypoints are matched at W's optical scale, ``o = rect.width / ts_width`` W
    pixels per crop pixel (``docs/qa.md``): the crop is W upsampled ``k`` times and looks nothing
    like a sharp T at T's scale, so FAST and ORB would match noise there.

    A shift with fewer than ``min_inliers`` (default ``cfg.align.min_inliers``) inliers is not
    used as it is: of it, the whole image's phase correlation and the best match of the crop's
    centre (``_template_candidate``), the one with the higher
    band-passed structure correlation of the shifted crop and the reference (``structure_ncc``) is
    kept if that correlation reaches ``verify_ncc`` and beats the unshifted crop's by
    ``verify_margin``; otherwise the framing falls back to the intrinsics' crop (``d = 0``), which
    is off by the rig's parallax only, and a warning says so. A wrong shift from a handful of
    chance matches can move the framing by a third of the frame and lose the reference.

    Returns:
        ``(I_src, rect, shift, warnings)``; ``shift`` is the one applied (zero after a fallback)
        and keeps the estimate's inlier and match counts.
    """
    t_size = (ref.shape[1], ref.shape[0])
    small = min(1.0, cfg.align.keypoint_long_side / max(t_size))
    ts = (max(8, round(t_size[0] * small)), max(8, round(t_size[1] * small)))
    k_ts = np.diag([small, small, 1.0]) @ geom.k_t
    crop_small, rect0 = crop_w_to_t(w_img, geom.k_w, k_ts, ts)
    o = min(1.0, rect0.width / ts[0]) if optical else 1.0
    est = global_translation(crop_small, _grid(ref, small), cfg, optical_scale=o)
    shift = GlobalShift(est.dx / small, est.dy / small, est.inliers, est.matches)
    warnings: list[str] = []
    gate = cfg.align.min_inliers if min_inliers is None else min_inliers
    if shift.inliers < gate:
        # Few inliers is common where W's blur leaves few corners (night, flat walls), and the
        # estimate is then often right, or right for one layer only (a near foreground). Keep the
        # candidate - the keypoints' shift, the whole image's phase correlation or the crop centre's
        # best match - under which
        # the images' structures agree best, if they agree clearly better than under the
        # intrinsics' framing: a photometric check that chance matches cannot fake.
        ref_small = _grid(ref, small)
        ncc_0 = _shifted_ncc(crop_small, ref_small, 0.0, 0.0, o)
        cands = [(est.dx, est.dy), _phase_candidate(crop_small, ref_small, o),
                 _template_candidate(crop_small, ref_small, o)]
        ncc_d, (dx, dy) = max(((_shifted_ncc(crop_small, ref_small, cx, cy, o), (cx, cy)) for cx, cy in cands),
                              key=lambda t: t[0])
        if ncc_d >= verify_ncc and ncc_d >= ncc_0 + verify_margin:
            shift = GlobalShift(float(dx) / small, float(dy) / small, est.inliers, est.matches)
        else:
            warnings.append(f"coarse alignment found {shift.inliers} keypoint inliers (< min_inliers {gate}) and "
                            f"no shift makes the images agree clearly (best structure correlation {ncc_d:.2f}, "
                            f"needs >= {verify_ncc:g} and {verify_margin:g} over the unshifted {ncc_0:.2f}): "
                            f"framed by the intrinsics alone")
            shift = GlobalShift(0.0, 0.0, est.inliers, est.matches)
    k = t_size[0] / rect0.width  # T pixels per W pixel at full T size (the crop's width is in W pixels)
    # REF(x + d) ~ CROP(x), so I_src(x) = CROP(x - d): the rectangle moves by -d / k W pixels.
    rect = CropRect(rect0.x0 - shift.dx / k, rect0.y0 - shift.dy / k, rect0.width, rect0.height,
                    t_size[0], t_size[1])
    m = rect.crop_to_w()[:2]
    src = cv2.warpAffine(w_img, m, t_size, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    return src, rect, shift, warnings


def _phase_candidate(crop: np.ndarray, ref: np.ndarray, optical_scale: float) -> tuple[float, float]:
    """``REF(x + d) ~ CROP(x)`` by phase correlation (Hann window) at two pixels per W pixel."""
    g = min(1.0, 2.0 * optical_scale)
    a = to_luma(_grid(crop, g).astype(np.float32) / 255.0)
    b = to_luma(_grid(ref, g).astype(np.float32) / 255.0)
    win = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a - a.mean(), b - b.mean(), win)
    return dx / g, dy / g


def _template_candidate(crop: np.ndarray, ref: np.ndarray, optical_scale: float,
                        margin: float = 0.3) -> tuple[float, float]:
    """``REF(x + d) ~ CROP(x)`` where the crop's centre (``margin`` cut off each side) correlates best.

    Normalised cross-correlation (``cv2.matchTemplate``, ``TM_CCOEFF_NORMED``) of the band-passed
    luminances at two pixels per W pixel, over shifts up to ``margin`` of the frame. Unlike the
    keypoints it weighs every pixel, and unlike the phase correlation it does not need the whole
    frame to move as one: with a near subject and a far background the keypoints may follow the
    subject and the phase correlation neither, while the bulk of the frame still has one shift.
    """
    g = min(1.0, 2.0 * optical_scale)
    a = to_luma(_grid(crop, g).astype(np.float32) / 255.0)
    b = to_luma(_grid(ref, g).astype(np.float32) / 255.0)
    a = a - cv2.GaussianBlur(a, (0, 0), 6.0)
    b = b - cv2.GaussianBlur(b, (0, 0), 6.0)
    h, w = a.shape
    my, mx = round(h * margin), round(w * margin)
    if h - 2 * my < 8 or w - 2 * mx < 8:
        return 0.0, 0.0
    score = cv2.matchTemplate(b, a[my:h - my, mx:w - mx], cv2.TM_CCOEFF_NORMED)
    _, _, _, (x0, y0) = cv2.minMaxLoc(score)
    return (x0 - mx) / g, (y0 - my) / g


def _shifted_ncc(crop: np.ndarray, ref: np.ndarray, dx: float, dy: float, optical_scale: float = 1.0) -> float:
    """``structure_ncc`` of ``REF(x + d)`` and ``CROP(x)`` where both have pixels (same-size images).

    Compared at two pixels per W pixel (``2 * optical_scale`` of the grid), like the keypoints:
    at T's scale the band-pass would keep only detail the upsampled W crop does not have.
    """
    h, w = ref.shape[:2]
    m = np.float32([[1, 0, -dx], [0, 1, -dy]])  # dst(x) = ref(x + d)
    moved = cv2.warpAffine(ref, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
    inside = cv2.warpAffine(np.ones((h, w), np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    g = min(1.0, 2.0 * optical_scale)
    a, b, inside = _grid(crop, g), _grid(moved, g), _grid(inside * 255, g) > 254
    return structure_ncc(to_luma(a.astype(np.float32) / 255.0), to_luma(b.astype(np.float32) / 255.0), inside)


def overlap_ncc(src_y: np.ndarray, ref_y: np.ndarray, valid: np.ndarray, blur_grid_px: float) -> float:
    """The overlap gate's statistic: ``structure_ncc`` of I_src and the warped reference, both low-passed.

    ``blur_grid_px`` is the Gaussian's sigma on the flow grid (``overlap_blur_w_px * k * g``: W pixels
    times grid pixels per W pixel). I_src is W upsampled ``k`` times, so structure_ncc's band above
    W's optics holds only the reference's own detail and noise: they lower a true pair's score (the
    more, the noisier the reference: night) and say nothing about whether the images overlap.
    """
    if blur_grid_px > 0:
        src_y = cv2.GaussianBlur(src_y, (0, 0), blur_grid_px)
        ref_y = cv2.GaussianBlur(ref_y, (0, 0), blur_grid_px)
    return structure_ncc(src_y, ref_y, valid)


def align(w_img: np.ndarray, ref: np.ndarray, geom: CameraGeometry, qa_cfg: QAConfig, *,
          flow_backend: str = "dis", colour: bool = True, use_maps: dict[str, bool] | None = None,
          min_overlap: float = 0.2, min_ncc: float = 0.4, overlap_blur_w_px: float = 0.0,
          flow_level_by_w_px: bool = False, flow_level_max: int = 1, blend_maps_level: int = 2,
          blend_occlusion_scale: float = 0.0, blend_uncertainty_s_max: float = 0.0,
          flow_alpha: float = 0.0, blend_defocus_weight: float = 1.0, flow_blur_px: float = 0.0,
          flow_blur_min_level: int | None = None, flow_fusion: str = "none") -> Alignment:
    """Steps 1-3 and the maps of step 5 for one capture (see the module docstring).

    Where DIS stops at level ``blend_maps_level`` or coarser (``flow_level_by_w_px`` only),
    ``blend_occlusion_scale`` and ``blend_uncertainty_s_max`` (0 = qa's ``occlusion_scale`` and
    ``uncertainty_s_max``) set the ``M_occ`` and ``M_flow`` that enter ``M_blend``
    (``maps["occlusion_blend"]``, ``maps["uncertainty"]``); elsewhere qa's values do.
    ``maps["occlusion"]``, the UNet's input, always uses qa's scale, the one it was trained with.
    ``flow_alpha`` > 0 (``flow_level_by_w_px`` only) is DIS's variational smoothness weight there too,
    and ``M_blend`` takes ``blend_defocus_weight * M_defocus`` there (``maps["defocus"]`` unscaled).
    ``flow_blur_px`` > 0 (``flow_level_by_w_px`` only): DIS runs on lumas blurred by that many grid
    pixels there (``blurred_lumas``); the maps follow the flow, everything else (colour match,
    rejection, the overlap gate, the UNet's input) uses the images as they are.
    ``flow_blur_min_level`` (None: ``blend_maps_level``, i.e. only there): where DIS stops at a level
    from this one up to below ``blend_maps_level``, its lumas are blurred too, by the same fraction of
    a W pixel (``flow_blur_w_fraction``: ``flow_blur_px`` grid px is a quarter of the simulator's
    W pixel of 4 grid px; at most ``flow_blur_px``). A value above ``blend_maps_level`` is the same
    as ``blend_maps_level``: the coarse levels get ``flow_blur_px`` whatever it says.
    ``flow_fusion`` (``flow_level_by_w_px`` only; ``flow_fusion.FUSION_MODES``): other flow hypotheses
    (DIS started from keypoint-displacement modes) fused per pixel into DIS's forward and backward
    flows (``flow_fusion.fuse_flows``); ``"none"`` leaves DIS's flows as they are.
    """
    import time

    if flow_backend not in FLOW_BACKENDS:
        raise ValueError(f"unknown flow backend {flow_backend!r}; known: {', '.join(sorted(FLOW_BACKENDS))}")
    timings: dict[str, float] = {}
    warnings = list(geom.warnings)
    t0 = time.perf_counter()
    src, rect, shift, coarse_warnings = coarse_align(w_img, ref, geom, qa_cfg)
    warnings += coarse_warnings
    timings["coarse_align"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    g = flow_grid_scale(src.shape, qa_cfg)
    src_g, ref_g = _grid(src, g), _grid(ref, g)
    k = geom.focal_ratio  # T pixels per W pixel: each fx is in its own image's pixels
    level = -1  # the backend's own finest level
    flow_blur = 0.0
    if flow_level_by_w_px and flow_backend == "dis":
        level = min(dis_finest_level(k * g), flow_level_max)
        coarse_flow = level >= blend_maps_level
        min_blur_level = blend_maps_level if flow_blur_min_level is None else flow_blur_min_level
        if coarse_flow:
            flow_blur = flow_blur_px
        elif level >= min_blur_level:
            flow_blur = flow_blur_px * flow_blur_w_fraction(k * g, blend_maps_level)
        lumas = blurred_lumas(src_g, ref_g, flow_blur)
        alpha = flow_alpha if coarse_flow else 0.0
        fwd, bwd = dis_flows(*lumas, qa_cfg, level, alpha)
        if flow_fusion != "none":
            def dis_from(a: np.ndarray, b: np.ndarray, init: np.ndarray | None) -> np.ndarray:
                return dis_flow_from(a, b, qa_cfg, level, alpha, init)

            fwd, bwd = fuse_flows(*lumas, fwd, bwd, dis_from, flow_fusion, k * g)
    elif flow_fusion != "none":
        raise ValueError(f"pipeline.flow_fusion {flow_fusion!r} needs flow_backend 'dis' with flow_level_by_w_px")
    else:
        fwd, bwd = FLOW_BACKENDS[flow_backend](to_luma(src_g), to_luma(ref_g), qa_cfg)
    timings["dense_flow"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    gh, gw = fwd.shape[:2]
    valid = inframe_mask(fwd)
    occ = occlusion_map(fwd, bwd, qa_cfg.maps.occlusion_scale)
    warped_g = warp(ref_g, fwd)
    good = valid & (occ < 0.5)
    gain, offset = match_colour(warped_g, src_g, good) if colour else (np.ones(3, np.float32), np.zeros(3, np.float32))
    warped_g = np.clip(warped_g.astype(np.float32) / 255.0 * gain + offset, 0, 1)
    src_y = to_luma(src_g.astype(np.float32) / 255.0)
    ref_y = to_luma(warped_g)
    rej = reject_map(src_y, ref_y, qa_cfg, downscale=min(1.0, 1.0 / (k * g)))
    coarse = level >= blend_maps_level
    occ_blend = occlusion_map(fwd, bwd, blend_occlusion_scale) if coarse and blend_occlusion_scale > 0 else occ
    maps_cfg = replace(qa_cfg.maps, uncertainty_s_max=blend_uncertainty_s_max) \
        if coarse and blend_uncertainty_s_max > 0 else qa_cfg.maps
    unc = flow_uncertainty_map(fwd, bwd, maps_cfg, grid_scale=1.0)
    roi = geom.af_roi
    if roi is None:
        roi_g = centre_roi(gw, gh)
    else:
        # The AF ROI is in the reference's pixels; after coarse alignment I_src and the reference
        # differ only by the residual flow, a few pixels, much less than the ROI.
        roi_g = [v * g for v in roi]
    try:
        # grid_scale 1 / g: the pipeline's gamma and sigma_f are in T pixels (config.pipeline_qa_defaults).
        dfc = defocus_map(fwd, roi_g, qa_cfg, grid_scale=1.0 / g)
    except ValueError:
        dfc = defocus_map(fwd, centre_roi(gw, gh), qa_cfg, grid_scale=1.0 / g)
        warnings.append(f"AF ROI {roi} lies outside the reference: the defocus map uses the image centre")
    maps = {"occlusion": occ, "occlusion_blend": occ_blend, "defocus": dfc, "uncertainty": unc, "reject": rej,
            "valid": valid.astype(np.float32)}
    maps["blend"] = blend_of_maps(maps, use_maps, blend_defocus_weight if coarse else 1.0)
    trusted = float((maps["blend"] > 0.5).mean())
    ncc = overlap_ncc(src_y, ref_y, valid, overlap_blur_w_px * k * g)
    dropped = reference_dropped(ncc, maps["blend"], min_ncc, min_overlap)
    use_ref = dropped is None
    if dropped == "no_overlap":
        warnings.append(f"the reference does not overlap the source (structure correlation {ncc:.2f} < {min_ncc:g}, "
                        f"{shift.inliers} keypoint inliers): output is the bicubic W crop")
    elif dropped == "untrusted":
        warnings.append(f"the reference can be trusted on only {trusted:.0%} of the frame (< {min_overlap:.0%}): "
                        "output is the bicubic W crop")
    timings["maps"] = time.perf_counter() - t0
    return Alignment(rect, src, ref, shift, g, fwd, bwd, gain, offset, maps, ncc, use_ref, warnings, timings,
                     geom.source, level, float(flow_blur))


MAP_NAMES = ("occ", "defocus", "flow", "reject")  # the four maps of M_blend, as ``use_maps`` names them


def reference_dropped(ncc: float, blend: np.ndarray, min_ncc: float, min_overlap: float) -> str | None:
    """Why the reference is not used, or None where it is: ``"no_overlap"`` where the structure
    correlation of the overlap is under ``min_ncc``, ``"untrusted"`` where ``M_blend > 0.5`` on
    less than ``min_overlap`` of the frame. The one rule for the pipeline and its ablations."""
    if ncc < min_ncc:
        return "no_overlap"
    if float((blend > 0.5).mean()) < min_overlap:
        return "untrusted"
    return None


def blend_of_maps(maps: dict[str, np.ndarray], use_maps: dict[str, bool] | None = None,
                  defocus_weight: float = 1.0) -> np.ndarray:
    """``M_blend`` on the flow grid from ``align``'s maps, with the maps of ``use_maps`` switched off.

    ``M_occ`` is ``maps["occlusion_blend"]``, ``M_defocus`` is ``maps["defocus"]`` times
    ``defocus_weight`` (``blend_defocus_weight`` where the flow stops at ``blend_maps_level``, else
    1), ``M_flow`` ``maps["uncertainty"]`` and ``M_reject`` ``maps["reject"]``; zero wherever the
    reference has no pixel (``maps["valid"]``); with every map off, 1 wherever it has one. ``align``
    builds ``maps["blend"]`` with it, and the ablation (``bench/eval_truth.py``) rebuilds it from the
    same maps with some switched off, which is exactly the pipeline run with those ``use_*`` flags.
    """
    use = {name: True for name in MAP_NAMES} | (use_maps or {})
    unknown = set(use) - set(MAP_NAMES)
    if unknown:
        raise ValueError(f"use_maps: unknown map(s) {', '.join(sorted(unknown))}; known: {', '.join(MAP_NAMES)}")
    occ = maps["occlusion_blend"]
    dfc = maps["defocus"] * np.float32(defocus_weight) if defocus_weight != 1.0 else maps["defocus"]
    chosen = {"occ": occ, "defocus": dfc, "flow": maps["uncertainty"], "reject": maps["reject"]}
    on = {name: (m if use[name] else None) for name, m in chosen.items()}
    blend = blend_weight(*on.values()) if any(use.values()) else np.ones_like(occ)
    return np.where(maps["valid"] > 0.5, blend, 0.0).astype(np.float32)


def with_maps(al: Alignment, **maps: np.ndarray) -> Alignment:
    return replace(al, maps={**al.maps, **maps})
