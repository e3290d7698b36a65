"""The ablation of ``bench/eval_truth.py`` re-blends one alignment; it must equal the pipeline run
with the same maps switched off (``use_*``), so its per-map gains are the pipeline's own."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest

from hzsr.baseline_model.align import MAP_NAMES, blend_of_maps
from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.config import PipelineConfig
from hzsr.baseline_model.pipeline import HZSRPipeline
from tests.bench_modules import bench_module

FLAGS = {"occ": "use_occ", "defocus": "use_defocus", "flow": "use_flow", "reject": "use_reject"}


def _capture(sess, i: int):
    cap = sorted((sess / "captures").iterdir())[i]
    rgb = [cv2.cvtColor(cv2.imread(str(cap / n)), cv2.COLOR_BGR2RGB) for n in ("main_W.jpg", "ref_T.jpg")]
    return (*rgb, json.loads((cap / "capture.json").read_text()))


@pytest.mark.parametrize("cfg", [PipelineConfig(), PipelineConfig(flow_level_max=1)], ids=["shipped", "level1"])
def test_every_ablation_variant_is_the_pipeline_with_those_maps_off(tiny_session, cfg):
    model = load_model(None).model
    with bench_module("eval_truth") as et:
        full = HZSRPipeline(model, cfg)
        differs = 0
        for i in (0, 3):
            w, ref, meta = _capture(tiny_session, i)
            al = full.align(w, ref, meta)
            base = full.fuse(al).final
            for name, (use, denoise) in et.VARIANTS.items():
                got = (full if denoise else HZSRPipeline(model, dataclasses.replace(cfg, denoise_strength=0.0))) \
                    .fuse(et.variant_alignment(al, cfg, use)).final
                if use is None:  # no blend: the network's output (no night here: the denoiser is off)
                    fusion = full.fuse(al, extras=("fusion",)).extras["fusion"]
                    assert np.abs(got.astype(int) - fusion).max() <= 1, (name, i)
                    continue
                else:
                    flags = {FLAGS[m]: on for m, on in use.items()}
                    want_cfg = dataclasses.replace(cfg, **flags, denoise_strength=cfg.denoise_strength if denoise
                                                   else 0.0)
                    want = HZSRPipeline(model, want_cfg).run(w, ref, meta).final
                assert np.array_equal(got, want), (name, i)
                differs += int(not np.array_equal(got, base))
        assert differs > 0  # not vacuous: some variant changes the output


def test_blend_of_maps_switches_maps_off_and_keeps_the_frame():
    rng = np.random.default_rng(0)
    maps = {k: rng.uniform(0, 0.3, (8, 10)).astype(np.float32)
            for k in ("occlusion_blend", "defocus", "uncertainty", "reject")}
    maps["valid"] = (rng.uniform(size=(8, 10)) > 0.2).astype(np.float32)
    full = blend_of_maps(maps)
    raw = 1 - maps["occlusion_blend"] - maps["defocus"] - maps["uncertainty"] - maps["reject"]
    assert np.allclose(full, np.clip(raw, 0, None) * maps["valid"], atol=1e-6)
    assert np.array_equal(blend_of_maps(maps, {m: False for m in MAP_NAMES}), maps["valid"])
    only_rej = blend_of_maps(maps, {m: m == "reject" for m in MAP_NAMES})
    assert np.allclose(only_rej, (1 - maps["reject"]) * maps["valid"], atol=1e-6)
    half = blend_of_maps(maps, None, defocus_weight=0.5)
    assert np.allclose(half, np.clip(raw + 0.5 * maps["defocus"], 0, None) * maps["valid"], atol=1e-6)
    with pytest.raises(ValueError, match="unknown map"):
        blend_of_maps(maps, {"occlusion": False})


def test_the_ablation_table_decomposes_full_minus_fusion():
    """``bench/eval.py``'s table: denoiser + frame + maps add up to full - fusion, gains to 3 decimals."""
    with bench_module("eval") as ev:
        v = {"fusion": 20.0, "fusion_denoised": 20.05, "no_maps": 20.07, "full": 20.1,
             **{f"only_{m}": 20.07 + 0.001 * i for i, m in enumerate(MAP_NAMES)},
             **{f"no_{m}": 20.1 - 0.002 * i for i, m in enumerate(MAP_NAMES)}}
        w = {m: 0.01 for m in (*MAP_NAMES, "frame")}
        s = {"mean_psnr_y_db": {"all": v}, "truth_regions": {"occluded": {**v, "captures": 3, "mean_map_weight": w}},
             "whole_view": {"mean_map_weight_elsewhere": w}}
        md = ev.table_ablation(s, {"all": 5})
    row = next(line for line in md.splitlines() if line.startswith("| **truly occluded**"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:8] == ["**truly occluded**", "3", "20.10", "+0.100", "+0.050", "+0.020", "+0.030", "+0.000"]
    assert cells[8:11] == ["+0.001", "+0.002", "+0.003"] and cells[11:] == ["+0.000", "+0.002", "+0.004", "+0.006"]
    assert "| truly occluded pixels | 0.0100 |" in md
