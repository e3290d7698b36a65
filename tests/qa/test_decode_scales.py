"""One rule for every JPEG DCT scaling QA decodes with (``capture_qa.decode_scales``, helper
issue18decode): ``qa check`` and the quick check ask it, the analysis decodes at what it says,
the quick check's Ts are ``qa check``'s own decoded pixels, and the size guard still reads the
header first."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hzsr.core.records import CaptureRecord
from hzsr.qa import capture_qa
from hzsr.qa.capture_qa import analyse_capture, decode_scales
from hzsr.qa.config import QAConfig
from hzsr.sim.simsession import SimConfig, simulate_session


def _frames_at(rec: CaptureRecord, w: int, h: int, w_fx_over_t_fx: float | None = None) -> dict:
    """The record's frames as if shot at ``w`` x ``h`` (intrinsics scaled with the grid); W's
    focal length ``w_fx_over_t_fx`` of T's where given (another tele ratio)."""
    out = {}
    for f in rec.frames:
        s = w / f.width
        i = f.intrinsics
        intr = dataclasses.replace(i, fx=i.fx * s, fy=i.fy * s, cx=(i.cx + 0.5) * s - 0.5, cy=(i.cy + 0.5) * s - 0.5)
        out[f.slot] = dataclasses.replace(f, width=w, height=h, intrinsics=intr)
    if w_fx_over_t_fx is not None:
        t = out["main_T"].intrinsics
        out["main_W"] = dataclasses.replace(out["main_W"], intrinsics=dataclasses.replace(
            out["main_W"].intrinsics, fx=t.fx * w_fx_over_t_fx, fy=t.fy * w_fx_over_t_fx))
    return out


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    # 1536x1152: every scaling differs (qa check's Ts 1/2, the quick check's 1/4 decoded at 1/2,
    # W whole in qa check and 1/2 in the quick check), so a mixed-up slot or check shows.
    sess = simulate_session(tmp_path_factory.mktemp("ds") / "s",
                            SimConfig(captures=1, seed=12, size=(1536, 1152), kinds=("portrait",)), progress=False)
    return sess / "captures" / "c00000"


def test_scales_at_12mp_and_the_labelled_sizes(capture):
    rec = CaptureRecord.load(capture)
    cfg = QAConfig()
    # The virtual rig's 5x T at 12 MP (bench/qa.py --part speed): W's crop is 800 W px, 400 at 1/2,
    # 0.40 of T's 1000 px analysis width (>= check.w_crop_min_share 0.35): W at 1/2 in qa check,
    # where the rule before (0.7) decoded it whole; the quick check's crop at 1/4 (200 px) keeps
    # 0.2 of its 500 px T, at 1/8 (99.9 px) it would not.
    fr = _frames_at(rec, 4000, 3000)
    cw = 4000 * fr["main_W"].intrinsics.fx / fr["main_T"].intrinsics.fx
    full, quick = decode_scales(fr, cfg, quick=False), decode_scales(fr, cfg, quick=True)
    assert full.decode == full.analysis == full.check == {"main_T": 4, "ref_T": 4, "main_W": 2}
    assert quick.decode == {"main_T": 4, "ref_T": 4, "main_W": 4}
    assert quick.analysis == {"main_T": 8, "ref_T": 8, "main_W": 4}
    assert quick.check == full.check
    assert quick.w_crop_px == pytest.approx((cw / 2, cw / 4))  # the quick check knows qa check's crop
    # A 3x tele: W's crop is 1333 px, 666 at 1/2 (0.67 of T's width), 333 at 1/4 (0.33): 1/2.
    fr3 = _frames_at(rec, 4000, 3000, w_fx_over_t_fx=1 / 3)
    assert decode_scales(fr3, cfg, quick=False).decode["main_W"] == 2
    assert decode_scales(fr3, cfg, quick=True).decode["main_W"] == 8
    # The labelled set's sizes and the map parts' (640x480): qa check reduces nothing, so their
    # figures cannot move; at 480x360 neither does the quick check (it registers qa check's pixels),
    # at 1280x960 it decodes the Ts whole and analyses them at 1/4.
    for w, h in ((480, 360), (640, 480), (1280, 960), (2048, 1536)):
        fr = _frames_at(rec, w, h)
        s = decode_scales(fr, cfg, quick=False)
        assert s.decode["main_W"] == 1 and s.check["main_T"] == (2 if w == 2048 else 1)
        s = decode_scales(fr, cfg, quick=True)
        assert s.check["main_W"] == 1
        if w < 2048:
            assert s.decode["main_T"] == s.decode["ref_T"] == 1
        assert set(s.decode.values()) == {1} if w == 480 else s.analysis["main_T"] >= 2
    # The share is the config's: the one before (0.7) decodes W whole at 12 MP; a lower quick one
    # takes the quick W to 1/8.
    fr = _frames_at(rec, 4000, 3000)
    before = dataclasses.replace(cfg, check=dataclasses.replace(cfg.check, w_crop_min_share=0.7,
                                                                quick_w_crop_min_share=0.19))
    assert decode_scales(fr, before, quick=False).decode["main_W"] == 1
    assert decode_scales(fr, before, quick=True).decode["main_W"] == 8
    assert decode_scales(fr, before, quick=True).w_crop_px == pytest.approx((cw, cw / 8))

