"""The blend's M_occ and M_flow and DIS's smoothness are re-chosen for the level-2 flow, and only there
(``blend_maps_level``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import hzsr.baseline_model.align as align_mod
from hzsr.baseline_model.align import CameraGeometry
from hzsr.baseline_model.config import PipelineConfig
from hzsr.core.geometry import intrinsics_matrix
from hzsr.qa.maps import flow_uncertainty_map, occlusion_map


def _pair(ratio: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, CameraGeometry]:
    """W and a same-size reference whose middle block moved: the flows disagree around it."""
    rng = np.random.default_rng(3)
    w, h = size
    img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 2.0)
    ref = img.copy()
    bh, bw = h // 4, w // 4
    block = cv2.GaussianBlur(rng.integers(0, 255, (bh, bw, 3), dtype=np.uint8), (0, 0), 2.0)
    img[h // 2 - bh // 2 : h // 2 + bh - bh // 2, w // 2 - bw // 2 : w // 2 + bw - bw // 2] = block
    dx = w // 16  # the block sits elsewhere in the reference: it occludes different background
    ref[h // 2 - bh // 2 : h // 2 + bh - bh // 2, w // 2 - bw // 2 + dx : w // 2 + bw - bw // 2 + dx] = block
    fx = 0.8 * w
    geom = CameraGeometry(intrinsics_matrix(fx, fx, (w - 1) / 2, (h - 1) / 2),
                          intrinsics_matrix(fx * ratio, fx * ratio, (w - 1) / 2, (h - 1) / 2), None)
    return img, ref, geom


def _align(ratio: float, size: tuple[int, int], cfg: PipelineConfig):
    w, ref, geom = _pair(ratio, size)
    return align_mod.align(w, ref, geom, cfg.qa, flow_level_by_w_px=cfg.flow_level_by_w_px,
                           flow_level_max=cfg.flow_level_max, blend_maps_level=cfg.blend_maps_level,
                           blend_occlusion_scale=cfg.blend_occlusion_scale,
                           blend_uncertainty_s_max=cfg.blend_uncertainty_s_max, flow_alpha=cfg.flow_alpha,
                           blend_defocus_weight=cfg.blend_defocus_weight)


def _blend(m: dict[str, np.ndarray], occ: np.ndarray, unc: np.ndarray, dfc_weight: float = 1.0) -> np.ndarray:
    return np.clip(1 - occ - dfc_weight * m["defocus"] - unc - m["reject"], 0, None) * m["valid"]


def test_level_two_blends_with_its_own_occlusion_and_uncertainty_and_feeds_the_unet_qas_occlusion():
    cfg = PipelineConfig()
    al = _align(5.0, (640, 480), cfg)  # the simulator's 5x: a W pixel spans 4 grid px
    m, q = al.maps, cfg.qa.maps
    assert al.flow_level == 2
    assert np.array_equal(m["occlusion"], occlusion_map(al.flow_fwd, al.flow_bwd, q.occlusion_scale))
    occ_b = occlusion_map(al.flow_fwd, al.flow_bwd, cfg.blend_occlusion_scale)
    unc_b = flow_uncertainty_map(al.flow_fwd, al.flow_bwd, q.__class__(**{**vars(q), "uncertainty_s_max":
                                                                          cfg.blend_uncertainty_s_max}), 1.0)
    assert np.array_equal(m["occlusion_blend"], occ_b) and np.array_equal(m["uncertainty"], unc_b)
    assert np.allclose(m["blend"], _blend(m, occ_b, unc_b, cfg.blend_defocus_weight), atol=1e-6)
    # Not vacuous: the moved block gives forward-backward errors, and the two maps differ there.
    assert m["occlusion"].max() > 0.5 and (m["occlusion"] - m["occlusion_blend"]).max() > 0.3


@pytest.mark.parametrize(("ratio", "size", "level"), [(2.0, (640, 480), 0), (5.0, (2000, 1500), 0)])
def test_finer_levels_keep_qas_blend_maps(ratio, size, level):
    """A 2x pair and a large 5x capture (a W pixel under 2 grid px, as at 12 MP) refine to level 0
    and blend with qa's maps: they are unchanged by the level-2 settings."""
    cfg = PipelineConfig()
    al = _align(ratio, size, cfg)
    m, q = al.maps, cfg.qa.maps
    assert al.flow_level == level
    occ = occlusion_map(al.flow_fwd, al.flow_bwd, q.occlusion_scale)
    unc = flow_uncertainty_map(al.flow_fwd, al.flow_bwd, q, 1.0)
    assert np.array_equal(m["occlusion_blend"], occ) and np.array_equal(m["uncertainty"], unc)
    assert np.allclose(m["blend"], _blend(m, occ, unc), atol=1e-6)


