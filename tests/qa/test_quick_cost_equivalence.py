"""The 12 MP quick check's cheaper forms (helper issue18quick) give exactly what the forms they
replaced gave: the RANSAC support counted in place, JPEGs decoded straight to RGB, and no
``M_defocus`` where no verdict reads it."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from hzsr.qa import capture_qa
from hzsr.qa.align import GlobalShift, hypothesis_support
from hzsr.qa.config import QAConfig
from hzsr.qa.register import register_pair
from hzsr.sim.simsession import SimConfig, simulate_session


def _support_before(hyp: np.ndarray, disp: np.ndarray, thr2: float) -> np.ndarray:
    """``global_translation``'s count before: the (H, N) distances as one expression."""
    ex = hyp[:, None, 0] - disp[None, :, 0]
    ey = hyp[:, None, 1] - disp[None, :, 1]
    dist2 = ex * ex + ey * ey
    return np.count_nonzero(dist2 <= thr2, axis=1)


def test_hypothesis_support_counts_what_the_dense_distances_counted():
    rng = np.random.default_rng(7)
    for n in (2, 37, 700):
        disp = rng.normal(0, 20, (n, 2))
        # Displacements exactly on the threshold circle and a hair inside/outside it, where the
        # rounding of the squares decides: the count must round them as before.
        r = 1.5
        ang = rng.uniform(0, 2 * np.pi, n // 3 + 1)
        base = disp[: len(ang)].copy()
        # (1 +- 1e-16 would round to 1.0 in float64: the neighbouring doubles are the hair.)
        hair = rng.choice([np.nextafter(1.0, 0.0), 1.0, np.nextafter(1.0, 2.0)], len(ang))[:, None]
        ring = base + r * np.stack([np.cos(ang), np.sin(ang)], 1) * hair
        disp = np.vstack([disp, ring, base + [r, 0.0]])
        hyp = np.vstack([disp[rng.choice(len(disp), min(500, len(disp)), replace=False)], base, [[0.0, 0.0]]])
        assert np.array_equal(hypothesis_support(hyp, disp, r**2), _support_before(hyp, disp, r**2))


@pytest.mark.parametrize("rgb_flags", ["installed", "fallback"])
@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_rgb_decode_equals_bgr_decode_then_conversion(tmp_path, ext, rgb_flags, monkeypatch):
    # Both branches of _decode: OpenCV's own RGB decode where it has one, and the BGR-then-convert
    # fallback an older OpenCV takes (forced here).
    if rgb_flags == "fallback":
        monkeypatch.setattr(capture_qa, "_REDUCED_RGB", None)
    elif capture_qa._REDUCED_RGB is None:
        pytest.skip("this OpenCV has no RGB decode flags: the fallback case covers it")
    rng = np.random.default_rng(3)
    img = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (0, 0), 1.5)
    path = tmp_path / f"f{ext}"
    cv2.imwrite(str(path), img)
    for r in (1, 2, 4, 8):
        rgb, why = capture_qa._decode(path, r)
        assert why is None
        before = cv2.cvtColor(cv2.imdecode(np.fromfile(path, np.uint8), capture_qa._REDUCED[r]), cv2.COLOR_BGR2RGB)
        assert rgb.dtype == np.uint8 and np.array_equal(rgb, before)


def test_register_pair_without_defocus_map_keeps_everything_else():
    rng = np.random.default_rng(5)
    src = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (0, 0), 2.0)
    ref = np.roll(src, (2, -3), (0, 1))
    shift = GlobalShift(-3.0, 2.0, 50, 60)
    a = register_pair(src, ref, QAConfig(), af_roi=[40, 30, 40, 30], shift=shift)
    b = register_pair(src, ref, QAConfig(), af_roi=[40, 30, 40, 30], shift=shift, defocus_map=False)
    assert a.defocus is not None and b.defocus is None
    assert {k: v for k, v in a.stats.items() if k != "defocus_frac"} == b.stats and "defocus_frac" in a.stats
    for f in ("flow_fwd", "flow_bwd", "warped_ref", "valid", "occlusion", "reject", "defocus_plane"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    sess = simulate_session(tmp_path_factory.mktemp("qc") / "s",
                            SimConfig(captures=1, seed=12, size=(480, 360), kinds=("portrait",)), progress=False)
    return sess / "captures" / "c00000"


def test_quick_analysis_without_unread_defocus_maps_grades_the_same(capture):
    """The quick verdict's analysis (``row_figures=False``) no longer measures T vs T's ``M_defocus``
    (no verdict reads it) nor the reference T's own (the W crop vs main T flow's replaces it): every
    graded figure, spread, reason and the reference T's defocused fraction are those of the
    analysis that measures both (``row_figures=True``); T vs T's fraction is left out."""
    cfg = QAConfig()
    a = capture_qa.analyse_capture(capture, cfg, quick=True, thumbs=False)
    b = capture_qa.analyse_capture(capture, cfg, quick=True, thumbs=False, row_figures=False)
    assert a.graded == b.graded and a.spread == b.spread and a.decided() == b.decided()
    assert [(r.level, r.code, r.message) for r in a.reasons] == [(r.level, r.code, r.message) for r in b.reasons]
    assert "tt_defocus_frac" in a.row and "tt_defocus_frac" not in b.row
    assert b.row["wr_defocus_from_main_t"] == 1 and b.row["wr_defocus_frac"] == a.row["wr_defocus_frac"]
    assert b.row["main_T_defocus_frac"] == a.row["main_T_defocus_frac"]
    # Where the reference T's map does not come from main T, its own is measured as before.
    own = dataclasses.replace(cfg, maps=dataclasses.replace(cfg.maps, defocus_ref_from_main_t=False))
    c = capture_qa.analyse_capture(capture, own, quick=True, thumbs=False)
    d = capture_qa.analyse_capture(capture, own, quick=True, thumbs=False, row_figures=False)
    assert "wr_defocus_from_main_t" not in d.row and d.row["wr_defocus_frac"] == c.row["wr_defocus_frac"]
    assert c.graded == d.graded and c.spread == d.spread
