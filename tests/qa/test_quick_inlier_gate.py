"""The capture line's quick check across T vs T's inlier gate, and without the figures no verdict
reads (issue 18, helper issue18q).

The quick check votes each pairing with fewer keypoints on a coarser grid than ``qa check``: where
its inlier count lies near ``align.min_inliers``, ``qa check``'s may fall on the other side, and the
two would register the pairing from different starts (the vote's shift, or the rig's alignment)
and could disagree. The quick check analyses the capture again with the count on the other side
(``quick_gate_counts``; T vs T since issue18q, the W crop's two pairings since issue18k) and says
``undecided`` where the verdict changes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hzsr.qa import capture_qa
from hzsr.qa.align import GlobalShift
from hzsr.qa.config import QAConfig
from hzsr.qa.quality import frame_quality
from hzsr.sim.simsession import SimConfig, simulate_session

_GLOBAL_TRANSLATION = capture_qa.global_translation


@pytest.fixture(scope="module")
def portrait(tmp_path_factory):
    """One clean near portrait at 480x360 (T vs T: ~510 inliers, far from the gate)."""
    return simulate_session(tmp_path_factory.mktemp("gate") / "s",
                            SimConfig(captures=1, seed=10, size=(480, 360), kinds=("portrait",)), progress=False)


def _cfg() -> QAConfig:
    """The shipped config with the quick check's other doubts removed, so that the gate alone
    decides: figures trusted to 1e-9 of themselves, no depth check, no unknown T-vs-T offset, and
    the keypoints' vote kept as voted (no rig-parallax or structure tie-break). And as on a phone's
    frames, which the quick check reduces: no count of qa check's own (``check.quick_check_counts``;
    at 480x360 it registers qa check's pixels and could count them)."""
    cfg = QAConfig()
    return replace(cfg, check=replace(cfg.check, tt_prefer_rig_parallax=False, tt_prefer_structure=False,
                                      quick_margin=1e-9, quick_margins={}, quick_margins_shortfall={},
                                      quick_check_counts=False),
                   rig=replace(cfg.rig, depth_offset_d=0.0, tt_rotation_max_deg=0.0),
                   thresholds=replace(cfg.thresholds, warn_depth_departure_d=10.0, fail_depth_departure_d=20.0))


def _is_pairing(pairing: str, cfg: QAConfig, c, k: dict) -> bool:
    """Whether a ``global_translation`` call of the quick analysis is ``pairing``'s keypoint vote:
    T vs T's keeps ``check.quick_tt_max_keypoints`` corners; W crop vs reference T's starts from
    the composed hint; W crop vs main T's is the other one (the second-motion search masks SRC)."""
    if k.get("src_mask") is not None:
        return False
    if c.align.max_keypoints == cfg.check.quick_tt_max_keypoints:
        return pairing == "tt"
    return pairing == ("wr" if k.get("hints") else "wt")


def _live(monkeypatch, sess, cfg, inliers: int, dy_frac: float, pairing: str = "tt") -> tuple[str, list[str]]:
    """``quick_check`` of the capture with ``pairing``'s vote moved by ``dy_frac`` of the width
    along y and counted ``inliers`` (every other vote as found)."""
    real = _GLOBAL_TRANSLATION  # not an earlier call's patch

    def vote(src, ref, c, **k):
        g = real(src, ref, c, **k)
        if _is_pairing(pairing, cfg, c, k):
            return GlobalShift(g.dx, g.dy + dy_frac * src.shape[1], inliers, g.matches)
        return g

    monkeypatch.setattr(capture_qa, "global_translation", vote)
    monkeypatch.setattr(capture_qa, "other_focus_switch", lambda *a, **k: None)  # the focus-plane doubt's rule
    for store in (capture_qa._SESSION_DEPTHS, capture_qa._SESSION_FOCUS, capture_qa._SESSION_CARRIED):
        store.clear()
    return capture_qa.quick_check(sess / "captures" / "c00000", cfg)


def test_gate_counts_cover_the_other_side_of_the_gate_only_near_it():
    cfg = QAConfig()
    lo, hi = cfg.check.quick_tt_inlier_ratio
    s = cfg.check.quick_tt_inlier_slack
    g = cfg.align.min_inliers
    assert capture_qa.quick_tt_gate_counts({"tt_inliers": g - 1}, cfg) == [int(np.ceil((g - 1) * hi + s))]
    assert capture_qa.quick_tt_gate_counts({"tt_inliers": g}, cfg) == [int(np.floor(g * lo - s))]
    assert capture_qa.quick_tt_gate_counts({"tt_inliers": 10 * g}, cfg) == []
    assert capture_qa.quick_tt_gate_counts({"tt_inliers": 0}, cfg) == []
    assert capture_qa.quick_tt_gate_counts({}, cfg) == []
    # A smeared T vs T (1280x960's shaken Ts: 172 quick inliers, 11 in qa check): looked at far lower.
    smeared = {"tt_inliers": 172, "tt_blur_anisotropy": cfg.thresholds.warn_tt_blur_anisotropy - 0.2}
    assert capture_qa.quick_tt_gate_counts(smeared, cfg) == [int(np.floor(172 * cfg.check.quick_tt_inlier_ratio_smeared
                                                                            - s))]
    assert capture_qa.quick_tt_gate_counts({**smeared, "tt_blur_anisotropy": 0.99}, cfg) == []


