"""The session contract: one journal state machine, one captures() iterator, typed tables, verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hzsr.core.errors import SessionFormatError
from hzsr.core.journal import Journal
from hzsr.core.session import CaptureState, JournalState, captures, count_states, journal_states
from hzsr.core.tables import QA_TABLE, SYNC_TABLE, QARow, SyncRow
from hzsr.core.verdict import SkewThresholds, Verdict, skew_reasons, verdict_of, worst


def _ev(event: str, cid: str, **kw) -> dict:
    return {"event": event, "capture_id": cid, **kw}


# -- the journal's state machine ---------------------------------------------------------------
def test_journal_states_every_transition():
    events = [
        _ev("trigger", "a"), _ev("capture_complete", "a"),
        _ev("trigger", "b"), _ev("capture_incomplete", "b", reason="link", permanent=False),
        _ev("trigger", "c"), _ev("capture_incomplete", "c", reason="camera error", permanent=True),
        _ev("trigger", "d"),
        _ev("trigger", "e"), _ev("capture_incomplete", "e", permanent=True),
        _ev("capture_abandoned", "e", reason="phone has no trace"),
        _ev("trigger", "f"), _ev("capture_complete", "f"), _ev("capture_discarded", "f", reason="retake"),
        _ev("trigger", "g"), _ev("capture_incomplete", "g", reason="x"), _ev("capture_complete", "g"),
    ]
    st = journal_states(events)
    assert {k: str(v.state) for k, v in st.items()} == {
        "a": "complete", "b": "incomplete", "c": "failed", "d": "triggered", "e": "abandoned",
        "f": "discarded", "g": "complete"}
    assert st["b"].reason == "link" and st["e"].reason == "phone has no trace" and st["f"].reason == "retake"


def test_settled_states_are_not_undone():
    """Rules where the two old copies disagreed: a repeated trigger does not reset a capture, and a
    complete or discarded capture is never made incomplete or abandoned afterwards."""
    events = [_ev("trigger", "a"), _ev("capture_complete", "a"), _ev("trigger", "a"),
              _ev("capture_incomplete", "a", permanent=True), _ev("capture_abandoned", "a"),
              _ev("trigger", "b"), _ev("capture_complete", "b"), _ev("capture_discarded", "b"),
              _ev("capture_complete", "b"), _ev("capture_abandoned", "b")]
    st = journal_states(events)
    assert st["a"].state is JournalState.COMPLETE and st["b"].state is JournalState.DISCARDED


def test_journal_states_ignore_ill_typed_events():
    st = journal_states([{"event": "trigger"}, {"event": "trigger", "capture_id": 7}, {"capture_id": "x"}])
    assert st == {}


# -- captures() ----------------------------------------------------------------------------------
def _capture_dir(root: Path, cid: str, status: str = "complete") -> None:
    d = root / "captures" / cid
    d.mkdir(parents=True)
    (d / "capture.json").write_text(json.dumps({"capture_id": cid, "status": status}))


def test_captures_yields_every_state(tmp_path):
    root = tmp_path / "s"
    j = Journal(root / "journal.jsonl")
    for e in [_ev("trigger", "c0"), _ev("capture_complete", "c0"),
              _ev("trigger", "c1"), _ev("capture_complete", "c1"), _ev("capture_discarded", "c1", reason="blur"),
              _ev("trigger", "c2"), _ev("capture_complete", "c2"),  # discarded in its capture.json only
              _ev("trigger", "c3"), _ev("capture_incomplete", "c3", reason="link down"),
              _ev("trigger", "c4"), _ev("capture_incomplete", "c4", permanent=True),
              _ev("capture_abandoned", "c4", reason="camera error")]:
        j.append(e.pop("event"), **e)
    for cid in ("c0", "c1"):
        _capture_dir(root, cid)
    _capture_dir(root, "c2", status="discarded")
    (root / "abandoned" / "c4").mkdir(parents=True)
    (root / "abandoned" / "c9").mkdir()  # not in the journal
    (root / "captures" / ".tmp-c5").mkdir()  # never a capture
    got = {c.capture_id: (str(c.state), c.reason) for c in captures(root)}
    assert got == {"c0": ("complete", ""), "c1": ("discarded", "blur"), "c2": ("discarded", "discarded by the crew"),
                   "c3": ("unfinished", "link down"), "c4": ("abandoned", "camera error"),
                   "c9": ("abandoned", "abandoned capture the journal does not list")}
    assert [c.capture_id for c in captures(root, [CaptureState.COMPLETE])] == ["c0"]
    assert count_states(captures(root)) == {"complete": 1, "discarded": 2, "unfinished": 1, "abandoned": 2}


def test_captures_without_journal_or_folder(tmp_path):
    assert list(captures(tmp_path / "nothing")) == []
    _capture_dir(tmp_path, "c0")
    (tmp_path / "journal.jsonl").mkdir()  # unreadable journal: the folders still count
    assert [str(c.state) for c in captures(tmp_path)] == ["complete"]


# -- verdicts -------------------------------------------------------------------------------------
def test_worst_and_parse():
    assert worst(["pass", None, float("nan"), Verdict.WARN]) is Verdict.WARN
    assert worst([]) is None and worst(["ok"]) is Verdict.PASS
    with pytest.raises(SessionFormatError, match="x.csv: verdict: 'maybe' is not a verdict"):
        Verdict.parse("maybe", file="x.csv", field="verdict")


@pytest.mark.parametrize("skew, bound, codes, verdict", [
    (100, 50, [], "pass"), (-240, 10, [], "pass"), (200, 60, ["skew_high"], "warn"),
    (300, 60, ["skew_high"], "warn"), (320, 60, ["skew_exceeds_limit"], "fail"),
    (900, 50, ["skew_exceeds_limit"], "fail"), (990, 40, ["skew_exceeds_limit"], "fail"),
    (1100, 50, ["skew_exceeds_max"], "fail"), (-1100, 50, ["skew_exceeds_max"], "fail"),
    (0, 1200, ["skew_may_exceed_max", "bound_exceeds_threshold"], "warn"),
])
def test_the_one_skew_rule(skew, bound, codes, verdict):
    rs = skew_reasons(skew, bound)
    assert [r.code for r in rs] == codes and verdict_of(rs) == verdict


def test_skew_rule_pass_limit_is_capped_at_max():
    rs = skew_reasons(600, 10, SkewThresholds(pass_limit_us=2000, max_skew_us=500))
    assert [r.code for r in rs] == ["skew_exceeds_max"]
    assert [r.code for r in skew_reasons(300, 60, SkewThresholds(pass_limit_us=400))] == []


def test_skew_rule_says_uncalibrated_with_the_command_and_fails_a_loose_trigger():
    rs = skew_reasons(40, 400, calibrated=False)
    assert [r.code for r in rs] == ["skew_high", "rig_uncalibrated"] and verdict_of(rs) == "warn"
    assert "hzsr sync calibrate" in rs[1].message and "hzsr sync board" in rs[1].message
    assert skew_reasons(40, 100, calibrated=False) == []  # a bound that passes needs no advice
    rs = skew_reasons(40, 400, calibrated=True)
    assert [r.code for r in rs] == ["skew_high"] and rs[0].message.endswith("retake")
    rs = skew_reasons(40, 100, calibrated=True, loose_trigger="reference: bound 3300 us")
    assert [r.code for r in rs] == ["trigger_from_loose_sample"] and verdict_of(rs) == "fail"


# -- typed tables ---------------------------------------------------------------------------------
def test_sync_table_round_trip_and_skew_verdict(tmp_path):
    rs = skew_reasons(240, 40)
    rows = [SyncRow("c0", "s0", 10**15 + 1, 10**15 + 241, 240.0, 40.0, None, "n", [r.code for r in rs],
                    [r.message for r in rs], verdict_of(rs)), SyncRow("c1", verdict=Verdict.FAIL, flags=["clock_jump"])]
    p = SYNC_TABLE.write(tmp_path / "sync.csv", rows)
    back = SYNC_TABLE.read(p)
    assert back == rows
    assert back[0].skew_verdict is Verdict.WARN and back[1].skew_verdict is None
    assert p.read_text().splitlines()[0].endswith(",schema_version")


def test_qa_table_keeps_every_figure(tmp_path):
    rows = [QARow("c0", "s", Verdict.WARN, ["warn: blur: soft"], ["blur"], 12.5, Verdict.PASS,
                  {"wr_psnr_db": 31.25, "scene_tags": "portrait;demo"}),
            QARow("c1", figures={"wr_psnr_db": 20.0, "seconds": 0.5})]
    back = QA_TABLE.read(QA_TABLE.write(tmp_path / "qa.csv", rows))
    assert back[0] == rows[0]
    assert back[1].figures == {"wr_psnr_db": 20, "seconds": 0.5} and back[1].sync_verdict is None
    df = QA_TABLE.read_frame(tmp_path / "qa.csv")
    assert list(df.columns[:7]) == ["capture_id", "scene_id", "verdict", "reasons", "codes", "sync_skew_us",
                                    "sync_verdict"]


@pytest.mark.parametrize("text, msg", [
    ("capture_id,skew_bound_us\nc0,abc\n", "sync.csv: skew_bound_us: row 1: 'abc' is not a number"),
    ("capture_id,main_W_host_ns\nc0,1\nc1,1.5\n", "sync.csv: main_W_host_ns: row 2: '1.5' is not a whole number"),
    ("capture_id,verdict\nc0,maybe\n", "sync.csv: verdict: row 1: 'maybe' is not a verdict"),
    ("scene_id\ns0\n", "sync.csv: capture_id: missing column"),
    ("capture_id,schema_version\nc0,2\n", "sync.csv: schema_version: row 1: version 2 is newer than this hzsr"),
    ("capture_id,verdict\nc0\n", "sync.csv: row 1: 1 cells, the header has 2"),
    ("", "sync.csv: empty file"),
])
def test_a_bad_cell_names_file_row_and_column(tmp_path, text, msg):
    p = tmp_path / "sync.csv"
    p.write_text(text)
    with pytest.raises(SessionFormatError) as e:
        SYNC_TABLE.read(p)
    assert msg in e.value.one_line()


def test_legacy_table_without_version_reads_as_version_1(tmp_path):
    p = tmp_path / "sync.csv"
    p.write_text("capture_id,skew_ref_main_us,verdict,flags\nc0,12.5,ok,\n")
    (row,) = SYNC_TABLE.read(p)
    assert row.verdict is Verdict.PASS and row.skew_ref_main_us == 12.5 and row.flags == []
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(SessionFormatError, match="not UTF-8") as e:
        SYNC_TABLE.read(p)
    assert e.value.exit_code == 2