def test_analysis_decodes_at_the_rule_and_the_quick_ts_are_qa_checks_pixels(capture, monkeypatch):
    cfg = QAConfig()
    frames = {f.slot: f for f in CaptureRecord.load(capture).frames}
    calls: dict[str, list[tuple[str, int, np.ndarray]]] = {"full": [], "quick": []}
    decode = capture_qa._decode
    mode = ["full"]

    def recording(path, reduce):
        img, why = decode(path, reduce)
        calls[mode[0]].append((path.stem, reduce, img.copy()))
        return img, why

    monkeypatch.setattr(capture_qa, "_decode", recording)
    full = analyse_capture(capture, cfg, thumbs=False)
    mode[0] = "quick"
    quick = analyse_capture(capture, cfg, quick=True, thumbs=False)
    for name, q in (("full", False), ("quick", True)):
        asked = {slot: r for slot, r, _ in calls[name]}
        assert asked == decode_scales(frames, cfg, quick=q).decode
    assert {s: r for s, r, _ in calls["full"]} == {"main_T": 2, "ref_T": 2, "main_W": 1}
    assert {s: r for s, r, _ in calls["quick"]} == {"main_T": 2, "ref_T": 2, "main_W": 2}
    # The quick check's Ts: the very pixels qa check decodes (its AF ROI is measured on them).
    px = {(n, s): img for n in calls for s, _, img in calls[n]}
    for slot in ("main_T", "ref_T"):
        assert np.array_equal(px[("full", slot)], px[("quick", slot)])
    # Its analysis grid: the size its own scaling gives (1536 / 4 = 384 px), qa check's 768.
    assert quick.row["analysis_width"] == 384 and full.row["analysis_width"] == 768
    cw = frames["main_T"].width * frames["main_W"].intrinsics.fx / frames["main_T"].intrinsics.fx
    assert full.row["crop_scale"] == pytest.approx(768 / cw, rel=1e-6)
    assert quick.row["crop_scale"] == pytest.approx(384 / (cw / 2), rel=1e-6)
    assert not math.isnan(quick.row["flow_units"])


def test_the_size_guard_still_reads_the_header_before_any_decode(capture, tmp_path, monkeypatch):
    """A JPEG declaring more pixels than the cap is refused from its header: ``_decode`` is never
    asked for it, whatever scaling the rule gives (qa check and the quick check)."""
    import shutil

    from tests.qa.test_size_and_inliers import bomb_jpeg

    d = tmp_path / "c"
    shutil.copytree(capture, d)
    bomb_jpeg(d / "main_W.jpg")
    asked = []
    decode = capture_qa._decode
    monkeypatch.setattr(capture_qa, "_decode", lambda p, r: (asked.append(p.stem), decode(p, r))[1])
    for quick in (False, True):
        q = analyse_capture(d, QAConfig(), quick=quick, thumbs=False)
        assert any(r.code == "image_too_large" and "main_W.jpg" in r.message for r in q.reasons), q.reasons
    assert "main_W" not in asked and asked.count("main_T") == 2


def test_w_crop_shares_out_of_range_are_refused():
    """review-today7: a share outside (0, 1] would decode W at 1/8 or whole whatever its crop needs."""
    from hzsr.core.schema import parse_dataclass
    from hzsr.qa.config import CheckConfig

    for bad in (0.0, -0.5, 1.5):
        _, problems = parse_dataclass(CheckConfig, {"w_crop_min_share": bad})
        assert [p.field for p in problems] == ["w_crop_min_share"], problems
        _, problems = parse_dataclass(CheckConfig, {"quick_w_crop_min_share": bad})
        assert [p.field for p in problems] == ["quick_w_crop_min_share"], problems
    assert parse_dataclass(CheckConfig, {})[1] == []
