"""3A control over the agent protocol (v2), against the virtual rig; and a v1 agent still works."""

import subprocess
import sys

import pytest

from hzsr.capture.doctor import DoctorConfig, run_doctor
from hzsr.capture.link import Backoff, RigLink
from hzsr.capture.rigfile import load_rig
from hzsr.capture.session_run import CaptureConfig, CaptureRun
from hzsr.capture.three_a import ThreeAConfig, overlap_brightness_difference, parse_af
from hzsr.core.errors import CaptureError, ConfigError
from hzsr.core.records import CaptureRecord
from hzsr.core.validate import validate_session
from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig

pytestmark = pytest.mark.adb


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = VirtualRig(tmp_path_factory.mktemp("rig3a"), VirtualRigConfig(size=(320, 240), seed=1)).start()
    yield r
    r.stop()


def _run(rig, session, three_a=None):
    link = RigLink(load_rig(rig.rig_yaml), backoff=Backoff(tries=3, base_s=0.2), agent_timeout_s=5.0)
    cfg = CaptureConfig(three_a=three_a or ThreeAConfig())
    return CaptureRun(session, link, cfg, rig_path=str(rig.rig_yaml), say=lambda m: None)


@pytest.fixture
def ae_units_differ(rig):
    """Two units whose auto-exposure meters a quarter stop apart (a realistic unit spread): then
    only matching, not luck of the scene, brings their frames together."""
    bias = rig.world.rig.exposure_bias
    old = dict(bias)
    bias["reference"] = old["main"] * 1.25
    yield
    bias.update(old)


def test_locked_and_matched_session(rig, tmp_path, ae_units_differ):
    run = _run(rig, tmp_path / "s", ThreeAConfig(lock_3a=True, match_exposure=True))
    run.open()
    res = [run.capture("lobby", []) for _ in range(3)]
    run.close()
    assert all(r.status == "complete" for r in res)
    assert [f.line() for f in validate_session(tmp_path / "s") if f.severity == "error"] == []
    diffs = []
    for r in res:
        cdir = tmp_path / "s" / "captures" / r.capture_id
        rec = CaptureRecord.load(cdir)
        t, ref = rec.frame("main_T"), rec.frame("ref_T")
        assert (t.exposure_time_ns, t.iso, t.wb_gains) == (ref.exposure_time_ns, ref.iso, ref.wb_gains)
        assert (t.ae_state, t.awb_state, ref.ae_mode, ref.awb_mode) == ("LOCKED", "LOCKED", "OFF", "OFF")
        for f in rec.frames:
            assert f.ccm is not None and len(f.ccm) == 9 and f.f_number and f.focal_length_mm
            assert f.frame_duration_ns == 33_333_333 and f.distortion == [0.0] * 5 and f.af_state
        diff, share = overlap_brightness_difference(cdir / "main_T.jpg", cdir / "ref_T.jpg")
        assert share > 0.3  # the measure covers a good part of the view
        diffs.append(diff)
    print("overlap brightness difference, locked+matched:", [f"{d:.4f}" for d in diffs])
    assert max(diffs) <= 0.02
    # The measure sees through metadata: a reference agent that reports the copied settings but
    # renders with its own auto 3A (the ignore_3a fault) is caught by the images alone.
    ref = rig.phone("reference")
    ref.call(lambda: setattr(ref.agent.faults, "ignore_3a", True))
    try:
        run = _run(rig, tmp_path / "s", ThreeAConfig(lock_3a=True, match_exposure=True))
        run.open()
        cids = [run.capture("lobby", []).capture_id for _ in range(3)]
        run.close()
    finally:
        ref.call(lambda: setattr(ref.agent.faults, "ignore_3a", False))
    lied = []
    for cid in cids:
        cdir = tmp_path / "s" / "captures" / cid
        rec = CaptureRecord.load(cdir)
        assert rec.frame("main_T").exposure_time_ns == rec.frame("ref_T").exposure_time_ns  # the lie
        lied.append(overlap_brightness_difference(cdir / "main_T.jpg", cdir / "ref_T.jpg")[0])
    print("with the reference ignoring the settings:", [f"{d:.4f}" for d in lied])
    assert max(lied) > 0.02


