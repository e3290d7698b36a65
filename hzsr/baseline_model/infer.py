"""``hzsr model infer``: one capture (W + reference T) to a full-resolution image.

Stages, each timed: ``decode`` (both JPEGs), ``coarse_align``, ``dense_flow``, ``maps``,
``fusion`` (tile by tile; split into ``fusion_colour``: warp, colour match and YUV of the inputs,
``fusion_unet``: the network, ``fusion_blend``: blending and back to RGB), ``uncrop`` (paste into
the zoomed W frame), ``encode``. ``runtime`` and ``threads`` say what ran the UNet. ``OUT.json``
beside the image holds the timings, the warnings (missing AF ROI or intrinsics, a reference that
does not overlap) and the geometry. Bad input is one line naming the file: an unreadable image or
checkpoint, broken metadata.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hzsr.core.errors import ConfigError, ModelError
from hzsr.core.fileio import atomic_write_bytes, atomic_write_json
from hzsr.core.imageio import check_image_size

#: OpenCV's flag to decode to RGB order (OpenCV >= 4.10); None on older versions (BGR, then converted).
_IMREAD_RGB: int | None = getattr(cv2, "IMREAD_COLOR_RGB", None)


def read_rgb(path: str | Path, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise ConfigError("file not found", file=p, field=what, unreadable=True)
    check_image_size(p, field=what)  # size before decode (hzsr.core.imageio): a 400 MP header is refused, not decoded
    if _IMREAD_RGB is not None:  # decoded straight to RGB: no BGR frame to convert (same pixels)
        img = cv2.imread(str(p), _IMREAD_RGB)
    else:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        img = None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img is None:
        raise ConfigError("not a readable image", file=p, field=what, unreadable=True)
    return img


def read_meta(path: str | Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    p = Path(path)
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("file not found", file=p, field="--meta") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"not readable JSON ({str(exc).splitlines()[0][:80]})", file=p, field="--meta") from None
    if not isinstance(meta, dict):
        raise ConfigError("expected a JSON object (capture.json)", file=p, field="--meta")
    return meta


def encode(path: Path, rgb: np.ndarray) -> None:
    ext = path.suffix.lower()
    if ext not in (".png", ".jpg", ".jpeg"):
        raise ConfigError("output must end in .png, .jpg or .jpeg", file=path, field="--out")
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1] if ext == ".png" else [cv2.IMWRITE_JPEG_QUALITY, 95]
    if rgb.flags.writeable and rgb.flags.c_contiguous:
        # RGB -> BGR in place and back after, rather than a converted copy: the copy would be one
        # more full frame at the run's memory peak (144 MB at 48 MP).
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=rgb)
        try:
            ok, buf = cv2.imencode(ext, rgb, params)
        finally:
            cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB, dst=rgb)
    else:
        ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ModelError("image encoding failed", file=path)
    atomic_write_bytes(path, buf.tobytes())


def save_maps(folder: Path, res: Any) -> list[str]:
    """The four maps, M_blend and the validity mask (flow grid, 8-bit) and the intermediate images."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, m in res.alignment.maps.items():
        p = folder / f"{name}.png"
        atomic_write_bytes(p, cv2.imencode(".png", np.clip(m * 255 + 0.5, 0, 255).astype(np.uint8))[1].tobytes())
        written.append(str(p))
    images = {"source_bicubic": res.alignment.src, "final": res.final, **res.extras}
    for name, img in images.items():
        if name == "bicubic":
            continue
        p = folder / f"{name}.png"
        encode(p, img)
        written.append(str(p))
    return written


def _threads_now() -> int:
    """Tiles in flight when the caller did not say: torch's thread count if torch is loaded (the thread
    policy set it), else the ``OMP_NUM_THREADS`` the policy set, else 1."""
    import os
    import sys

    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS") or 1))
    except ValueError:
        return 1


