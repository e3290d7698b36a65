"""``--faults clock_jump_ms=X@reference`` steps the clock mid-session, on an event (after capture K)."""

import json

import pytest

from hzsr.capture.link import Backoff, RigLink
from hzsr.capture.rigfile import load_rig
from hzsr.capture.session_run import CaptureConfig, CaptureRun
from hzsr.core.records import SessionRecord
from hzsr.sync.check import run_sync_check
from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig
from tests.rig_truth import true_skews_us

pytestmark = pytest.mark.adb


def test_clock_jump_fault_fires_after_capture_k(tmp_path):
    rig = VirtualRig(tmp_path / "rig", VirtualRigConfig(
        size=(160, 120), faults="clock_jump_ms=40@reference,clock_jump_after=2@reference")).start()
    try:
        link = RigLink(load_rig(rig.rig_yaml), backoff=Backoff(tries=5, base_s=0.2), agent_timeout_s=5.0)
        run = CaptureRun(tmp_path / "s", link, CaptureConfig(lead_ms=400), rig_path=str(rig.rig_yaml),
                         say=lambda m: None)
        run.open()
        res = [run.capture("s", []) for _ in range(4)]
        run.link.close()
    finally:
        rig.stop()
    events = [json.loads(x) for x in (tmp_path / "s" / "journal.jsonl").read_text().splitlines()]
    jumps = [e for e in events if e["event"] == "clock_jump"]
    ref = SessionRecord.load(tmp_path / "s").device("reference")
    # One step, on the reference phone, found by the sync right after its second capture.
    assert len(jumps) == 1 and jumps[0]["device"] == ref.serial and abs(jumps[0]["step_ns"] - 40e6) < 1e6
    order = [e["event"] if e["event"] != "trigger" else e["capture_id"] for e in events
             if e["event"] in ("trigger", "clock_jump")]
    assert order == ["c00000", "c00001", "clock_jump", "c00002", "c00003"]
    # The capture the step may have touched fails, live and in sync check alike; the rest map right.
    assert res[1].verdict == "fail" and "stepped" in res[1].reason
    run_sync_check(tmp_path / "s", plots=False)
    rows = {r["capture_id"]: r for r in json.loads(json.dumps(
        __import__("pandas").read_csv(tmp_path / "s" / "sync" / "sync.csv").to_dict("records")))}
    assert "clock_jump" in rows["c00001"]["flags"]
    assert all("clock_jump" not in str(rows[c]["flags"]) for c in ("c00000", "c00002", "c00003"))
    true = true_skews_us(rig)
    for r in (res[0], res[2], res[3]):
        assert abs(r.skew_us - true[r.capture_id]) <= r.bound_us