def test_a_vote_refused_near_the_gate_is_undecided_where_the_used_vote_changes_the_verdict(portrait, monkeypatch):
    """11 inliers (refused: T vs T registered from the rig's parallax, which passes), on a shift 0.3
    of the width off along the baseline: ``qa check`` counting more keypoints would use that vote,
    and T vs T registered from it reads a mover and a shift (the quick analysis counted so: not
    pass). Before, the quick check said pass."""
    cfg = _cfg()
    verdict, reasons = _live(monkeypatch, portrait, cfg, inliers=cfg.align.min_inliers - 1, dy_frac=0.3)
    assert verdict == capture_qa.UNDECIDED
    assert "inlier gate" in reasons[-1] and "not pass" in reasons[-1]
    # The quick analysis alone (the gate as counted) passes: the old answer.
    q = capture_qa.analyse_capture(portrait / "captures" / "c00000", cfg, quick=True, thumbs=False, row_figures=False)
    assert q.decided() is not None and q.decided().value == "pass" and q.row["tt_shift_used"] == 0.0


def test_far_from_the_gate_or_where_both_sides_agree_the_verdict_stands(portrait, monkeypatch):
    cfg = _cfg()
    # Near the gate, but the vote lies where the rig's parallax puts it: the same verdict either side.
    assert _live(monkeypatch, portrait, cfg, inliers=cfg.align.min_inliers - 1, dy_frac=0.0)[0] == "pass"
    assert _live(monkeypatch, portrait, cfg, inliers=cfg.align.min_inliers, dy_frac=0.0)[0] == "pass"
    # The shifted vote far above the gate (100 * lo - 1 > 12): no look across it (qa check uses the vote too).
    verdict, reasons = _live(monkeypatch, portrait, cfg, inliers=100, dy_frac=0.3)
    assert not any("inlier gate" in r for r in reasons)


@pytest.mark.parametrize("pairing", ["wt", "wr"])
def test_a_w_crop_vote_refused_near_the_gate_is_undecided_where_the_used_vote_changes_the_verdict(
        portrait, monkeypatch, pairing):
    """The W crop's pairings have the same gate (issue 18: at 1280x960 lab-1802 c00009's W crop vs
    main T kept 29 quick inliers and 10 in ``qa check``). A vote of 11 inliers 0.3 of the width
    off: the quick check refuses it and registers from the rig's alignment (pass); ``qa check``,
    counting 12 or more, would use it. Before, the quick check said pass."""
    cfg = _cfg()
    verdict, reasons = _live(monkeypatch, portrait, cfg, inliers=cfg.align.min_inliers - 1, dy_frac=0.3,
                             pairing=pairing)
    assert verdict == capture_qa.UNDECIDED
    assert "inlier gate" in reasons[-1] and capture_qa._PAIRING_WORDS[pairing] in reasons[-1]
    # Counted as found (far above the gate) with the vote where it was: no look across, pass.
    assert _live(monkeypatch, portrait, cfg, inliers=100, dy_frac=0.0, pairing=pairing)[0] == "pass"


def test_on_qa_checks_own_pixels_the_quick_check_counts_qa_checks_inliers(portrait):
    """At 480x360 neither check reduces the frames: the quick analysis with qa check's keypoints
    (``check_keypoints``) votes every pairing as qa check does, shifts and inlier counts alike;
    with its own fewer keypoints it counts fewer."""
    cfg = QAConfig()
    cd = portrait / "captures" / "c00000"
    full = capture_qa.analyse_capture(cd, cfg, thumbs=False)
    c = capture_qa.analyse_capture(cd, cfg, quick=True, thumbs=False, row_figures=False, check_keypoints=True)
    q = capture_qa.analyse_capture(cd, cfg, quick=True, thumbs=False, row_figures=False)
    assert c.row["quick_pixels_as_check"] == 1 and q.row["quick_pixels_as_check"] == 1
    for p in ("tt", "wt", "wr"):
        assert c.row[f"{p}_inliers"] == full.row[f"{p}_inliers"] > 0
        assert (c.row[f"{p}_shift_dx"], c.row[f"{p}_shift_dy"]) == (full.row[f"{p}_shift_dx"],
                                                                    full.row[f"{p}_shift_dy"])
    assert q.row["tt_inliers"] < full.row["tt_inliers"]  # 1000 corners against qa check's 1500


