"""The whole HZSR pipeline on one capture: align, fuse in tiles, blend, uncrop.

    I_src, flows, maps = align(W, T_ref)                      (align.py; qa's primitives)
    per tile:  ~I_ref = colour_match(warp(T_ref, F_fwd))       bilinear, full resolution
               Y_fusion = UNet(Y_src, ~Y_ref, M_occ)           (unet.py)
               Y_final = M_blend * Y_fusion + (1 - M_blend) * Y_src
               I_final = RGB(Y_final, U_src, V_src)            colour from the source
    output = uncrop(I_final, W, zoom)                          pasted into the zoomed W frame

Full-resolution float data exists only per tile: flow and maps live on the 512x384 flow grid and
are sampled bilinearly for each tile, so peak memory is the uint8 images plus O(tile^2).
Blending in Y alone is the same as blending RGB, since the chroma of fusion and source are equal.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from hzsr.baseline_model.align import Alignment, align
from hzsr.baseline_model.blend import blend_planes
from hzsr.baseline_model.color import RGB_TO_YUV, YUV_TO_RGB
from hzsr.baseline_model.config import PipelineConfig
from hzsr.baseline_model.denoise import DenoiseSettings, denoise_output, reference_sigma
from hzsr.baseline_model.geometry_source import resolve_geometry
from hzsr.baseline_model.runtime import default_runtime, make_runner
from hzsr.baseline_model.tiling import n_tiles, run_tiled
from hzsr.core.bulkio import release_freed_buffers, reuse_freed_buffers
from hzsr.core.geometry import CropRect

if TYPE_CHECKING:
    from pathlib import Path

    import torch

#: Optional outputs (besides ``final``), all on I_src's grid: what evaluation compares.
EXTRA_OUTPUTS = ("bicubic", "warped_ref", "fusion")


@dataclass
class PipelineResult:
    final: np.ndarray  # uint8 RGB on I_src's grid (T's field of view, T's size)
    alignment: Alignment
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # see EXTRA_OUTPUTS
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tiles: int = 0


def _say(line: str) -> None:
    """One line on stderr (``runtime.default_runtime``'s note that a stale int8 graph was passed over)."""
    import sys

    print(f"hzsr: {line}", file=sys.stderr)


def sample_maps(grid_shape: tuple[int, ...], full_shape: tuple[int, int], y0: int, y1: int, x0: int,
                x1: int) -> tuple[np.ndarray, np.ndarray]:
    """``cv2.remap``'s float maps that sample a grid of ``grid_shape`` (``cv2.resize`` geometry) at
    full-resolution pixels y0:y1, x0:x1: ``x_grid = (x + 0.5) * gw / w - 0.5``, alike for y."""
    gh, gw = grid_shape[:2]
    h, w = full_shape
    xs = ((np.arange(x0, x1, dtype=np.float32) + 0.5) * (gw / w) - 0.5)
    ys = ((np.arange(y0, y1, dtype=np.float32) + 0.5) * (gh / h) - 0.5)
    mx = np.broadcast_to(xs[None, :], (y1 - y0, x1 - x0))
    my = np.broadcast_to(ys[:, None], (y1 - y0, x1 - x0))
    return np.ascontiguousarray(mx), np.ascontiguousarray(my)


def sample_grid(arr: np.ndarray, full_shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Bilinearly sample a grid array (``cv2.resize`` geometry) at full-resolution pixels y0:y1, x0:x1."""
    mx, my = sample_maps(arr.shape, full_shape, y0, y1, x0, x1)
    return cv2.remap(arr, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _yuv(rgb_u8: np.ndarray) -> np.ndarray:
    x = rgb_u8.astype(np.float32)
    x *= 1 / 255.0  # in place: the same float32 products as ``x * (1 / 255)``, one frame fewer
    return cv2.transform(x, RGB_TO_YUV)


def _rgb_u8(yuv: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``clip(RGB(yuv) * 255 + 0.5, 0, 255)`` truncated to uint8, written into ``out`` when given.

    In place on one float frame (the same float32 operations, in the same order, as
    ``np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)``): each fresh temporary of a tile is
    8 MB of pages the kernel faults in and zeroes, which cost more than the arithmetic.
    """
    rgb = cv2.transform(yuv, YUV_TO_RGB)
    rgb *= 255.0
    rgb += 0.5
    np.clip(rgb, 0, 255, out=rgb)
    if out is None:
        return rgb.astype(np.uint8)
    out[...] = rgb  # numpy's unsafe cast: the same truncation as ``astype``
    return out


def _per_channel(v: np.ndarray) -> tuple[float, ...]:
    """A float32 vector (one value per channel) as the scalar OpenCV's per-element operations take.

    ``cv2.multiply`` and ``cv2.add`` with it give numpy's float32 products and sums bit for bit
    (the values are float32 already, so OpenCV's conversion of the scalar to the image's depth is
    exact), in one vectorised pass; numpy broadcasting a 2- or 3-vector over the last axis runs its
    inner loop 2 or 3 elements at a time, about 8x slower on a tile.
    """
    return tuple(float(x) for x in np.asarray(v, np.float32).ravel()) + (0.0,) * (4 - v.size)


def unet_inputs(al: Alignment, wy0: int, wy1: int, wx0: int, wx1: int,
                src_yuv: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The UNet's input on window ``[wy0:wy1, wx0:wx1]`` of I_src's grid, and the warped reference.

    ``src_yuv``, when given, is ``_yuv`` of I_src on the window, already computed (the tiled
    fusion keeps it for its blending); else it is computed here.

    Returns ``(x, ref)``: ``x`` is 3xhxw float32 (Y_src, colour-matched warped Y_ref, M_occ with 1
    where the reference has no pixel); ``ref`` the colour-matched warped reference, hxwx3 in [0, 1].
    Training (``data.py``) builds its inputs with this same function.

    Written for speed (a 12 MP image runs it on 14.6 MP of windows): the reference is warped with
    one two-channel map (``cv2.remap`` reads the same coordinates as from two maps: the same
    pixels), built in place from the sampled flow; the per-channel scales and offsets are
    OpenCV's (``_per_channel``), the colour match runs in place on one frame, and the three planes
    are written straight into ``x`` (no ``np.stack`` copy). The values are those of
    ``ref(x + F * scale) * gain / 255 + offset`` clipped, bit for bit
    (``tests/baseline_model/test_pipeline.py``). The flow is sampled as one two-channel grid, not
    two planes: OpenCV interpolates a one-channel float grid differently (up to 0.05 grid pixels).
    """
    src = al.src
    h, w = src.shape[:2]
    gh, gw = al.grid_shape
    flow_scale = np.array([w / gw, h / gh], np.float32)  # grid px -> T px
    # map(x, y) = (x + F_x * sx, y + F_y * sy): the product first, then the sum, as float32.
    xy = sample_grid(al.flow_fwd, (h, w), wy0, wy1, wx0, wx1)
    xy = cv2.multiply(xy, _per_channel(flow_scale), dst=xy)
    xy[..., 0] += np.arange(wx0, wx1, dtype=np.float32)[None, :]
    xy[..., 1] += np.arange(wy0, wy1, dtype=np.float32)[:, None]
    ref_f = cv2.remap(al.ref, xy, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    del xy
    ref_f = cv2.multiply(ref_f, _per_channel(al.colour_gain / 255.0), dst=ref_f)
    ref_f = cv2.add(ref_f, _per_channel(al.colour_offset), dst=ref_f)
    np.clip(ref_f, 0, 1, out=ref_f)
    x = np.empty((3, wy1 - wy0, wx1 - wx0), np.float32)
    # Y_src: channel 0 of the full 3x3 transform, not a 1x3 one: OpenCV's loops round the two
    # differently (up to 1.2e-7), and the inputs are kept bit-exact.
    x[0] = (_yuv(src[wy0:wy1, wx0:wx1]) if src_yuv is None else src_yuv)[..., 0]
    y_ref = cv2.transform(ref_f, RGB_TO_YUV[:1], dst=x[1])
    if not np.may_share_memory(y_ref, x):  # OpenCV chose its own buffer after all
        x[1] = y_ref.reshape(x.shape[1:])
    m_in = np.maximum(al.maps["occlusion"], 1.0 - al.maps["valid"])  # no reference pixel = occluded
    x[2] = sample_grid(m_in, (h, w), wy0, wy1, wx0, wx1)
    return x, ref_f


class HZSRPipeline:
    """Run the HZSR pipeline with a fusion UNet.

    Args:
        model: a ``FusionUNet`` (or anything with its call signature and ``size_multiple``); None
            when ``runner`` is given.
        cfg: pipeline options; ``None`` for the defaults.
        device: where the UNet runs (``"cpu"``, ``"cuda"``).
        runtime: what runs the UNet (``runtime.RUNTIMES``); ``None`` for the benchmark's choice.
        runner: instead of ``model``, a ready runner (``runtime.graph_runner``: an ONNX runtime on
            the checkpoint's cached graph, no torch in the process) or a ``Future`` of one, so it
            can be built in a thread while the capture is decoded and aligned; ``fuse`` waits for it.
        ckpt: the checkpoint file ``model`` came from, where ``openvino-int8`` finds its int8 graph
            (``runtime.int8_graph``).
    """

    def __init__(self, model: torch.nn.Module | None, cfg: PipelineConfig | None = None, device: str = "cpu",
                 runtime: str | None = None, *, runner: Any = None, ckpt: str | Path | None = None):
        self.cfg = cfg or PipelineConfig()
        if model is None:
            if runner is None or runtime is None:
                raise ValueError("HZSRPipeline: give a model, or a runner and its runtime")
            self.device, self.model, self.runtime = device, None, runtime
            self._runner = runner
            return
        import torch

        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.runtime = runtime or default_runtime(self.device, ckpt, self.cfg, _say)
        self._runner = make_runner(self.model, self.runtime, self.device, ckpt, self.cfg)

    @property
    def runner(self) -> Any:
        """What runs the UNet (waits for it when it is still being built in a thread)."""
        if isinstance(self._runner, Future):
            self._runner = self._runner.result()
        return self._runner

    def align(self, w_img: np.ndarray, ref: np.ndarray, meta: dict[str, Any] | None, *,
              focal_ratio: float | None = None, exif_35mm: tuple[float | None, float | None] = (None, None),
              ) -> Alignment:
        """Steps 1-3 and the maps; the geometry comes from ``geometry_source.resolve_geometry``."""
        c = self.cfg
        for name, img in (("source", w_img), ("reference", ref)):
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"{name}: expected an HxWx3 uint8 RGB image, got "
                                 f"{getattr(img, 'dtype', None)} {getattr(img, 'shape', None)}")
        geom = resolve_geometry(meta, w_img, ref, focal_ratio=focal_ratio, exif_35mm=exif_35mm,
                                assumed_ratio=c.focal_ratio)
        return align(w_img, ref, geom, c.qa, flow_backend=c.flow_backend, colour=c.colour_match,
                     use_maps={"occ": c.use_occ, "defocus": c.use_defocus, "flow": c.use_flow,
                               "reject": c.use_reject}, min_overlap=c.min_overlap, min_ncc=c.min_ncc,
                     overlap_blur_w_px=c.overlap_blur_w_px,
                     flow_level_by_w_px=c.flow_level_by_w_px, flow_level_max=c.flow_level_max,
                     blend_maps_level=c.blend_maps_level, blend_occlusion_scale=c.blend_occlusion_scale,
                     blend_uncertainty_s_max=c.blend_uncertainty_s_max, flow_alpha=c.flow_alpha,
                     blend_defocus_weight=c.blend_defocus_weight, flow_blur_px=c.flow_blur_px,
                     flow_blur_min_level=c.flow_blur_min_level, flow_fusion=c.flow_fusion_used())

    def fuse(self, al: Alignment, extras: tuple[str, ...] = ()) -> PipelineResult:
        """Fuse an aligned capture in tiles; ``extras`` names optional outputs from EXTRA_OUTPUTS."""
        for e in extras:
            if e not in EXTRA_OUTPUTS:
                raise ValueError(f"unknown extra output {e!r}; known: {', '.join(EXTRA_OUTPUTS)}")
        t0 = time.perf_counter()
        src = al.src
        h, w = src.shape[:2]
        out: dict[str, np.ndarray] = {"bicubic": src} if "bicubic" in extras else {}
        if not al.use_reference:
            final = src.copy()
            for e in extras:
                out[e] = src
            final, td = self._denoise(final, al)
            timings = {**al.timings, "fusion": time.perf_counter() - t0, "fusion_colour": 0.0, "fusion_unet": 0.0,
                       "fusion_blend": 0.0, "denoise": td}
            return PipelineResult(final, al, out, timings, list(al.warnings), 0)
        final = np.empty_like(src)
        if "fusion" in extras:
            out["fusion"] = np.empty_like(src)
        if "warped_ref" in extras:
            out["warped_ref"] = np.empty_like(src)
        cache: dict[tuple[int, int, int, int], np.ndarray] = {}
        yuv_of: dict[tuple[int, int, int, int], np.ndarray] = {}  # each window's I_src YUV, until blended

        spent = {"fusion_colour": 0.0, "fusion_unet": 0.0, "fusion_blend": 0.0}
        lock = threading.Lock()  # tiles may run in parallel threads (the runner's tiles_in_flight)

        def add(key: str, t: float) -> None:
            with lock:
                spent[key] += time.perf_counter() - t

        def make_input(wy0: int, wy1: int, wx0: int, wx1: int) -> np.ndarray:
            t = time.perf_counter()
            yuv_w = _yuv(src[wy0:wy1, wx0:wx1])
            x, ref_f = unet_inputs(al, wy0, wy1, wx0, wx1, src_yuv=yuv_w)
            with lock:
                yuv_of[(wy0, wy1, wx0, wx1)] = yuv_w
            if "warped_ref" in out:  # else not kept: 8 MB a tile in flight
                cache[(wy0, wy1, wx0, wx1)] = ref_f
            add("fusion_colour", t)
            return x

        def consume(y0: int, y1: int, x0: int, x1: int, y_fus: np.ndarray, win: tuple[int, int, int, int]) -> None:
            t = time.perf_counter()
            # The window's YUV from make_input, cut to the core, rather than the core's own: one
            # uint8->float conversion and 3x3 transform of each core fewer (~0.13 CPU-s at 12 MP).
            # OpenCV's vector loops round a pixel differently by its place in the row (up to 6e-8),
            # which moves a rare output byte by one (docs/benchmarks.md, issue19x second pass).
            with lock:
                yuv_w = yuv_of.pop(win)
            yuv = yuv_w[y0 - win[0] : y1 - win[0], x0 - win[2] : x1 - win[2]]
            wb = sample_grid(al.maps["blend"], (h, w), y0, y1, x0, x1)
            y_src = yuv[..., 0].copy()
            if "fusion" in out:
                yuv[..., 0] = y_fus
                _rgb_u8(yuv, out["fusion"][y0:y1, x0:x1])
            yuv[..., 0] = blend_planes(y_fus, y_src, wb)
            _rgb_u8(yuv, final[y0:y1, x0:x1])
            if "warped_ref" in out:
                ref_f = cache.pop(win)
                ry, rx = y0 - win[0], x0 - win[2]
                core = ref_f[ry : ry + (y1 - y0), rx : rx + (x1 - x0)]
                valid = sample_grid(al.maps["valid"], (h, w), y0, y1, x0, x1)[..., None] > 0.5
                out["warped_ref"][y0:y1, x0:x1] = np.where(valid, np.clip(core * 255 + 0.5, 0, 255).astype(np.uint8),
                                                           src[y0:y1, x0:x1])
            add("fusion_blend", t)

        # The output denoiser's noise estimate of the reference, here, before the heap is trimmed
        # below: measured after the tiles, its 70 MB of temporaries came from freshly trimmed pages
        # and cost 0.2-0.5 CPU-s of faults on the serial tail, against 0.02-0.13 here (issue19wall).
        t = time.perf_counter()
        ref_sigma = self.reference_sigma(al.ref)
        spent["denoise"] = time.perf_counter() - t
        runner = self.runner
        # Alignment's full-frame temporaries leave freed pages in the main thread's heap, which the
        # tile workers' own heaps cannot reuse: handing them back keeps them out of the peak.
        release_freed_buffers()
        # Then keep each tile's freed temporaries (8 MB planes) for the next tile instead of
        # returning them: glibc's dynamic thresholds trimmed and re-faulted them on almost every
        # tile, and faulting in and zeroing fresh pages cost a 12 MP image about 0.3 CPU-s of
        # colour and blending, more than their arithmetic (docs/benchmarks.md, issue19x).
        # Trimmed again below, once the tiles are done.
        reuse_freed_buffers()

        class _Timed:
            takes_numpy = getattr(runner, "takes_numpy", False)  # numpy in and out: no torch

            def eval(self) -> _Timed:
                return self

            def __call__(self, x: Any) -> Any:
                t = time.perf_counter()
                y = runner(x)
                add("fusion_unet", t)
                return y

        try:
            multiple = getattr(runner, "size_multiple", None) or getattr(self.model, "size_multiple", 16)
            tiles = run_tiled(_Timed(), h, w, make_input, consume, tile=self.cfg.tile, halo=self.cfg.halo,
                              multiple=multiple, device=self.device, workers=getattr(runner, "tiles_in_flight", 1))
        finally:
            # The tiles' temporaries, kept for reuse while they ran. The thresholds stay set for the
            # process (glibc's own default is a threshold that rises with use, which mallopt cannot
            # restore): a later large temporary stays in the heap until the next trim, at the
            # latest this call's next run.
            release_freed_buffers()
        if "bicubic" in extras:
            out["bicubic"] = src
        final, td = self._denoise(final, al, ref_sigma)
        spent["denoise"] += td
        # fusion = colour (warp, colour match, YUV) + unet + blend (and blend's YUV->RGB) + tiling
        timings = {**al.timings, "fusion": time.perf_counter() - t0, **spent}
        return PipelineResult(final, al, out, timings, list(al.warnings), tiles)

    def _denoise_settings(self) -> DenoiseSettings:
        return DenoiseSettings(min_sigma=self.cfg.denoise_min_sigma, strength=self.cfg.denoise_strength)

    def reference_sigma(self, ref: np.ndarray) -> float:
        """The reference's noise sigma that the output denoiser acts on (``denoise.reference_sigma``)."""
        return reference_sigma(ref, self._denoise_settings())

    def _denoise(self, final: np.ndarray, al: Alignment, ref_sigma: float | None = None) -> tuple[np.ndarray, float]:
        """The output denoiser (``denoise.py``), on when the reference's measured noise (``ref_sigma``:
        ``reference_sigma``, measured here when None) says so; its seconds."""
        t = time.perf_counter()
        final, _ = denoise_output(final, al.ref, self._denoise_settings(), ref_sigma)
        return final, time.perf_counter() - t

    def run(self, w_img: np.ndarray, ref: np.ndarray, meta: dict[str, Any] | None = None,
            extras: tuple[str, ...] = (), **geometry: Any) -> PipelineResult:
        """Align and fuse; ``geometry`` (``focal_ratio``, ``exif_35mm``) goes to ``align``."""
        return self.fuse(self.align(w_img, ref, meta, **geometry), extras)

    def expected_tiles(self, t_size: tuple[int, int]) -> int:
        return n_tiles(t_size[1], t_size[0], self.cfg.tile)


def zoom_affine(w_size: tuple[int, int], zoom: float) -> np.ndarray:
    """3x3 affine taking output pixels to W pixels for a centred digital zoom of W at ``zoom``."""
    ww, hw = w_size
    cx, cy = (ww - 1) / 2, (hw - 1) / 2
    return np.array([[1 / zoom, 0, cx - cx / zoom], [0, 1 / zoom, cy - cy / zoom], [0, 0, 1]], np.float64)


def _warp_window(img: np.ndarray, m: np.ndarray, x0: int, y0: int, x1: int, y1: int, interp: int) -> np.ndarray:
    """``img`` through the output->input affine ``m``, rendered only for output pixels [y0:y1, x0:x1]."""
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)
    return cv2.warpAffine(img, (m @ shift)[:2], (x1 - x0, y1 - y0), flags=interp | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def uncrop_is_identity(w_shape: tuple[int, ...], fused_shape: tuple[int, ...], rect: CropRect, zoom: float) -> bool:
    """Whether ``uncrop`` returns the fused image as it is: ``zoom`` is the focal ratio, same size as W."""
    k = rect.scale
    return abs(zoom - k) <= 1e-4 * k and tuple(fused_shape[:2]) == tuple(w_shape[:2])


def uncrop(w_img: np.ndarray, fused: np.ndarray, rect: CropRect, zoom: float) -> np.ndarray:
    """Paste the fused T-field-of-view image into W digitally zoomed by ``zoom`` (W's size).

    Output pixel ``u`` shows W at ``zoom_affine @ u`` (bicubic); inside the rectangle the fused
    image covers, it shows the fused image instead, through ``inv(crop_to_w) @ zoom_affine``
    (area-averaged first when it is shown smaller). At ``zoom`` equal to the focal ratio the
    output is T's field of view itself, so the fused image itself is returned: resampling it by
    the coarse shift's sub-pixel remainder would only blur the detail just transferred.
    Only the pixels shown are rendered: the fused rectangle, and W in the strips around it.
    """
    hw, ww = w_img.shape[:2]
    k = rect.scale
    if not 1.0 <= zoom <= k * 1.0001:
        raise ValueError(f"zoom {zoom:g} must be between 1 and the focal ratio {k:.2f}")
    if uncrop_is_identity(w_img.shape, fused.shape, rect, zoom):
        return fused  # not a copy: a full frame more at the memory peak (144 MB at 48 MP)
    a = zoom_affine((ww, hw), zoom)
    pre = k / zoom  # fused pixels per output pixel
    f = fused
    if pre >= 1.5:  # area-average first against aliasing
        f = cv2.resize(fused, (max(1, round(fused.shape[1] / pre)), max(1, round(fused.shape[0] / pre))),
                       interpolation=cv2.INTER_AREA)
    sx, sy = fused.shape[1] / f.shape[1], fused.shape[0] / f.shape[0]
    f_to_c = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    m = np.linalg.inv(rect.crop_to_w() @ f_to_c) @ a  # output -> f pixels
    # Output pixels whose whole bilinear footprint lies inside f: an axis-aligned box (the map is
    # a scale and a translation).
    inv = np.linalg.inv(m)
    (ox0, oy0), (ox1, oy1) = ((inv @ np.array([x, y, 1.0]))[:2] for x, y in ((0, 0), (f.shape[1] - 1, f.shape[0] - 1)))
    bx0, by0 = max(0, int(np.ceil(ox0))), max(0, int(np.ceil(oy0)))
    bx1, by1 = min(ww, int(np.floor(ox1)) + 1), min(hw, int(np.floor(oy1)) + 1)
    out = np.empty_like(w_img)
    if bx1 <= bx0 or by1 <= by0:
        return _warp_window(w_img, a, 0, 0, ww, hw, cv2.INTER_CUBIC)
    out[by0:by1, bx0:bx1] = _warp_window(f, m, bx0, by0, bx1, by1, cv2.INTER_LINEAR)
    for x0, y0, x1, y1 in ((0, 0, ww, by0), (0, by1, ww, hw), (0, by0, bx0, by1), (bx1, by0, ww, by1)):
        if x1 > x0 and y1 > y0:
            out[y0:y1, x0:x1] = _warp_window(w_img, a, x0, y0, x1, y1, cv2.INTER_CUBIC)
    return out
