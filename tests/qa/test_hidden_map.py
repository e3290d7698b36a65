"""M_occ against true occlusion (issue 18 item 4): ``maps.hidden_map`` on a scene whose occlusion
is known by construction, beside the forward-backward consistency map it refines."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hzsr.qa.config import QAConfig
from hzsr.qa.maps import hidden_map, reference_coverage
from hzsr.qa.register import register_pair


@pytest.fixture(scope="module")
def two_planes():
    """A far textured wall and a near textured card: in REF the wall moves 3 px left and the card
    24 px left (stereo along x). SRC pixels of the wall whose REF position falls under the card are
    hidden in REF: the strip left of the card, 21 px wide, ``true`` below."""
    import skimage.data as data

    h, w = 240, 320
    wall = cv2.resize(data.camera(), (w + 40, h), interpolation=cv2.INTER_AREA)  # real photographs
    card = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[:300, 100:350], (100, 120),
                      interpolation=cv2.INTER_AREA)
    bg_d, fg_d = 3, 24
    x0, y0 = 150, 60  # the card's top-left in SRC
    src = wall[:, 10:10 + w].copy()
    src[y0:y0 + 120, x0:x0 + 100] = card
    ref = wall[:, 10 + bg_d:10 + bg_d + w].copy()  # REF(x - 3) = wall(x): the wall moved 3 px left
    ref[y0:y0 + 120, x0 - fg_d:x0 - fg_d + 100] = card
    xs = np.arange(w)[None, :].repeat(h, 0)
    ys = np.arange(h)[:, None].repeat(w, 1)
    in_card_src = (xs >= x0) & (xs < x0 + 100) & (ys >= y0) & (ys < y0 + 120)
    x_ref = xs - bg_d  # where a wall pixel lands in REF
    true = ~in_card_src & (x_ref >= x0 - fg_d) & (x_ref < x0 - fg_d + 100) & (ys >= y0) & (ys < y0 + 120)
    return cv2.cvtColor(src, cv2.COLOR_GRAY2RGB), cv2.cvtColor(ref, cv2.COLOR_GRAY2RGB), true


def _pr(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    p, t = pred & mask, true & mask
    return (p & t).sum() / max(p.sum(), 1), (p & t).sum() / max(t.sum(), 1)


def test_hidden_map_finds_the_strip_behind_the_card(two_planes):
    src, ref, true = two_planes
    r = register_pair(src, ref, QAConfig())
    mask = r.valid
    prec, rec = _pr(r.hidden >= 0.5, true, mask)
    prec_fb, rec_fb = _pr(r.occlusion >= 0.5, true, mask)
    # Measured: precision 0.84 at recall 0.70; the consistency map 0.40 at 0.99 (it also flags the
    # card's edge, where DIS smooths the flow across the depth step).
    assert prec >= 0.65 and rec >= 0.6, (prec, rec)
    assert prec > prec_fb + 0.25, (prec, prec_fb)
    assert r.stats["hidden_frac"] == pytest.approx(float((r.hidden[r.valid] >= 0.5).mean()))


def test_reference_coverage_counts_returning_pixels():
    h, w = 20, 30
    flow = np.zeros((h, w, 2), np.float32)
    assert np.allclose(reference_coverage(flow), 1.0)  # identity: every pixel receives itself
    flow[:, 10:20, 0] = 5.0  # REF columns 10..19 land on SRC 15..24: SRC 10..14 receive nothing, 20..24 twice
    cov = reference_coverage(flow)
    assert np.allclose(cov[:, 10:15], 0.0) and np.allclose(cov[:, 15:20], 1.0) and np.allclose(cov[:, 20:25], 2.0)
    # hidden needs both cues: a forward-backward error of 5 px over SRC columns 10..19, of which
    # only 10..14 receive no REF pixel
    hid = hidden_map(np.zeros_like(flow), flow, QAConfig())
    assert (hid[:, 10:15] == 1).all() and hid.sum() == 5 * h


def test_hidden_map_given_the_baseline_keeps_the_strip_and_needs_the_right_side(two_planes):
    src, ref, true = two_planes
    r = register_pair(src, ref, QAConfig(), baseline=(0.015, 0.0))  # REF sits at +x: the wall moves left
    prec, rec = _pr(r.hidden >= 0.5, true, r.valid)
    wrong = register_pair(src, ref, QAConfig(), baseline=(-0.015, 0.0))
    prec_w, rec_w = _pr(wrong.hidden >= 0.5, true, wrong.valid)
    # Measured: 0.64 at recall 0.85 (without the baseline 0.84 at 0.70: the fold also takes the
    # strip's inner columns, where DIS gave the wall a flow the backward flow agrees with, and the
    # card's edge column); with the baseline reversed 0.56 at 0.92 (the fold on the wrong side).
    assert prec >= 0.6 and rec >= 0.8, (prec, rec)
    assert prec > prec_w + 0.05, (prec, prec_w, rec_w)
