"""Training and evaluation data: per-capture alignment (cached once) and random patches.

Pairing (``docs/method.md``, step 6):

- **source** ``Y_src``: main W, cropped to T's field of view and coarse-aligned (``align.py``);
- **reference** ``~Y_ref``: the second phone's T warped onto the source, colour-matched, exactly
  as inference builds it (``pipeline.unet_inputs``), with ``M_occ``;
- **target** ``Y_tgt``: the main phone's T registered onto the source with qa's
  ``register_pair`` (its own global shift and DIS flow), then matched in per-channel mean and
  variance to the source, so brightness and colour are the source's;
- **loss mask**: where that registration can be trusted (``x + F`` inside main T,
  ``M_occ < 0.5`` and ``M_reject < 0.5`` of the target against the source).

With ``data.target: ideal`` the target is instead the simulator's ideal target stored in the
shard (``dataset pack --truth``), put on ``I_src``'s grid and colour-matched exactly as
``bench/eval_truth.py`` scores (``ideal_target.ideal_on_source``), and the loss mask is every pixel
it covers: occluded and defocused pixels included, where the main T would teach the network to
copy the reference's defects.

Alignment runs once per capture and is cached as one float16 ``.npy`` (channels y_src, y_ref,
m_occ, y_tgt, mask) that DataLoader workers memory-map, so a training step only slices arrays.
The cache key includes a hash of the pipeline config: change the alignment and it is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hzsr.baseline_model.align import Alignment
from hzsr.baseline_model.color import match_colour
from hzsr.baseline_model.config import INFERENCE_ONLY_FIELDS, PipelineConfig, pipeline_payload
from hzsr.core.fileio import apply_umask
from hzsr.core.schema import to_plain

CHANNELS = ("y_src", "y_ref", "m_occ", "y_tgt", "mask")


@dataclass
class Target:
    """The main T, registered onto I_src and colour-matched to it."""

    rgb: np.ndarray  # uint8 HxWx3 on I_src's grid
    y: np.ndarray  # float32 luminance in [0, 1]
    mask: np.ndarray  # bool: the registration can be trusted here


def make_target(al: Alignment, main_t: np.ndarray, cfg: PipelineConfig, focal_ratio: float) -> Target:
    """Register ``main_t`` onto ``al.src`` (qa's ``register_pair``) and colour-match it to the source."""
    from hzsr.baseline_model.color import luma, to_uint8
    from hzsr.qa.register import register_pair

    if main_t.shape != al.src.shape:
        raise ValueError(f"main_T {main_t.shape} and the source grid {al.src.shape} differ in size")
    reg = register_pair(al.src, main_t, cfg.qa, optical_scale=1.0 / max(focal_ratio, 1.0))
    mask = reg.valid & (reg.occlusion < 0.5) & (reg.reject < 0.5)
    gain, offset = match_colour(reg.warped_ref, al.src, mask)
    rgb = to_uint8(reg.warped_ref.astype(np.float32) / 255.0 * gain + offset)
    return Target(rgb, luma(rgb), mask)


def make_ideal_target(al: Alignment, truth: Any) -> Target:
    """The ideal target of a capture's truth (``truth_arrays.CaptureTruth``) on ``al.src``'s grid."""
    from hzsr.baseline_model.ideal_target import ideal_on_source

    a = truth.arrays
    t = ideal_on_source(al, a["ideal_T"], a["valid_ref_T"], a["defocus_sigma_ref_T"], truth.crop_rect)
    return Target(t.rgb, t.y, t.inside)


def resolve_target(reader: Any, ids: list[str], target: str) -> str:
    """``main_T`` or ``ideal`` for ``data.target`` over the captures ``ids``.

    Raises:
        ConfigError: ``ideal`` asked for and a capture carries no truth (one line naming its shard).
    """
    from hzsr.core.errors import ConfigError

    if target == "main_T":
        return target
    missing = [cid for cid in ids if not reader.meta(cid).get("truth")]
    if target == "auto":
        return "main_T" if missing or not ids else "ideal"
    if missing:
        shard = reader.shard_root / "shards" / reader.shard_of(missing[0])
        raise ConfigError(f"{len(missing)} of {len(ids)} captures carry no ideal target (first: {missing[0]}); "
                          "pack the sessions with `hzsr dataset pack --truth`, or set data.target: main_T",
                          file=shard, field="data.target")
    return target


#: The inference-only fields ``DataConfig.level2_flow`` aligns training captures with: the flow's
#: smoothness and blur, and the levels from which they apply (``align.align``'s ``blend_maps_level``, and
#: ``flow_blur_min_level`` for the blur at the finer levels).
LEVEL2_FLOW_FIELDS = ("flow_alpha", "flow_blur_px", "blend_maps_level", "flow_blur_min_level")


def config_key(cfg: PipelineConfig, level2_flow: bool = False, fused_flow: bool = False) -> str:
    """Short hash of everything in the pipeline config that changes the cached arrays.

    ``level2_flow`` (``DataConfig.level2_flow``): the cache aligns with ``LEVEL2_FLOW_FIELDS`` as
    well, so they enter the key; off, the key is the one caches always had. ``fused_flow``
    (``DataConfig.fused_flow``): the same for ``flow_fusion``.
    """
    plain = pipeline_payload(to_plain(cfg))
    kept = LEVEL2_FLOW_FIELDS if level2_flow else ()
    for k in INFERENCE_ONLY_FIELDS:
        if k not in kept:
            plain.pop(k, None)
    if level2_flow:
        plain["level2_flow"] = True
    if fused_flow:
        plain["flow_fusion"] = cfg.flow_fusion_used()
        plain["fused_flow"] = True
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:12]


