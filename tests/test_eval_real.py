"""``bench/eval_real.py``: the real-image evaluation's W is a degraded wide view, not the target."""

import math

import cv2
import numpy as np
import pytest
import skimage.data as data

from tests.bench_modules import bench_module


@pytest.fixture(scope="module")
def eval_real():
    with bench_module("eval_real") as mod:
        yield mod


def test_the_wide_view_is_the_left_view_degraded_not_the_identity(eval_real):
    left = data.stereo_motorcycle()[0]
    w, rect = eval_real.degrade_to_wide(left)
    assert w.shape == left.shape and rect.scale == pytest.approx(eval_real.FOCAL_RATIO)
    # W's crop, upsampled back onto the target's grid: aligned with the left view, but degraded
    up = cv2.warpAffine(w, rect.crop_to_w()[:2], left.shape[1::-1], flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    ya, yb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64)[20:-20, 20:-20] for x in (up, left))
    ncc = np.corrcoef(ya.ravel(), yb.ravel())[0, 1]
    psnr = 10 * math.log10(255**2 / np.mean((ya - yb) ** 2))
    assert ncc > 0.95  # the same framing ...
    assert psnr < 32  # ... with detail lost: no identity
    # ... and the lost detail is the fine one: a 2x downscale halves the resolvable band
    hp = lambda y: float(np.std(y - cv2.GaussianBlur(y, (0, 0), 1.0)))  # noqa: E731
    assert hp(ya) < 0.6 * hp(yb)
    # noise and JPEG: two seeds differ
    w2, _ = eval_real.degrade_to_wide(left, seed=eval_real.SEED + 1)
    assert np.abs(w.astype(int) - w2.astype(int)).mean() > 1.0


def test_true_occlusion_marks_pixels_the_right_view_cannot_see(eval_real):
    disp = np.full((4, 20), 2.0, np.float32)
    disp[:, 10:14] = 6.0  # a near strip: hides what lies just left of it in the right view
    occ, known = eval_real.true_occlusion(disp)
    assert known.all()
    assert occ[:, :2].all()  # out of the right frame
    assert occ[:, 6:10].any() and not occ[:, 10:14].any() and not occ[:, 15:].any()


def test_middlebury_at_a_focal_ratio_degrades_and_runs_the_pipeline_at_that_ratio(eval_real, monkeypatch):
    """W and the pipeline's geometry agree at every ratio of the sweep (a W made at ratio 2 and run
    as ratio 5 frames a fifth of the view: the reference is lost for a reason of the harness's)."""
    seen = {}

    def fake_score(pipe, w, ref, target, rect, focal_ratio, regions=None, more=None, ablation=None):
        seen.update(w=w, rect=rect, focal_ratio=focal_ratio, target=target)
        return {"full_minus_bicubic_db": 0.0}

    monkeypatch.setattr(eval_real, "score_pair", fake_score)
    r = eval_real.middlebury(None, eval_real.BLUR_W_PX * 5.0, 5.0)
    assert seen["focal_ratio"] == 5.0 and seen["rect"].scale == pytest.approx(5.0)
    assert r["degradation"]["focal_ratio"] == 5.0
    # W's crop is the left view downscaled 5 times: upsampled back, it lines up with the target
    left = seen["target"]
    up = cv2.warpAffine(seen["w"], seen["rect"].crop_to_w()[:2], left.shape[1::-1],
                        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    ya, yb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64)[20:-20, 20:-20] for x in (up, left))
    assert np.corrcoef(ya.ravel(), yb.ravel())[0, 1] > 0.8


@pytest.mark.slow
def test_eval_real_runs_with_the_shipped_checkpoint(eval_real):
    res = eval_real.run(None)
    m = res["middlebury"]
    assert m["used_reference"] and m["pixels"]["occluded"] > 1000
    for region in ("all", "occluded"):
        assert all(math.isfinite(v) for v in m[f"psnr_y_db_{region}"].values())
    assert m["verdict"] in ("pass", "fail")
    assert "| Middlebury motorcycle, all pixels |" in eval_real.table_md(res)
    sweep = res["middlebury_ratio_sweep"]
    assert set(sweep) == {f"{r:g}" for r in eval_real.RATIO_SWEEP}
    assert res["middlebury_method_ratio"]["degradation"]["focal_ratio"] == eval_real.METHOD_RATIO
    assert all(v["verdict"] in ("pass", "fail") and "used_reference" in v["without_focal_ratio"]
               for v in sweep.values())


def test_set_overrides_change_the_pipeline_config_and_a_bad_one_is_one_line():
    """``--set`` of bench/eval_truth.py and eval_real.py: how docs/model.md's variants are run."""
    from hzsr.baseline_model.checkpoint import load_model
    from hzsr.core.errors import ModelError

    with bench_module("eval_truth") as eval_truth:
        lc = load_model(None)
        cfg = eval_truth.pipeline_config_with(lc, ["flow_level_max=1", "qa.maps.occlusion_scale=0.1", "use_occ=false"])
        assert (cfg.flow_level_max, cfg.qa.maps.occlusion_scale, cfg.use_occ) == (1, 0.1, False)
        same = eval_truth.pipeline_config_with(lc, None)
        assert (same.flow_level_max, same.qa.maps.occlusion_scale, same.use_occ) == (2, 0.05, True)
        with pytest.raises(ModelError, match=r"pipeline\.flow_level_max: must be in 0 \.\. 6, got 9"):
            eval_truth.pipeline_config_with(lc, ["flow_level_max=9"])


def test_eval_regions_takes_the_same_set_overrides(monkeypatch):
    """``bench/eval_regions.py --set``: the region split of a variant (docs/model.md, issue20x)."""
    with bench_module("eval_regions") as eval_regions:
        seen = []
        monkeypatch.setattr(eval_regions, "HZSRPipeline", lambda model, cfg: seen.append(cfg))
        eval_regions.run([], None, None, False, ["flow_level_max=1", "blend_occlusion_scale=0.02"])
        eval_regions.run([], None, None)
        assert (seen[0].flow_level_max, seen[0].blend_occlusion_scale) == (1, 0.02)
        from hzsr.baseline_model.config import PipelineConfig

        d = PipelineConfig()
        assert (seen[1].flow_level_max, seen[1].blend_occlusion_scale) == (d.flow_level_max, d.blend_occlusion_scale)
        assert (d.flow_level_max, d.blend_occlusion_scale) != (1, 0.02)  # the overrides above are not the defaults
