"""Where the flow stops at level 2, DIS matches blurred lumas (``flow_blur_px``); elsewhere the flow is as before."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

import hzsr.baseline_model.align as align_mod
from hzsr.baseline_model.align import CameraGeometry, blurred_lumas, dis_flows
from hzsr.baseline_model.config import PipelineConfig
from hzsr.core.errors import ModelError
from hzsr.core.geometry import intrinsics_matrix

H, W = 384, 512
TRUE_BACKGROUND = (-3.0, 2.0)  # the flow I_src -> reference of the background, grid px
TRUE_BLOCK = (12.0, 0.0)  # ... and of the block in front of it


def _texture(rng: np.random.Generator) -> np.ndarray:
    t = cv2.GaussianBlur(rng.integers(0, 255, (H, W), dtype=np.uint8).astype(np.float32), (0, 0), 3.0)
    return (t - t.mean()) * 4 + 128


def _grid_pair(noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A blurred source (an upsampled W crop) and a sharp reference with ``noise``; the true flow.

    The background moves by ``TRUE_BACKGROUND``, a block in front of it by ``TRUE_BLOCK``.
    """
    rng = np.random.default_rng(seed)
    back, block = _texture(rng), _texture(rng)
    src, ref = back.copy(), np.roll(back, (2, -3), (0, 1))
    src[120:260, 150:330] = block[120:260, 150:330]
    ref[120:260, 162:342] = block[120:260, 150:330]
    flow = np.empty((H, W, 2), np.float32)
    flow[...] = TRUE_BACKGROUND
    flow[120:260, 150:330] = TRUE_BLOCK
    src = cv2.GaussianBlur(src, (0, 0), 2.0)
    ref = ref + rng.normal(0.0, noise, ref.shape) if noise else ref

    def rgb(y: np.ndarray) -> np.ndarray:
        return np.repeat(np.clip(y + 0.5, 0, 255).astype(np.uint8)[..., None], 3, 2)

    return rgb(src), rgb(ref), flow


def _epe(src: np.ndarray, ref: np.ndarray, truth: np.ndarray, blur_px: float) -> float:
    fwd, _ = dis_flows(*blurred_lumas(src, ref, blur_px), PipelineConfig().qa, 2, 30.0)
    return float(np.linalg.norm(fwd - truth, axis=2)[20:-20, 20:-20].mean())


def test_blurred_lumas():
    src, ref, _ = _grid_pair(noise=8.0)
    s, r = blurred_lumas(src, ref, 0.0)
    assert np.array_equal(s, align_mod.to_luma(src)) and np.array_equal(r, align_mod.to_luma(ref))
    s, r = blurred_lumas(src, ref, 1.0)
    assert np.array_equal(s, cv2.GaussianBlur(align_mod.to_luma(src), (0, 0), 1.0))
    assert np.array_equal(r, cv2.GaussianBlur(align_mod.to_luma(ref), (0, 0), 1.0))


@pytest.mark.parametrize("noise", [0.0, 20.0])
def test_a_sharp_or_noisy_reference_against_a_blurred_source_gets_a_closer_flow(noise):
    """The point of it: DIS matches the structure the two images share, not the reference's finer
    detail or its noise. Mean end-point error in grid px, measured: noise 0 0.413 -> 0.405, noise 20
    0.464 -> 0.453 (noise 8 0.428 -> 0.425; another seed at 20: 0.508 -> 0.496)."""
    src, ref, truth = _grid_pair(noise)
    assert _epe(src, ref, truth, 1.0) < 0.99 * _epe(src, ref, truth, 0.0)


def _pair(ratio: float) -> tuple[np.ndarray, np.ndarray, CameraGeometry]:
    rng = np.random.default_rng(5)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 1.5)
    small = (round(640 / ratio), round(480 / ratio))
    w_img = cv2.resize(cv2.resize(scene, small, interpolation=cv2.INTER_AREA), (640, 480))
    ref = np.roll(scene, 6, 1)
    fx = 0.8 * 640 / ratio
    geom = CameraGeometry(intrinsics_matrix(fx, fx, 319.5, 239.5),
                          intrinsics_matrix(fx * ratio, fx * ratio, 319.5, 239.5), None)
    return w_img, ref, geom


