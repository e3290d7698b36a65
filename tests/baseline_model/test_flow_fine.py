"""Below level 2, DIS weighs brightness constancy less and, from level 1 up, iterates more (``flow_fine_*``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import hzsr.baseline_model.align as align_mod
from hzsr.baseline_model.align import blurred_lumas, dis_flows, fine_dis_settings
from hzsr.baseline_model.config import PipelineConfig
from hzsr.core.errors import ModelError

from .test_flow_blur import _grid_pair, _pair

#: main's flow: DIS's preset everywhere below level 2
PRESET = {"flow_fine_delta": 0.0, "flow_fine_refine_iters": 0, "flow_fine_gd_iters": 0}


def _spy_settings(monkeypatch, ratio: float, cfg: PipelineConfig):
    """``HZSRPipeline.align`` (the pipeline's own settings, ``--focal-ratio``) and the extra settings
    it handed ``dis_flows``."""
    from hzsr.baseline_model.pipeline import HZSRPipeline

    got = []

    def spy(src_y, ref_y, qa_cfg, finest, alpha=0.0, **fine):
        got.append(fine)
        return dis_flows(src_y, ref_y, qa_cfg, finest, alpha, **fine)

    monkeypatch.setattr(align_mod, "dis_flows", spy)
    w_img, ref, _ = _pair(ratio)
    pipe = HZSRPipeline.__new__(HZSRPipeline)  # align needs only the config, not a network
    pipe.cfg = cfg
    return pipe.align(w_img, ref, None, focal_ratio=ratio), got


def test_fine_settings_by_level():
    assert fine_dis_settings(2, 2, 1.0, 20, 50, 1) == {}  # the simulator's level 2: the preset, as before
    assert fine_dis_settings(3, 2, 1.0, 20, 50, 1) == {}
    assert fine_dis_settings(1, 2, 1.0, 20, 50, 1) == {"delta": 1.0, "refine_iters": 20, "gd_iters": 50}
    assert fine_dis_settings(0, 2, 1.0, 20, 50, 1) == {"delta": 1.0}  # 12 MP: no extra iterations


@pytest.mark.parametrize(("ratio", "level", "expect"), [
    (3.5, 1, {"delta": 1.0, "refine_iters": 20, "gd_iters": 50}),  # Middlebury ratios 3-5
    (2.0, 0, {"delta": 1.0}),  # a 2x pair / 12 MP
])
def test_the_pipeline_hands_dis_the_fine_settings_below_level_two(monkeypatch, ratio, level, expect):
    """issue20flow: with the default config, the flow below level 2 runs with delta 1 (and at level 1
    20 refinement / 50 gradient-descent iterations), and differs from the preset's (main's) flow."""
    al, got = _spy_settings(monkeypatch, ratio, PipelineConfig())
    assert al.flow_level == level and got == [expect]
    before, got_before = _spy_settings(monkeypatch, ratio, dataclasses.replace(PipelineConfig(), **PRESET))
    assert got_before == [{"delta": 0.0}] if level == 0 else got_before == [
        {"delta": 0.0, "refine_iters": 0, "gd_iters": 0}]
    assert not np.array_equal(al.flow_fwd, before.flow_fwd)


def test_level_two_flow_is_unchanged(monkeypatch):
    """The simulator's 5x at 640x480 (level 2) keeps its flow bit for bit."""
    al, got = _spy_settings(monkeypatch, 5.0, PipelineConfig())
    before, _ = _spy_settings(monkeypatch, 5.0, dataclasses.replace(PipelineConfig(), **PRESET))
    assert al.flow_level == 2 and got == [{}]
    assert np.array_equal(al.flow_fwd, before.flow_fwd) and np.array_equal(al.flow_bwd, before.flow_bwd)


def test_dis_flows_zero_is_the_preset():
    src, ref, _ = _grid_pair(noise=8.0)
    s, r = blurred_lumas(src, ref, 0.0)
    cfg = PipelineConfig().qa
    a, _ = dis_flows(s, r, cfg, 1)
    b, _ = dis_flows(s, r, cfg, 1, 0.0, delta=0.0, refine_iters=0, gd_iters=0)
    c, _ = dis_flows(s, r, cfg, 1, 0.0, delta=5.0, refine_iters=5, gd_iters=25)  # medium's own values
    d, _ = dis_flows(s, r, cfg, 1, 0.0, delta=1.0, refine_iters=20, gd_iters=50)
    assert np.array_equal(a, b) and np.array_equal(a, c) and not np.array_equal(a, d)


@pytest.mark.parametrize("noise", [8.0, 20.0])
def test_fine_settings_get_a_closer_flow_at_level_one(noise):
    """The premise, on the blurred-source / sharp-reference pair of ``test_flow_blur`` (it calls
    ``dis_flows`` directly): the level-1 settings lower the end-point error (grid px, blur 0.875)."""
    src, ref, truth = _grid_pair(noise)
    s, r = blurred_lumas(src, ref, 0.875)
    cfg = PipelineConfig().qa

    def epe(**kw) -> float:
        fwd, _ = dis_flows(s, r, cfg, 1, 0.0, **kw)
        return float(np.linalg.norm(fwd - truth, axis=2)[20:-20, 20:-20].mean())

    base, fine = epe(), epe(delta=1.0, refine_iters=20, gd_iters=50)
    print(f"noise {noise}: epe {base:.3f} -> {fine:.3f}")
    assert fine < base


def test_the_fine_settings_are_checked():
    from hzsr.baseline_model.config import pipeline_config_of

    with pytest.raises(ModelError, match="flow_fine_delta"):
        pipeline_config_of({"flow_fine_delta": -1.0}, "model.pt")
    with pytest.raises(ModelError, match="flow_fine_refine_iters"):
        pipeline_config_of({"flow_fine_refine_iters": -3}, "model.pt")
