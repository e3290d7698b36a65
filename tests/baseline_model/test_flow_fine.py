"""Below level 2, DIS matches the reference's luma to the source's, and at level 1 iterates more
(``flow_match_luma_fine``, ``flow_l1_refine_iters``, ``flow_l1_gd_iters``; issue20flow)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import hzsr.baseline_model.align as align_mod
from hzsr.baseline_model.align import blurred_lumas, dis_flows, matched_luma
from hzsr.baseline_model.config import PipelineConfig
from hzsr.core.errors import ModelError

from .test_flow_blur import _grid_pair, _pair

#: main's flow: DIS on the lumas as they are, the preset's iterations
OFF = {"flow_match_luma_fine": False, "flow_l1_refine_iters": 0, "flow_l1_gd_iters": 0}
ON = {"flow_match_luma_fine": True, "flow_l1_refine_iters": 20, "flow_l1_gd_iters": 50}


def _spy_align(monkeypatch, ratio: float, cfg: PipelineConfig):
    """``HZSRPipeline.align`` (the pipeline's own settings, ``--focal-ratio``), and what it handed
    ``dis_flows``: the two lumas and the extra settings."""
    from hzsr.baseline_model.pipeline import HZSRPipeline

    got = []

    def spy(src_y, ref_y, qa_cfg, finest, alpha=0.0, **extra):
        got.append((src_y, ref_y, extra))
        return dis_flows(src_y, ref_y, qa_cfg, finest, alpha, **extra)

    monkeypatch.setattr(align_mod, "dis_flows", spy)
    w_img, ref, _ = _pair(ratio)
    pipe = HZSRPipeline.__new__(HZSRPipeline)  # align needs only the config, not a network
    pipe.cfg = cfg
    return pipe.align(w_img, ref, None, focal_ratio=ratio), got, ref


def test_matched_luma_takes_the_sources_mean_and_spread():
    rng = np.random.default_rng(0)
    src = rng.integers(60, 200, (50, 70), dtype=np.uint8)
    ref = (src.astype(np.float32) * 0.6 + 40).astype(np.uint8)  # darker, flatter: another exposure
    out = matched_luma(ref, src)
    assert out.dtype == np.uint8
    assert abs(float(out.mean()) - float(src.mean())) < 0.6 and abs(float(out.std()) - float(src.std())) < 0.6
    assert np.abs(out.astype(int) - src.astype(int)).max() <= 2


@pytest.mark.parametrize(("ratio", "level", "iters"), [
    (3.5, 1, {"refine_iters": 20, "gd_iters": 50}),  # Middlebury ratios 3-5
    (2.0, 0, {}),  # a 2x pair / 12 MP: the match only
])
def test_below_level_two_dis_sees_the_matched_reference(monkeypatch, ratio, level, iters):
    cfg = dataclasses.replace(PipelineConfig(), **ON)
    al, got, ref = _spy_align(monkeypatch, ratio, cfg)
    assert al.flow_level == level
    g = al.grid_scale
    src_l, ref_l = blurred_lumas(align_mod._grid(al.src, g), align_mod._grid(ref, g), al.flow_blur_px)
    (s, r, extra), = got
    assert np.array_equal(s, src_l) and np.array_equal(r, matched_luma(ref_l, src_l)) and extra == iters
    before, got_before, _ = _spy_align(monkeypatch, ratio, dataclasses.replace(cfg, **OFF))
    assert np.array_equal(got_before[0][1], ref_l) and got_before[0][2] == {}
    assert not np.array_equal(al.flow_fwd, before.flow_fwd)


def test_level_two_flow_is_unchanged(monkeypatch):
    """The simulator's 5x at 640x480 (level 2) keeps its flow bit for bit."""
    al, got, _ = _spy_align(monkeypatch, 5.0, dataclasses.replace(PipelineConfig(), **ON))
    before, _, _ = _spy_align(monkeypatch, 5.0, dataclasses.replace(PipelineConfig(), **OFF))
    assert al.flow_level == 2 and got[0][2] == {}
    assert np.array_equal(al.flow_fwd, before.flow_fwd) and np.array_equal(al.flow_bwd, before.flow_bwd)


def test_dis_flows_iterations_zero_is_the_preset():
    src, ref, _ = _grid_pair(noise=8.0)
    s, r = blurred_lumas(src, ref, 0.0)
    cfg = PipelineConfig().qa
    a, _ = dis_flows(s, r, cfg, 1)
    b, _ = dis_flows(s, r, cfg, 1, 0.0, refine_iters=5, gd_iters=25)  # medium's own values
    c, _ = dis_flows(s, r, cfg, 1, 0.0, refine_iters=20, gd_iters=50)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_the_match_gets_a_closer_flow_between_two_exposures():
    """The premise, on ``test_flow_blur``'s blurred-source / sharp-reference pair with the reference
    given another exposure (x0.7 + 30 DN): the match lowers the level-1 end-point error (grid px)."""
    src, ref, truth = _grid_pair(noise=8.0)
    ref = np.clip(ref.astype(np.float32) * 0.7 + 30, 0, 255).astype(np.uint8)
    s, r = blurred_lumas(src, ref, 0.875)
    cfg = PipelineConfig().qa

    def epe(ref_y: np.ndarray) -> float:
        fwd, _ = dis_flows(s, ref_y, cfg, 1)
        return float(np.linalg.norm(fwd - truth, axis=2)[20:-20, 20:-20].mean())

    assert epe(matched_luma(r, s)) < epe(r)


def test_the_settings_are_checked():
    from hzsr.baseline_model.config import pipeline_config_of

    with pytest.raises(ModelError, match="flow_l1_refine_iters"):
        pipeline_config_of({"flow_l1_refine_iters": -3}, "model.pt")