def test_near_the_gate_on_qa_checks_pixels_the_quick_check_decides_with_qa_checks_counts(portrait, monkeypatch):
    """The quick check's own T-vs-T vote (1000 corners) refused at 11 inliers on a shift 0.3 of the
    width off; ``qa check``'s vote (1500 corners, not patched) is the true one, far above the gate.
    Counted as ``qa check`` may count the quick vote (12 or more), T vs T would read a mover: before
    (and with ``check.quick_check_counts`` off) undecided; now the quick check counts ``qa check``'s
    own inliers on the same pixels and says what ``qa check`` says, pass."""
    base = _cfg()
    real = _GLOBAL_TRANSLATION

    def vote(src, ref, c, **k):
        g = real(src, ref, c, **k)
        if k.get("src_mask") is None and c.align.max_keypoints == base.check.quick_tt_max_keypoints:
            return GlobalShift(g.dx, g.dy + 0.3 * src.shape[1], base.align.min_inliers - 1, g.matches)
        return g

    monkeypatch.setattr(capture_qa, "global_translation", vote)
    monkeypatch.setattr(capture_qa, "other_focus_switch", lambda *a, **k: None)
    cd = portrait / "captures" / "c00000"
    full = capture_qa.analyse_capture(cd, base, thumbs=False)
    assert full.decided() is not None and full.decided().value == "pass"
    for counts, expected in ((False, capture_qa.UNDECIDED), (True, "pass")):
        cfg = replace(base, check=replace(base.check, quick_check_counts=counts))
        for store in (capture_qa._SESSION_DEPTHS, capture_qa._SESSION_FOCUS, capture_qa._SESSION_CARRIED):
            store.clear()
        verdict, reasons = capture_qa.quick_check(cd, cfg)
        assert verdict == expected, reasons


def test_w_gate_counts_use_their_own_range():
    cfg = QAConfig()
    s, g = cfg.check.quick_tt_inlier_slack, cfg.align.min_inliers
    for p, (lo, hi) in (("wt", cfg.check.quick_wt_inlier_ratio), ("wr", cfg.check.quick_wr_inlier_ratio)):
        assert capture_qa.quick_gate_counts({f"{p}_inliers": g - 1}, cfg, p) == [int(np.ceil((g - 1) * hi + s))]
        assert capture_qa.quick_gate_counts({f"{p}_inliers": 29}, cfg, p) == (
            [int(np.floor(29 * lo - s))] if 29 * lo - s < g else [])
        assert capture_qa.quick_gate_counts({f"{p}_inliers": 1000}, cfg, p) == []
        # T vs T's smear rule is T vs T's alone.
        assert capture_qa.quick_gate_counts({f"{p}_inliers": 172, "tt_blur_anisotropy": 0.1}, cfg, p) == []
    # lab-1802 c00009 at 1280x960 (W crop vs main T: 29 quick inliers, 10 in qa check) is looked at below the gate.
    assert capture_qa.quick_gate_counts({"wt_inliers": 29}, cfg, "wt")[0] < g


def test_without_row_figures_every_graded_figure_and_reason_is_the_same(portrait):
    """``row_figures=False`` (the capture line's quick analysis) leaves out only figures no verdict
    reads: the same graded figures, spreads, reasons and decided verdict, and every row value it
    keeps equal; ``qa check --quick`` (``row_figures`` True) keeps SSIM, M_flow's fraction and the
    blur ratios for its CSV."""
    cap = portrait / "captures" / "c00000"
    for cfg in (QAConfig(), _cfg()):
        a = capture_qa.analyse_capture(cap, cfg, quick=True, thumbs=False)
        b = capture_qa.analyse_capture(cap, cfg, quick=True, thumbs=False, row_figures=False)
        assert a.graded == b.graded and a.spread == b.spread and a.decided() == b.decided()
        assert [(r.level, r.code, r.message) for r in a.reasons] == [(r.level, r.code, r.message) for r in b.reasons]
        assert set(b.row) < set(a.row)
        assert all(a.row[k] == b.row[k] for k in b.row if k != "seconds")
        dropped = set(a.row) - set(b.row)
        assert {"tt_ssim", "wr_uncertain_frac", "main_T_blur_ratio", "main_T_noise_sigma"} <= dropped
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    full, lean = frame_quality(img, [5, 5, 20, 10]), frame_quality(img, [5, 5, 20, 10], row_figures=False)
    assert lean == {k: full[k] for k in lean} and set(lean) == {"clipped_frac", "brightness", "mean_r", "mean_g",
                                                              "mean_b"}
