"""``hzsr.qa.stereo_occlusion`` and ``bench/_occ_alternatives.py`` (issue 18 item 4): semi-global
matching's fold along the baseline finds the strip behind a near card on a scene whose occlusion is
known by construction, so its poor figures between the W crop and a T on the simulator
(``docs/qa.md``) come from the data, not from a sign or axis slip; the alternatives are masks of the
registration's own grid."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hzsr.qa.config import QAConfig
from hzsr.qa.register import register_pair
from hzsr.qa.stereo_occlusion import add_hidden, grid_lumas, sgbm_fold
from tests.bench_modules import bench_module


@pytest.fixture(scope="module")
def alt():
    with bench_module("_occ_alternatives") as mod:
        yield mod


def _card_scene(vertical: bool, fg_d: int = 24):
    """A real-photo wall and a nearer real-photo card: in REF the wall moves 3 px and the card
    ``fg_d`` px against the baseline (REF's camera sits at +x, or +y with ``vertical``). The strip
    of wall beside the card on the side -b, ``fg_d - 3`` px wide, is hidden in REF (``true``)."""
    import skimage.data as data

    h, w = 240, 320
    wall = cv2.resize(data.camera(), (w + 40, h), interpolation=cv2.INTER_AREA)
    card = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)[:300, 100:350], (100, 120),
                      interpolation=cv2.INTER_AREA)
    bg_d, x0, y0 = 3, 150, 60
    src = wall[:, 10:10 + w].copy()
    src[y0:y0 + 120, x0:x0 + 100] = card
    ref = wall[:, 10 + bg_d:10 + bg_d + w].copy()
    ref[y0:y0 + 120, x0 - fg_d:x0 - fg_d + 100] = card
    xs, ys = np.meshgrid(np.arange(w), np.arange(h))
    in_card = (xs >= x0) & (xs < x0 + 100) & (ys >= y0) & (ys < y0 + 120)
    true = ~in_card & (xs - bg_d >= x0 - fg_d) & (xs - bg_d < x0 - fg_d + 100) & (ys >= y0) & (ys < y0 + 120)
    if vertical:  # the same scene turned so the baseline runs down the image
        src, ref, true = src.T.copy(), ref.T.copy(), true.T.copy()
    return src, ref, true, ((0.0, 1.0) if vertical else (1.0, 0.0))


def _pr(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    return (pred & true).sum() / max(pred.sum(), 1), (pred & true).sum() / max(true.sum(), 1)


@pytest.mark.parametrize("vertical", [False, True])
def test_sgbm_fold_finds_the_strip_on_the_baselines_side(vertical):
    src, ref, true, baseline = _card_scene(vertical)
    cfg = QAConfig()
    r = register_pair(src, ref, cfg, baseline=baseline)
    ys, yr, _ = grid_lumas(src, ref, r.shift, cfg)
    hid = sgbm_fold(ys, yr, baseline)
    prec, rec = _pr(hid & r.valid, true & r.valid)
    # The truth is one strip, on the side -b of the card: a strip on the other side, or along the
    # card's other edges, would cost precision. Measured: 0.94 / 0.94 at recall 0.88 / 0.89 (x / y
    # baseline); 0.96 / 0.96 at 0.91 / 0.91 with the left-right check (maps pass 4); hidden_map on
    # the same scene 0.64 / 0.65 at 0.85 / 0.85.
    assert prec >= 0.8 and rec >= 0.8, (prec, rec)


def test_the_alternatives_are_scored_masks(alt):
    src, ref, true, baseline = _card_scene(False)
    cfg = QAConfig()
    r = register_pair(src, ref, cfg, baseline=baseline)
    ys, yr, d = alt.grid_lumas(src, ref, r.shift, cfg)
    fwd, bwd = alt.dis_flows(ys, yr, d)
    # The grid lumas and flows are the shipped registration's: the same forward flow as register_pair.
    assert np.allclose(cv2.resize(r.flow_fwd, (fwd.shape[1], fwd.shape[0])) * r.grid_scale, fwd, atol=0.05)
    masks = alt.alternatives(ys, yr, d, fwd, bwd, baseline, cfg)
    names = {"plain_dis_fb_over_8px", "magnitude_scaled_fb", "sgbm_fold", "hidden_map_multi_hypothesis_dis"}
    assert names <= set(masks)
    for k, m in masks.items():
        assert m.dtype == bool and m.shape == ys.shape, k
    # Plain forward-backward error flags the card's edge as well as the strip: less precise than the fold.
    t = cv2.resize(true.astype(np.uint8), (ys.shape[1], ys.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    assert _pr(masks["sgbm_fold"], t)[0] > _pr(masks["plain_dis_fb_over_1px"], t)[0]


def test_add_hidden_ors_the_map_and_counts_again():
    src, ref, true, baseline = _card_scene(False)
    r = register_pair(src, ref, QAConfig(), baseline=baseline)
    extra = np.zeros(true.shape, bool)
    extra[:40, :50] = True
    r2 = add_hidden(r, extra)
    assert ((r2.hidden >= 0.5) == ((r.hidden >= 0.5) | extra)).all()
    assert r2.stats["hidden_frac"] == pytest.approx(float((r2.hidden[r.valid] >= 0.5).mean()))
    assert r2.stats["hidden_frac"] > r.stats["hidden_frac"] and r.hidden is not r2.hidden
    with pytest.raises(ValueError, match="differ in shape"):
        add_hidden(r, extra[:10])


@pytest.mark.parametrize("fg_d, found", [(12, True), (40, False)])
def test_hidden_through_main_t_keeps_the_small_steps(fg_d, found):
    """Main T and the reference T one above the other (the mount's baseline, +y): a 9 px step is
    found and carried to the W crop (here on main T's grid: zero W -> main T flow); a 37 px step
    is left to hidden_map (over maps.hidden_min_step_px, 16). Measured: 0.84 at recall 0.69; 0 flagged
    (0.92 at 0.79 with the left-right check, maps pass 4)."""
    from hzsr.qa.stereo_occlusion import hidden_through_main_t

    main_t, ref_t, true, _ = _card_scene(True, fg_d)
    cfg = QAConfig()
    assert cfg.rig.ref_baseline_m[0] == 0 and cfg.rig.ref_baseline_m[1] > 0
    rt = register_pair(main_t, ref_t, cfg, baseline=cfg.rig.ref_baseline_m)
    hid = hidden_through_main_t(main_t, ref_t, rt.shift, rt.flow_fwd, np.zeros(main_t.shape + (2,), np.float32), cfg)
    prec, rec = _pr(hid & rt.valid, true & rt.valid)
    if found:
        assert prec >= 0.8 and rec >= 0.6, (prec, rec)
    else:
        assert rec < 0.1, (prec, rec)