def cache_name(capture_id: str) -> str:
    return capture_id.replace("/", "__") + ".npy"


def prepare_capture(sample: Any, cfg: PipelineConfig, truth: Any = None, *,
                    level2_flow: bool = False, fused_flow: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Align one ``CaptureSample``; returns the 5xHxW float16 stack and facts for the cache index.

    With ``truth`` (the capture's ``truth_arrays.CaptureTruth``) the target is the ideal one. With
    ``level2_flow`` the alignment also takes ``LEVEL2_FLOW_FIELDS`` (the flow's smoothness and blur and
    the level they apply from), as inference does (the UNet's inputs are then the pipeline's own, bit for bit).
    With ``fused_flow`` it also takes ``flow_fusion`` (other flow hypotheses fused into DIS's, issue20epic).
    """
    from hzsr.baseline_model.align import align, camera_geometry
    from hzsr.baseline_model.pipeline import unet_inputs

    if sample.ref_T is None:
        raise ValueError(f"{sample.capture_id}: no reference frame")
    w_img, ref, main_t = sample.main_W, sample.ref_T, sample.main_T
    geom = camera_geometry(sample.meta, (w_img.shape[1], w_img.shape[0]), (ref.shape[1], ref.shape[0]),
                           cfg.focal_ratio)
    al = align(w_img, ref, geom, cfg.qa, flow_backend=cfg.flow_backend, colour=cfg.colour_match,
               use_maps={"occ": cfg.use_occ, "defocus": cfg.use_defocus, "flow": cfg.use_flow,
                         "reject": cfg.use_reject}, min_overlap=cfg.min_overlap, min_ncc=cfg.min_ncc,
               overlap_blur_w_px=cfg.overlap_blur_w_px,
               flow_level_by_w_px=cfg.flow_level_by_w_px, flow_level_max=cfg.flow_level_max,
               **({k: getattr(cfg, k) for k in LEVEL2_FLOW_FIELDS} if level2_flow else {}),
               **({"flow_fusion": cfg.flow_fusion_used()} if fused_flow else {}))
    h, w = al.src.shape[:2]
    x, _ = unet_inputs(al, 0, h, 0, w)
    tgt = make_target(al, main_t, cfg, geom.focal_ratio) if truth is None else make_ideal_target(al, truth)
    stack = np.concatenate([x, tgt.y[None], tgt.mask[None].astype(np.float32)]).astype(np.float16)
    info = {"capture_id": sample.capture_id, "height": h, "width": w, "valid_frac": float(tgt.mask.mean()),
            "use_reference": al.use_reference, "warnings": al.warnings,
            "target": "main_T" if truth is None else "ideal"}
    return stack, info


def build_cache(reader: Any, ids: list[str], cfg: PipelineConfig, cache_dir: str | Path, *,
                target: str = "main_T", progress: bool = True, level2_flow: bool = False,
                fused_flow: bool = False) -> list[Path]:
    """Make (or reuse) the cached arrays of ``ids``; returns their paths in order.

    Idempotent and crash-safe: each file is written to a temp name and renamed, under a folder
    named by ``config_key(cfg)`` (and ``-ideal`` for the ideal target, ``target`` as
    ``resolve_target`` gives it), so a half-built cache resumes and a changed config never reads
    stale arrays.
    """
    import os
    import tempfile

    from tqdm import tqdm

    root = Path(cache_dir) / (config_key(cfg, level2_flow, fused_flow) + ("-ideal" if target == "ideal" else ""))
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for cid in tqdm(ids, desc="align (cache)", disable=not progress, leave=False):
        p = root / cache_name(cid)
        if not p.exists():
            truth = reader.truth(cid) if target == "ideal" else None
            stack, info = prepare_capture(reader.read(cid), cfg, truth, level2_flow=level2_flow,
                                          fused_flow=fused_flow)
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=root)
            apply_umask(fd)  # mkstemp makes 0600; a shared cache must be readable as every hzsr file is
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, stack)
            os.replace(tmp, p)
            (root / (p.stem + ".json")).write_text(json.dumps(info))
        paths.append(p)
    return paths


def load_stack(path: str | Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")