def test_doctor_warns_on_differing_t_then_passes_when_matched(rig):
    link = RigLink(load_rig(rig.rig_yaml))
    try:
        t = link.agent("main").request("set_3a", cameras=["T"], ae_lock=True, awb_lock=True)["cameras"]["T"]
        link.agent("reference").request("set_3a", cameras=["T"], exposure_time_ns=int(t["exposure_time_ns"] * 1.05),
                                        iso=t["iso"], wb_gains=t["wb_gains"])  # 5% brighter
        row = next(r for r in run_doctor(link, DoctorConfig(sync_exchanges=10)).rows if r.check == "T settings")
        assert row.status == "warn" and "--match-exposure" in row.detail, row
        t = link.agent("main").request("set_3a", cameras=["T"], ae_lock=True, awb_lock=True)["cameras"]["T"]
        link.agent("reference").request("set_3a", cameras=["T"], exposure_time_ns=t["exposure_time_ns"],
                                        iso=t["iso"], wb_gains=t["wb_gains"])
        row = next(r for r in run_doctor(link, DoctorConfig(sync_exchanges=10)).rows if r.check == "T settings")
        assert row.status == "pass", row
    finally:
        for role in ("main", "reference"):
            link.agent(role).request("set_3a", cameras=["W", "T"], ae_lock=False, awb_lock=False)
        link.close()


def test_af_fixed_and_region(rig, tmp_path):
    run = _run(rig, tmp_path / "af", ThreeAConfig(af="fixed:0.5"))
    run.open()
    cid = run.capture("s", []).capture_id
    rec = CaptureRecord.load(tmp_path / "af" / "captures" / cid)
    assert all(f.focus_distance_diopters == 0.5 and f.af_mode == "OFF" and f.af_state == "INACTIVE"
               for f in rec.frames)
    run.cfg.three_a = ThreeAConfig(af="roi:10,20,64,48", lock_3a=True)
    cid = run.capture("s", []).capture_id
    run.close()
    rec = CaptureRecord.load(tmp_path / "af" / "captures" / cid)
    assert all(f.af_roi == [10, 20, 64, 48] and f.af_mode == "AUTO" and f.af_state == "FOCUSED_LOCKED"
               for f in rec.frames)


def test_agent_refuses_bad_3a_requests(rig):
    link = RigLink(load_rig(rig.rig_yaml))
    a = link.agent("main")
    try:
        for bad, msg in (({"exposure_time_ns": 10_000_000}, "needs both"), ({"af_mode": "fixed"}, "focus_diopters"),
                         ({"wb_gains": [1, 1, 1]}, "wb_gains"), ({"af_region": [0, 0, 9999, 10]}, "af_region"),
                         ({"bogus": 1}, "unknown field 'bogus'"), ({"iso": 100, "exposure_time_ns": 1.5}, "integer")):
            with pytest.raises(Exception, match=msg) as ei:
                a.request("set_3a", **bad)
            assert ei.value.code == "bad_request"
        assert a.request("hello")["protocol_version"] == 2  # still serving after the errors
    finally:
        link.close()


def test_v1_agent_still_captures_and_3a_needs_v2(rig, tmp_path):
    for p in rig.phones:
        p.call(lambda p=p: setattr(p.agent, "protocol_version", 1))
    try:
        run = _run(rig, tmp_path / "v1")
        run.open()
        cid = run.capture("s", []).capture_id
        rec = CaptureRecord.load(tmp_path / "v1" / "captures" / cid)
        assert all(f.ae_mode is None and f.wb_gains is None for f in rec.frames)
        run.cfg.three_a = ThreeAConfig(lock_3a=True)
        with pytest.raises(CaptureError, match="protocol 1"):
            run.capture("s", [])
        run.close()
        assert [f.line() for f in validate_session(tmp_path / "v1") if f.severity == "error"] == []
    finally:
        for p in rig.phones:
            p.call(lambda p=p: setattr(p.agent, "protocol_version", 2))


def test_af_option_errors(tmp_path):
    with pytest.raises(ConfigError, match="--af"):
        parse_af("roi:1,2,3")
    r = subprocess.run([sys.executable, "-m", "hzsr.cli", "capture", "run", str(tmp_path / "s"),
                        "--rig", str(tmp_path / "no.yaml"), "--af", "fixed:x"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "--af" in r.stderr and "Traceback" not in r.stderr


def test_validator_accepts_old_frames_and_checks_new_fields(sim_session):
    import json

    assert [f for f in validate_session(sim_session) if f.severity == "error"] == []  # no 3A fields
    cap = next((sim_session / "captures").iterdir()) / "capture.json"
    doc = json.loads(cap.read_text())
    doc["frames"][0].update(wb_gains=[2.0, 1.0, 1.0], ae_state="LOCKED", ccm=[1.0] * 9)
    cap.write_text(json.dumps(doc))
    errors = [f.line() for f in validate_session(sim_session) if f.severity == "error"]
    assert len(errors) == 1 and "wb_gains" in errors[0] and "expected 4 numbers" in errors[0], errors
