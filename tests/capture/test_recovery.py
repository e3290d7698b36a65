"""Recovery from a dead adb server, faults fired on protocol events (never on timers).

Each test arms the virtual rig to SIGKILL its adb server at a protocol event (the start of the
pull of the K-th file, or the N-th ADB packet the phones receive), so the fault lands at the same
point of the capture however loaded the machine is. Each then checks that the fault fired, that
recovery really ran (the journal's ``link_recovered`` events: the server restarted on its own
port, every phone re-connected) and that the capture completed with nothing lost.
"""

import socket

import pytest

from hzsr.capture.adb_server import find_adb_server_pid
from hzsr.capture.link import Backoff, RigLink
from hzsr.capture.rigfile import load_rig
from hzsr.capture.session_run import CaptureConfig, CaptureRun
from hzsr.capture.virtual.virtual_rig import VirtualRig, VirtualRigConfig
from hzsr.core.journal import Journal

from .test_capture import _assert_nothing_lost

pytestmark = pytest.mark.adb


@pytest.fixture
def rig(tmp_path):
    r = VirtualRig(tmp_path / "rig", VirtualRigConfig(size=(160, 120))).start()
    yield r
    r.stop()


def _run(rig, session):
    link = RigLink(load_rig(rig.rig_yaml), backoff=Backoff(tries=6, base_s=0.05, max_s=0.5), agent_timeout_s=3.0)
    # lead_ms: the trigger lead must outlast a command round trip on a machine under full CPU
    # load (the 20-run stress check); the recovery, not the lead, is under test here.
    return CaptureRun(session, link, CaptureConfig(parallel_pull=False, lead_ms=400), rig_path=str(rig.rig_yaml),
                      say=lambda m: None)


def _recoveries(session):
    return [e for e in Journal(session / "journal.jsonl") if e["event"] == "link_recovered"]


def _assert_recovered(rig, run, session, old_pid):
    assert len(rig.fired) == 1 and rig.fired[0]["pid"] == old_pid  # the fault really fired
    rec = _recoveries(session)
    actions = [e["action"] for e in rec]
    # The server came back on its own port: restarted by recovery (adb -P PORT start-server), or
    # by adbutils' fallback (which now also uses the private port) and then noticed by its PID.
    assert {"adb_server_restarted", "adb_server_replaced"} & set(actions), actions
    assert run.link.server_restarts + actions.count("adb_server_replaced") >= 1
    reconnected = {e["serial"] for e in rec if e["action"] == "phone_reconnected"}
    assert reconnected == {p.address for p in rig.phones}  # both virtual phones re-attached by hand
    new_pid = find_adb_server_pid(rig.adb.port)
    assert new_pid is not None and new_pid != old_pid


@pytest.mark.parametrize("k", [1, 3])
def test_server_killed_during_pull_of_file_k_capture_completes(tmp_path, rig, k):
    sess = tmp_path / "s"
    run = _run(rig, sess)
    run.open()
    old = find_adb_server_pid(rig.adb.port)
    rig.kill_adb_server_on("recv", k)  # file k of the capture's 3 (sequential pulls: a fixed file)
    res = run.capture("s", [])
    assert res.status == "complete"
    _assert_recovered(rig, run, sess, old)
    assert _assert_nothing_lost(rig, sess) == 3
    assert run.capture("s", []).status == "complete"  # and the rig keeps working
    run.close()


def test_server_killed_after_nth_packet_during_clock_sync(tmp_path, rig):
    sess = tmp_path / "s"
    run = _run(rig, sess)
    run.open()
    old = find_adb_server_pid(rig.adb.port)
    rig.kill_adb_server_on("packet", 20)  # lands in the quick clock sync before the trigger
    res = run.capture("s", [])
    assert res.status == "complete" and abs(res.skew_us) < 1000
    _assert_recovered(rig, run, sess, old)
    assert _assert_nothing_lost(rig, sess) == 3
    run.close()


def test_recovery_never_touches_port_5037(tmp_path, rig):
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 5037)) == 0:
            pytest.skip("something else serves 5037 on this machine")
    run = _run(rig, tmp_path / "s")
    run.open()
    rig.kill_adb_server_on("recv", 2)
    assert run.capture("s", []).status == "complete"
    run.close()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", 5037)) != 0
    assert find_adb_server_pid(5037) is None