@pytest.mark.parametrize(("ratio", "size", "weighted"), [(5.0, (640, 480), True), (2.0, (640, 480), False)])
def test_the_blends_defocus_weight_applies_at_level_two_only(ratio, size, weighted):
    """``blend_defocus_weight`` scales M_defocus in M_blend where the flow stops at level 2; a
    level-0 pair (2x, 12 MP) blends with qa's whole map. ``maps["defocus"]`` itself is qa's."""
    cfg = PipelineConfig(blend_defocus_weight=0.25)
    al = _align(ratio, size, cfg)
    full = _align(ratio, size, PipelineConfig(blend_defocus_weight=1.0))
    m = al.maps
    assert np.array_equal(m["defocus"], full.maps["defocus"])
    # Not vacuous: the map fires where the blend is not already clipped at 0 by the other maps.
    assert (m["defocus"] * (_blend(m, m["occlusion_blend"], m["uncertainty"], 0.0) > 0.3)).max() > 0.01
    assert np.allclose(m["blend"], _blend(m, m["occlusion_blend"], m["uncertainty"], 0.25 if weighted else 1.0),
                       atol=1e-6)
    assert np.array_equal(m["blend"], full.maps["blend"]) != weighted


def test_the_pipeline_passes_the_level_settings_through():
    from hzsr.baseline_model.pipeline import HZSRPipeline
    from hzsr.baseline_model.unet import FusionUNet

    w, ref, geom = _pair(5.0, (640, 480))
    meta = {"frames": [{"slot": "main_W", "intrinsics": geom.k_w[[0, 1, 0, 1], [0, 1, 2, 2]].tolist()},
                       {"slot": "ref_T", "intrinsics": geom.k_t[[0, 1, 0, 1], [0, 1, 2, 2]].tolist(),
                        "af_roi": [256, 192, 128, 96]}]}
    on = HZSRPipeline(FusionUNet(), PipelineConfig()).align(w, ref, meta)
    off = HZSRPipeline(FusionUNet(), PipelineConfig(blend_maps_level=3)).align(w, ref, meta)
    assert on.flow_level == off.flow_level == 2
    assert np.array_equal(off.maps["occlusion_blend"], off.maps["occlusion"])
    assert not np.array_equal(on.maps["occlusion_blend"], on.maps["occlusion"])
    assert not np.array_equal(on.flow_fwd, off.flow_fwd)  # flow_alpha is a level-2 setting too
    qa_occ = HZSRPipeline(FusionUNet(), PipelineConfig(blend_occlusion_scale=0.0)).align(w, ref, meta)
    assert np.array_equal(qa_occ.maps["occlusion_blend"], qa_occ.maps["occlusion"])
    assert np.array_equal(on.maps["occlusion"], qa_occ.maps["occlusion"])  # the UNet's input is qa's
    dfc_half = HZSRPipeline(FusionUNet(), PipelineConfig(blend_defocus_weight=0.5)).align(w, ref, meta)
    dfc_full = HZSRPipeline(FusionUNet(), PipelineConfig(blend_defocus_weight=1.0)).align(w, ref, meta)
    assert not np.array_equal(dfc_half.maps["blend"], dfc_full.maps["blend"])


@pytest.mark.parametrize(("ratio", "size", "alpha"), [(5.0, (640, 480), 40.0), (2.0, (640, 480), 0.0)])
def test_the_flow_smoothness_is_set_at_level_two_only(monkeypatch, ratio, size, alpha):
    """``flow_alpha`` reaches DIS where the flow stops at level 2; a level-0 pair (2x, 12 MP) keeps
    the preset's smoothness, so its flow (and its cost) is unchanged."""
    seen, dis_flows = [], align_mod.dis_flows

    def spy(src_y, ref_y, cfg, finest, alpha=0.0):
        seen.append(alpha)
        return dis_flows(src_y, ref_y, cfg, finest, alpha)

    monkeypatch.setattr(align_mod, "dis_flows", spy)
    _align(ratio, size, PipelineConfig(flow_alpha=40.0))
    assert seen == [alpha]


def test_a_larger_smoothness_weight_changes_the_level_two_flow():
    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.integers(0, 255, (240, 320), dtype=np.uint8), (0, 0), 2.0)
    b = np.roll(a, (3, 5), (0, 1))
    b[100:140, 100:160] = np.roll(a, (-4, 0), (0, 1))[100:140, 100:160]
    cfg = PipelineConfig().qa
    f20, _ = align_mod.dis_flows(a, b, cfg, 2)
    f40, _ = align_mod.dis_flows(a, b, cfg, 2, alpha=40.0)
    f20b, _ = align_mod.dis_flows(a, b, cfg, 2, alpha=20.0)  # the preset's own value: the same flow
    assert np.array_equal(f20, f20b) and not np.array_equal(f20, f40)