@pytest.mark.parametrize(("ratio", "level", "blurred"), [(5.0, 2, True), (2.0, 0, False)])
def test_align_blurs_dis_lumas_at_level_two_only(monkeypatch, ratio, level, blurred):
    """Through ``align`` with the pipeline's settings: the simulator's 5x at 640x480 (level 2) gets the
    blur; a 2x pair (level 0, as Middlebury at ratio 2 and 12 MP; Middlebury at 3-5: level 1) keeps
    its lumas and its flow."""
    seen = []

    def spy(src_y, ref_y, cfg, finest, alpha=0.0):
        seen.append((src_y, ref_y))
        return dis_flows(src_y, ref_y, cfg, finest, alpha)

    monkeypatch.setattr(align_mod, "dis_flows", spy)
    w_img, ref, geom = _pair(ratio)

    def run(cfg: PipelineConfig):
        return align_mod.align(w_img, ref, geom, cfg.qa, flow_level_by_w_px=cfg.flow_level_by_w_px,
                               flow_level_max=cfg.flow_level_max, blend_maps_level=cfg.blend_maps_level,
                               flow_alpha=cfg.flow_alpha, flow_blur_px=cfg.flow_blur_px)

    cfg = PipelineConfig()
    assert cfg.flow_blur_px > 0
    al = run(cfg)
    off = run(PipelineConfig(flow_blur_px=0.0))
    assert al.flow_level == level and al.flow_blur_px == (cfg.flow_blur_px if blurred else 0.0)
    g = al.grid_scale
    raw = (align_mod.to_luma(align_mod._grid(al.src, g)), align_mod.to_luma(align_mod._grid(ref, g)))
    expect = blurred_lumas(align_mod._grid(al.src, g), align_mod._grid(ref, g), cfg.flow_blur_px) if blurred else raw
    assert all(np.array_equal(a, b) for a, b in zip(seen[0], expect, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(seen[1], raw, strict=True))  # flow_blur_px 0: as before
    assert np.array_equal(al.flow_fwd, off.flow_fwd) != blurred


def test_the_blur_is_checked():
    from hzsr.baseline_model.config import pipeline_config_of

    with pytest.raises(ModelError, match="flow_blur_px"):
        pipeline_config_of({"flow_blur_px": -1.0}, "model.pt")


def _spy_align(monkeypatch, ratio: float, cfg: PipelineConfig):
    """``HZSRPipeline.align`` (the pipeline's own settings, ``--focal-ratio``) and the lumas DIS saw."""
    from hzsr.baseline_model.pipeline import HZSRPipeline

    seen = []

    def spy(src_y, ref_y, qa_cfg, finest, alpha=0.0):
        seen.append((src_y, ref_y))
        return dis_flows(src_y, ref_y, qa_cfg, finest, alpha)

    monkeypatch.setattr(align_mod, "dis_flows", spy)
    w_img, ref, _ = _pair(ratio)
    pipe = HZSRPipeline.__new__(HZSRPipeline)  # align needs only the config, not a network
    pipe.cfg = cfg
    return pipe.align(w_img, ref, None, focal_ratio=ratio), seen, ref


@pytest.mark.parametrize("ratio", [3.0, 3.5])
def test_level_one_flow_gets_a_quarter_w_pixel_of_blur(monkeypatch, ratio):
    """issue20p: where DIS stops at level 1 (a W pixel spans 2-4 grid px: Middlebury at ratios 3-5),
    its lumas are blurred by the same quarter of a W pixel as at level 2 (``flow_blur_px * k g / 4``
    grid px), with the pipeline's default settings; ``flow_blur_min_level`` 2 keeps main's flow."""
    cfg = PipelineConfig()
    al, seen, ref = _spy_align(monkeypatch, ratio, cfg)
    g = al.grid_scale
    assert al.flow_level == 1 and 2.0 <= ratio * g < 4.0
    sigma = cfg.flow_blur_px * ratio * g / 4.0
    assert al.flow_blur_px == pytest.approx(sigma) and 0 < al.flow_blur_px < cfg.flow_blur_px
    expect = blurred_lumas(align_mod._grid(al.src, g), align_mod._grid(ref, g), sigma)
    assert all(np.array_equal(a, b) for a, b in zip(seen[0], expect, strict=True))
    before, seen_before, _ = _spy_align(monkeypatch, ratio, dataclasses.replace(cfg, flow_blur_min_level=2))
    raw = (align_mod.to_luma(align_mod._grid(al.src, g)), align_mod.to_luma(align_mod._grid(ref, g)))
    assert before.flow_blur_px == 0.0
    assert all(np.array_equal(a, b) for a, b in zip(seen_before[0], raw, strict=True))
    assert not np.array_equal(al.flow_fwd, before.flow_fwd)


@pytest.mark.parametrize(("ratio", "level"), [(5.0, 2), (2.0, 0)])
def test_level_zero_and_two_flows_are_unchanged_by_the_level_one_blur(monkeypatch, ratio, level):
    """The simulator's 5x at 640x480 (level 2) and a 2x pair / 12 MP (level 0) keep their flow bit for bit."""
    cfg = PipelineConfig()
    al, _, _ = _spy_align(monkeypatch, ratio, cfg)
    before, _, _ = _spy_align(monkeypatch, ratio, dataclasses.replace(cfg, flow_blur_min_level=2))
    assert al.flow_level == before.flow_level == level
    assert al.flow_blur_px == before.flow_blur_px
    assert np.array_equal(al.flow_fwd, before.flow_fwd) and np.array_equal(al.flow_bwd, before.flow_bwd)


def test_a_clamped_level_gets_no_more_blur_than_level_two():
    """``flow_level_max`` 1 clamps a W pixel of 5.6 grid px (level 2 by its size) to level 1: its lumas
    get ``flow_blur_px``, what level 2 would give, not ``flow_blur_px * 5.6 / 4`` (1.4 grid px, before the
    cap); unclamped level 1 keeps its fraction of a W pixel."""
    assert align_mod.flow_blur_w_fraction(3.0, 2) == 0.75
    assert align_mod.flow_blur_w_fraction(5.6, 2) == 1.0
    cfg = dataclasses.replace(PipelineConfig(), flow_level_max=1)
    w_img, ref, geom = _pair(7.0)
    al = align_mod.align(w_img, ref, geom, cfg.qa, flow_level_by_w_px=True, flow_level_max=1,
                         blend_maps_level=cfg.blend_maps_level, flow_alpha=cfg.flow_alpha,
                         flow_blur_px=cfg.flow_blur_px, flow_blur_min_level=cfg.flow_blur_min_level)
    assert align_mod.dis_finest_level(7.0 * al.grid_scale) == 2 and al.flow_level == 1
    assert al.flow_blur_px == cfg.flow_blur_px


@pytest.mark.parametrize("noise", [8.0, 20.0])
def test_level_one_blur_gets_a_closer_flow(noise):
    """The premise of the level-1 blur, not the change itself: it calls ``blurred_lumas`` / ``dis_flows``
    directly, so it passed before ``flow_blur_min_level`` existed (the level-one tests above check that
    ``align`` applies it). The blur's point at level 1 too (a W pixel of 3.5 grid px: 0.875 grid px of
    blur): mean end-point error in grid px on the blurred-source / sharp-reference pair, measured:
    noise 8 0.347 -> 0.341 (seed 1: 0.385 -> 0.368), noise 20 0.432 -> 0.419 (seed 1: 0.481 -> 0.442);
    without noise 0.325 -> 0.317 (seed 1: 0.340 -> 0.339, so only noisy pairs are asserted)."""
    src, ref, truth = _grid_pair(noise)

    def epe(blur_px: float) -> float:
        fwd, _ = dis_flows(*blurred_lumas(src, ref, blur_px), PipelineConfig().qa, 1, 0.0)
        return float(np.linalg.norm(fwd - truth, axis=2)[20:-20, 20:-20].mean())

    assert epe(0.875) < 0.99 * epe(0.0)
