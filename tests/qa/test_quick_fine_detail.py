"""Issue 18 (eighth pass): the quick check's rejected fraction where main T has little fine texture.

qa check's M_reject compares the W crop and the warped reference T at W's optical resolution, 4x
finer than the quick check's W crop at 1280x960: a landscape's foliage is rejected there (0.22-0.60)
and not here (0.00). ``fine_detail_share`` measures, on main T as qa check decodes it, the texture
energy between the two resolutions; where it is small the quick figure gets a margin of its own.
"""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np

from hzsr.qa.capture_qa import (
    LITTLE_DETAIL,
    CaptureQA,
    _judge_registration,
    fine_detail_share,
    rejected_tag_for,
)
from hzsr.qa.config import QAConfig


def _t_image(sigma: float, seed: int = 3) -> np.ndarray:
    """A 1280x960 RGB main T: noise blurred by ``sigma`` px (1: foliage; 12: soft shapes)."""
    n = np.random.default_rng(seed).random((960, 1280)).astype(np.float32)
    g = cv2.GaussianBlur(n, (0, 0), sigma)
    g = (255 * (g - g.min()) / (g.max() - g.min())).astype(np.uint8)
    return np.dstack([g, g, g])


def test_the_texture_the_quick_w_crop_cannot_see_tells_foliage_from_soft_shapes():
    cfg = QAConfig()
    # W crop 427 W px wide in qa check, 107 in the quick check (1280x960 captures, W at 1/4).
    foliage = fine_detail_share(_t_image(1.0), 427, 107)
    soft = fine_detail_share(_t_image(12.0), 427, 107)
    assert foliage > 2 * cfg.check.quick_fine_detail_max
    assert soft < 0.5 * cfg.check.quick_fine_detail_max
    # No band between the two resolutions (the quick check decodes W as qa check does): nothing unseen.
    assert fine_detail_share(_t_image(1.0), 427, 427) < 1e-6


def _wr(rejected: float) -> dict:
    stats = {"psnr_db": 25.0, "shift_used": 1.0, "inliers": 200.0, "occluded_frac": 0.1,
             "rejected_frac": rejected}
    return {"wr": SimpleNamespace(stats=stats)}


def test_a_rejected_fraction_with_little_fine_detail_is_decided_with_its_own_margin():
    cfg = QAConfig()
    margins = {"rejected": 0.3837, "rejected" + LITTLE_DETAIL: 0.1, "occluded": 0.07, "low_psnr": 3.6}

    def quick(share: float) -> CaptureQA:
        out = CaptureQA("c", margin=0.15, abs_margins=margins)
        # lab-1803 c00020's figures: quick 0.083, qa check 0.091 (pass; warn at 0.45)
        _judge_registration(out, _wr(0.083), 1280, cfg, rejected_tag=rejected_tag_for(out, share, cfg))
        return out

    little = quick(0.08)  # a portrait's share (0.02-0.09 on the labelled set)
    assert little.decided() is not None and little.decided().value == "pass"
    foliage = quick(0.43)  # a landscape's: the margin of all captures, 0.083 + 0.38 > 0.45
    assert foliage.decided() is None and foliage.undecided_by() == ["rejected"]
    # Without a margin of its own in the table, the figure keeps the margin of all captures.
    out = CaptureQA("c", margin=0.15, abs_margins={"rejected": 0.3837})
    assert rejected_tag_for(out, 0.01, cfg) is None


def test_the_share_is_measured_only_where_the_margin_of_all_captures_leaves_the_figure_undecided():
    from dataclasses import replace

    from hzsr.qa.capture_qa import _fine_detail_may_decide

    cfg = QAConfig()
    out = CaptureQA("c", margin=0.15, abs_margins={"rejected": 0.3837, "rejected" + LITTLE_DETAIL: 0.1})
    wr = _wr(0.083)["wr"]
    assert _fine_detail_may_decide(out, wr, cfg)  # 0.083 + 0.38 spans warn 0.45: worth measuring
    assert not _fine_detail_may_decide(out, _wr(0.002)["wr"], cfg)  # a landscape's 0.00: decided pass already
    assert _fine_detail_may_decide(out, _wr(0.002)["wr"], replace(cfg, check=replace(cfg.check,
                                                                                   quick_fine_detail_always=True)))
    wider = CaptureQA("c", margin=0.15, abs_margins={"rejected": 0.05, "rejected" + LITTLE_DETAIL: 0.1})
    assert _fine_detail_may_decide(wider, _wr(0.002)["wr"], cfg)  # a larger margin of its own may undecide
