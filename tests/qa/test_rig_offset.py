"""Issue 18 (item 5): the main phone's depth and focus offsets, recorded by ``qa check`` and carried
to the live quick check of a later session on the same phone (``hzsr/qa/rig_offset.py``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from hzsr.qa import rig_offset
from hzsr.qa.capture_qa import (
    _SESSION_CARRIED,
    _SESSION_DEPTHS,
    _SESSION_FOCUS,
    carried_focus_offsets,
    other_focus_switch,
    quick_check,
)
from hzsr.qa.check import run_check
from hzsr.qa.config import QAConfig
from hzsr.sim.simsession import SimConfig, simulate_session


@pytest.fixture(scope="module")
def two_sessions(tmp_path_factory):
    """A session qa check has judged, and a later one of the same phones (a copy, no qa/ yet)."""
    root = tmp_path_factory.mktemp("rigoff")
    first = simulate_session(root / "day1", SimConfig(captures=3, seed=18, size=(320, 240), truth=True,
                                                      kinds=("portrait",), captures_per_scene=3), progress=False)
    run_check(first, QAConfig(), report=False, maps=False, progress=False)
    later = root / "day2"
    shutil.copytree(first, later, ignore=shutil.ignore_patterns("qa"))
    return first, later


def _fresh_line(sess) -> None:
    for d in (_SESSION_DEPTHS, _SESSION_FOCUS):
        d.pop(str((sess / "captures").resolve()), None)
    _SESSION_CARRIED.pop(str(sess.resolve()), None)


def test_qa_check_records_the_sessions_offset_with_the_main_phone(two_sessions):
    first, later = two_sessions
    rec = json.loads((first / "qa" / "summary.json").read_text())[rig_offset.KEY]
    df = pd.read_csv(first / "qa" / "qa.csv")
    assert rec["offset_d"] == pytest.approx(float(df["session_depth_offset_d"].iloc[0]), abs=1e-6)
    assert rec["main_device"] == rig_offset.main_device(first / "captures" / "c00000")
    assert rec["captures"] == 3 and rec["margin_d"] > 0
    assert set(rec["focus_offsets_w"]) <= {"wt", "wr"} and rec["focus_offsets_w"]
    # A later session of that phone finds it; the session itself, or another phone, does not.
    assert rig_offset.carried_record(later, rec["main_device"]) == rec
    assert rig_offset.carried_record(first, rec["main_device"]) is None
    assert rig_offset.carried_record(later, "another-phone") is None


def test_the_later_sessions_first_quick_check_grades_its_depth_with_the_carried_offset(two_sessions):
    """A record that says the phone's offset is -1 D (2 D from what the capture reads) makes the
    first capture's depth fail in the quick check; the same record under another phone's serial,
    or none, leaves the figure to the no-offset rule."""
    first, later = two_sessions
    summary_path = first / "qa" / "summary.json"
    summary = json.loads(summary_path.read_text())
    true_rec = summary[rig_offset.KEY]
    cap = later / "captures" / "c00000"
    try:
        summary[rig_offset.KEY] = {**true_rec, "offset_d": -1.0, "margin_d": 0.01, "focus_offsets_w": {}}
        summary_path.write_text(json.dumps(summary))
        _fresh_line(later)
        v, reasons = quick_check(cap)
        said = [r for r in reasons if "parallax puts it at " in r]
        assert v == "fail" and said, (v, reasons)
        at = float(said[0].split("parallax puts it at ")[1].split(" D")[0])  # flow's depth less -1 D
        summary[rig_offset.KEY] = {**summary[rig_offset.KEY], "main_device": "another-phone"}
        summary_path.write_text(json.dumps(summary))
        _fresh_line(later)
        v, reasons = quick_check(cap)
        assert v != "fail" and not any(f"puts it at {at:.2f} D" in r for r in reasons), (v, reasons)
    finally:
        summary[rig_offset.KEY] = true_rec
        summary_path.write_text(json.dumps(summary))
        _fresh_line(later)


def test_the_carried_and_the_sessions_offsets_meet_where_both_intervals_hold():
    assert rig_offset.combine(None, None) is None
    assert rig_offset.combine((0.3, 0.1), None) == (0.3, 0.1)
    assert rig_offset.combine(None, (0.25, 0.05)) == (0.25, 0.05)
    off, half = rig_offset.combine((0.3, 0.1), (0.25, 0.05))  # [0.2, 0.4] and [0.2, 0.3]
    assert off == pytest.approx(0.25) and half == pytest.approx(0.05)
    assert rig_offset.combine((0.3, 0.02), (-0.2, 0.05)) == (0.3, 0.02)  # apart: the session's own


def test_a_carried_focus_offset_settles_m_defocus_plane_on_the_first_capture():
    """W crop -> main T (baseline along x): the phone's focus offset is (-40, 0) px. A first capture
    whose AF cluster lies on the focus distance's plane with that offset would be measured from
    another plane at the nominal (0, 0): without a carried offset its plane is in doubt (analysed
    both ways); with the phone's offset carried, it is not. A pairing the earlier session scattered
    (a knocked-off reference) is not carried."""
    cfg = QAConfig()
    row = {"wt_subject_dx": -40.0, "wt_subject_dy": 0.0, "wt_focus_expected_dx": 0.0, "wt_focus_expected_dy": 0.0,
           "wt_grid_scale": 1.0, "flow_units": 1.0}
    assert other_focus_switch(row, [row], {}, {}, cfg) is not None  # the nominal (0, 0) flips it
    rec = {"focus_offsets_w": {"wt": [-40.0 / 384, 0.0, 0.5 / 384], "wr": [0.04, 0.06, 0.08]}}
    carried = carried_focus_offsets(rec, 384.0, cfg)
    assert set(carried) == {"wt"}
    (cx, cy), u = carried["wt"]
    assert (cx, cy) == pytest.approx((-40.0, 0.0)) and u == cfg.check.quick_focus_offset_scatter_px
    assert other_focus_switch(row, [row], {"wt": (cx, cy)}, {}, cfg, carried) is None
    assert np.isfinite(u)


@pytest.mark.parametrize("foc", [["x"], "abc", 3, {"wt": [1, 2]}, {"wt": "abc"}, {"wt": [None, 0, 0]}, None])
def test_a_malformed_carried_focus_record_carries_nothing(foc):
    """Another session's summary.json is input like any file: a malformed ``focus_offsets_w``
    carries nothing instead of failing the capture line."""
    from hzsr.qa.capture_qa import carried_focus_offsets

    rec = {"main_device": "x", "offset_d": 0.1, "margin_d": 0.05, "captures": 9, "focus_offsets_w": foc}
    assert carried_focus_offsets(rec, 640.0, QAConfig()) == {}


def test_the_quick_checks_memory_forgets_captures_that_are_no_longer_what_it_saw(tmp_path):
    """A retaken capture, a discarded one, and a session made again under the same path in the
    same process: only the captures as they now are lend their figures to the session's offset."""
    import os

    from hzsr.qa.capture_qa import _session_memory

    caps = tmp_path / "sess" / "captures"
    for i in range(3):
        (caps / f"c{i:05d}").mkdir(parents=True)
        (caps / f"c{i:05d}" / "capture.json").write_text("{}")
    store: dict = {}
    for i in range(3):
        seen = _session_memory(store, caps / f"c{i:05d}", float(i))
    assert seen == {"c00000": 0.0, "c00001": 1.0, "c00002": 2.0}
    shutil.rmtree(caps / "c00000")  # discarded
    st = (caps / "c00001" / "capture.json").stat()
    (caps / "c00001" / "capture.json").write_text("{}")  # retaken: written again
    os.utime(caps / "c00001" / "capture.json", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert _session_memory(store, caps / "c00002", 2.5) == {"c00002": 2.5}
    # The whole session made again at the same path: the old figures are gone.
    shutil.rmtree(tmp_path / "sess")
    (caps / "c00000").mkdir(parents=True)
    (caps / "c00000" / "capture.json").write_text('{"again": 1}')
    (caps / "c00001").mkdir()
    (caps / "c00001" / "capture.json").write_text('{"again": 1}')
    assert _session_memory(store, caps / "c00001", 9.0) == {"c00001": 9.0}