def infer(source: str | Path, ref: str | Path, out: str | Path, *, ckpt: str | Path | None = None,
          meta: str | Path | None = None, zoom: float | None = None, save_maps: str | Path | None = None,
          device: str = "cpu", tile: int | None = None, halo: int | None = None,
          focal_ratio: float | None = None, runtime: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Run the pipeline on one capture and write ``out`` and ``out``.json; returns what it wrote.

    With an ONNX runtime (OpenVINO, ONNX Runtime: the CPU default) and the checkpoint's graph in the
    cache (``runtime.checkpoint_graph``, keyed by the checkpoint file's bytes), torch is not imported
    at all, and the runtime is built in a thread while both JPEGs are decoded and the capture is
    aligned. ``threads``: tiles in flight (default: the thread policy's count, ``_threads_now``).
    """
    import dataclasses

    from hzsr.baseline_model.checkpoint import shipped_checkpoint_path
    from hzsr.baseline_model.config import pipeline_config_of
    from hzsr.baseline_model.pipeline import HZSRPipeline, _say, uncrop, uncrop_is_identity
    from hzsr.baseline_model.runtime import checkpoint_graph, default_runtime, graph_runner, int8_check

    out = Path(out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise ConfigError("output must end in .png, .jpg or .jpeg", file=out, field="--out")
    if tile is not None and (tile < 16 or tile % 16):
        raise ConfigError("must be a multiple of 16", field="--tile")
    t_all = time.perf_counter()
    threads = threads or _threads_now()
    ckpt_path = Path(ckpt) if ckpt is not None else shipped_checkpoint_path()
    rt = runtime or default_runtime(device)  # int8 is weighed below, with the checkpoint's pipeline
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hzsr-infer")  # runtime, 2 decodes, EXIF
    try:
        t0 = time.perf_counter()
        if rt == "torch":
            from hzsr.baseline_model.checkpoint import load_model

            lc = load_model(ckpt_path)
            raw_pipeline, model, runner, graph_cached = lc.pipeline, lc.model, None, None
        else:
            # The checkpoint's ONNX graph: from the cache without torch, else exported (and cached).
            graph = checkpoint_graph(ckpt_path)
            raw_pipeline, model, graph_cached = graph.pipeline, None, graph.cached
            base_cfg = pipeline_config_of(raw_pipeline, str(ckpt_path))
            if runtime is None:  # the int8 graph where it is current and suits the CPU; a stale one is said
                rt = default_runtime(device, ckpt_path, base_cfg, _say)
            int8, why = int8_check(ckpt_path, base_cfg) if rt == "openvino-int8" else (None, "")
            if rt == "openvino-int8" and int8 is None:
                raise ConfigError(f"its int8 graph (CKPT.int8.xml) is {why}: make one with hzsr model quantize",
                                  file=ckpt_path, field="--runtime")

            def build() -> Any:
                t = time.perf_counter()
                r = graph_runner(graph.onnx, graph.size_multiple, rt, threads, int8)
                r.build_s = time.perf_counter() - t
                return r

            # Built (OpenVINO: import, compile, one warm-up inference) beside the decoding and alignment.
            runner = pool.submit(build)
        cfg = pipeline_config_of(raw_pipeline, str(ckpt_path))
        if tile is not None:
            cfg = dataclasses.replace(cfg, tile=tile)
        if halo is not None:
            cfg = dataclasses.replace(cfg, halo=max(0, halo))
        t_load = time.perf_counter() - t0
        from hzsr.qa.pair_geometry import exif_focal_35mm

        # EXIF's 35 mm focal lengths (used only where the metadata has no intrinsics: geometry_source's
        # order of trust), read in a thread: it imports PIL (30-70 ms), beside the decoding.
        exif_f = pool.submit(lambda: (exif_focal_35mm(source), exif_focal_35mm(ref)))
        t0 = time.perf_counter()
        # Both JPEGs at once (OpenCV's decoder releases the GIL); errors still name SOURCE first.
        w_img, r_img = pool.map(read_rgb, (source, ref), ("SOURCE", "--ref"))  # holds no image after
        capture = read_meta(meta)
        t_decode = time.perf_counter() - t0
        if model is not None:
            import torch

            torch.set_num_threads(threads)
            pipe = HZSRPipeline(model, cfg, device, rt)
        else:
            pipe = HZSRPipeline(None, cfg, device, rt, runner=runner)
        if capture is None:
            capture = {}
        exif = exif_f.result()
        al = pipe.align(w_img, r_img, capture, focal_ratio=focal_ratio, exif_35mm=exif)
        k = al.rect.scale
        z = k if zoom is None else float(zoom)
        if not 1.0 <= z <= k * 1.0001:
            raise ConfigError(f"zoom {z:g} must be between 1 and the focal ratio {k:.2f}", field="--zoom")
        w_shape = w_img.shape
        if uncrop_is_identity(w_shape, al.src.shape, al.rect, z):
            # W is not shown (the output is T's field of view itself): not held through the tiles,
            # where the memory peak is (144 MB at 48 MP).
            w_img = None
        t0 = time.perf_counter()
        runner = pipe.runner  # built in its thread meanwhile: what is left of it is waited for here
        t_wait = time.perf_counter() - t0
        res = pipe.fuse(al, extras=("warped_ref", "fusion") if save_maps else ())
        t0 = time.perf_counter()
        final = res.final if w_img is None else uncrop(w_img, res.final, al.rect, z)
        t_uncrop = time.perf_counter() - t0
        t0 = time.perf_counter()
        out.parent.mkdir(parents=True, exist_ok=True)
        encode(out, final)
        t_encode = time.perf_counter() - t0
        timings = {"load_model": t_load, "decode": t_decode, **res.timings, "uncrop": t_uncrop, "encode": t_encode,
                   # building the runtime (in its thread, beside decode and alignment) and the wait for it
                   "runtime_build": getattr(runner, "build_s", 0.0), "runtime_wait": t_wait}
        timings["total"] = time.perf_counter() - t_all
        files = [str(out)]
        if save_maps:
            files += save_maps_fn(Path(save_maps), res)
        info = {
            "source": str(source), "ref": str(ref), "meta": str(meta) if meta else None, "checkpoint": str(ckpt_path),
            "output": str(out), "output_size": [int(final.shape[1]), int(final.shape[0])], "zoom": z,
            "focal_ratio": k, "used_reference": al.use_reference, "warnings": res.warnings,
            "geometry": {"source": al.geometry_source, "focal_ratio": k,
                         "exif_focal_35mm": {"source": exif[0], "ref": exif[1]}},
            # the DIS level the flow stopped at and the blur its lumas got there (config flow_blur_px at
            # blend_maps_level or coarser, the same fraction of a W pixel from flow_blur_min_level up):
            # what a reader needs to compare two outputs
            "flow": {"level": al.flow_level, "blur_grid_px": al.flow_blur_px},
            "shift_px": [al.shift.dx, al.shift.dy], "shift_inliers": al.shift.inliers,
            "crop_rect_w_px": [al.rect.x0, al.rect.y0, al.rect.width, al.rect.height],
            "tiles": res.tiles, "tile": cfg.tile, "halo": cfg.halo, "runtime": pipe.runtime,
            "runtime_precision": getattr(pipe.runner, "precision", None),  # OpenVINO: what the CPU ran
            # OpenVINO: the compiled model came from the cache (hit), was compiled (miss), replaced an
            # entry that failed a check (rebuilt), or the CPU could not be identified (off)
            "runtime_cache": getattr(pipe.runner, "cache", None),
            "threads": threads, "graph_cached": graph_cached,
            "blend_mean": float(al.maps["blend"].mean()), "timings_s": timings,
        }
        side = out.with_suffix(out.suffix + ".json")
        atomic_write_json(side, info)
        files.append(str(side))
        return {**info, "files": files}
    finally:
        pool.shutdown(wait=True)

save_maps_fn = save_maps
