"""``bench/eval_truth_r2.py``: a simulated capture re-made as a focal-ratio-2 pair, scored like the real ones."""

import math

import cv2
import numpy as np
import pytest

from tests.bench_modules import bench_module


@pytest.fixture(scope="module")
def r2():
    with bench_module("eval_truth_r2") as mod:
        yield mod


def test_a_capture_is_remade_at_ratio_2_against_its_ideal_target(r2, monkeypatch):
    rng = np.random.default_rng(0)
    ideal = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (0, 0), 1.5)
    ref = np.roll(ideal, 3, axis=1)
    valid = np.ones((96, 128), bool)
    valid[:, :30] = False  # 2880 px the reference does not see: a region
    defocus = np.zeros((96, 128), np.float32)
    defocus[:10, :10] = 2.0  # 100 px: too few for a region PSNR
    seen = {}

    def fake_score(pipe, w, ref_in, target, rect, focal_ratio, regions=None, more=None, ablation=None):
        seen.update(w=w, ref=ref_in, target=target, rect=rect, focal_ratio=focal_ratio, regions=regions)
        scores = {"bicubic": 30.0, "full": 31.5}
        return {"used_reference": True, "pixels": {"all": 9000, **{k: int(m.sum()) for k, m in regions.items()}},
                **{f"psnr_y_db_{k}": scores for k in ("all", *regions)}}

    monkeypatch.setattr(r2, "score_pair", fake_score)
    row = r2.score_capture_r2(None, ideal, ref, valid, defocus, seed=1)
    assert seen["focal_ratio"] == 2.0 and seen["rect"].scale == pytest.approx(2.0)
    assert seen["target"] is ideal and seen["ref"] is ref  # the ideal is the target, the capture's T the reference
    assert np.array_equal(seen["regions"]["occluded"], ~valid)
    # W's crop is the ideal downscaled twice: upsampled back it lines up with the target, with detail lost
    up = cv2.warpAffine(seen["w"], seen["rect"].crop_to_w()[:2], (128, 96),
                        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    ya, yb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float64)[8:-8, 8:-8] for x in (up, ideal))
    assert np.corrcoef(ya.ravel(), yb.ravel())[0, 1] > 0.8 and np.mean((ya - yb) ** 2) > 1.0
    # eval_truth's columns, so pair_truth.py pairs two runs; a region under 500 px is NaN
    assert row["psnr_full"] == 31.5 and row["psnr_bicubic_occluded"] == 30.0
    assert math.isnan(row["psnr_full_defocused"])
