"""Injected faults of the virtual rig, seen through the real adb server and adbutils."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from adbutils import AdbError

from hzsr.capture.adb_server import pid_alive as _alive
from hzsr.core.agent_protocol import AGENT_FILES
from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig

from .test_virtual_rig import Agent, _dev, _wait_done

pytestmark = pytest.mark.adb


@pytest.fixture
def rig(tmp_path):
    r = VirtualRig(tmp_path / "rig", VirtualRigConfig(size=(320, 240))).start()
    yield r
    r.stop()


def _put(rig, role, path, data):
    rig.phone(role).storage.write_atomic(path, data)


def test_drop_mid_pull_then_phone_comes_back(rig, tmp_path):
    data = os.urandom(2_000_000)
    _put(rig, "reference", "/sdcard/Download/f.bin", data)
    rig.phone("reference").drop_after_bytes(500_000)
    d = _dev(rig, "reference")
    with pytest.raises((AdbError, ConnectionError, OSError)):
        d.sync.read_bytes("/sdcard/Download/f.bin")
    # The transport was cut like a cable pulled; adb reconnects a TCP device by itself.
    assert rig.wait_state(rig.phone("reference").address, "device", 20)
    assert hashlib.sha256(d.sync.read_bytes("/sdcard/Download/f.bin")).digest() == hashlib.sha256(data).digest()


def test_flipped_byte_caught_by_phone_sha(rig):
    data = os.urandom(300_000)
    _put(rig, "main", "/sdcard/Download/g.bin", data)
    d = _dev(rig)
    rig.phone("main").flip_byte_next_pull()
    bad = d.sync.read_bytes("/sdcard/Download/g.bin")
    phone_sha = d.shell("sha256sum /sdcard/Download/g.bin").split()[0]
    assert len(bad) == len(data) and hashlib.sha256(bad).hexdigest() != phone_sha  # caught by the hash
    assert hashlib.sha256(d.sync.read_bytes("/sdcard/Download/g.bin")).hexdigest() == phone_sha  # re-pull


def test_storage_full(rig, tmp_path):
    rig.phone("main").set_storage_full()
    d = _dev(rig)
    with pytest.raises(AdbError):  # adbutils reports a SEND failure as "FAIL", without the reason
        d.sync.push(b"x" * 1000, "/sdcard/Download/h.bin")
    assert d.sync.stat("/sdcard/Download/h.bin").size == 0  # nothing half-written
    src = tmp_path / "h.bin"
    src.write_bytes(b"x" * 1000)
    out = rig.adb.run("-s", rig.phone("main").address, "push", str(src), "/sdcard/Download/h.bin")
    assert out.returncode != 0 and "No space left on device" in out.stdout + out.stderr
    a = Agent(d)
    try:
        now = a(cmd="status")["boottime_ns"]
        r = a(cmd="capture", session="s", capture_id="c1", target_ns=now + 10**9)
        assert r["error"]["code"] == "storage_full"
    finally:
        a.close()


def test_stalled_agent_then_recovers(rig):
    d = _dev(rig)
    a = Agent(d, timeout=0.5)
    try:
        assert a(cmd="hello")["ok"]
        rig.phone("main").stall_agent(True)
        with pytest.raises(TimeoutError):
            a(cmd="status")
        rig.phone("main").stall_agent(False)
        a.sock.settimeout(5)
        late = b""
        while not late.endswith(b"\n"):  # the file object is spent after a timeout; the socket is not
            late += a.sock.recv(4096)
        assert json.loads(late)["ok"]  # the stalled request is answered late
    finally:
        a.close()


def test_clock_jump_shows_in_time_replies(rig):
    a = Agent(_dev(rig, "reference"))
    try:
        def offset():
            t0 = time.monotonic_ns()
            r = a(cmd="time")
            return r["t1_ns"] - t0
        before = min(offset() for _ in range(10))
        rig.phone("reference").jump_clock(40.0)
        after = min(offset() for _ in range(10))
        assert 39e6 < after - before < 41e6
    finally:
        a.close()


def test_capture_failure_reported_in_done_marker(rig):
    rig.phone("main").fail_next_capture()
    d = _dev(rig)
    a = Agent(d)
    try:
        now = a(cmd="status")["boottime_ns"]
        assert a(cmd="capture", session="s", capture_id="c1", target_ns=now + 10**9)["ok"]
        done = _wait_done(d, "s", "c1")
        assert done["status"] == "failed" and done["error"]["code"] == "camera_error"
        assert d.sync.stat(f"{AGENT_FILES}/s/c1/W.jpg").size == 0  # no images from a failed capture
    finally:
        a.close()


def test_adb_server_killed_then_restarted(rig):
    pid = rig.adb.pid()
    rig.kill_adb_server()
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.05)
    with pytest.raises((AdbError, ConnectionError, OSError)):
        _dev(rig).shell("echo x")
    rig.restart_adb_server()
    assert _dev(rig).shell("echo back").strip() == "back"


def test_killed_phone_offline_restarted_online(rig):
    addr = rig.phone("reference").address
    rig.phone("reference").stop()
    assert rig.wait_state(addr, "offline", 10)
    rig.restart_phone("reference")
    assert rig.wait_state(addr, "device", 20)  # adb reconnects by itself (about 8 s)
    assert _dev(rig, "reference").shell("echo ok").strip() == "ok"


def test_rig_up_down_leaves_nothing(tmp_path):
    d = tmp_path / "cli"
    up = subprocess.run([sys.executable, "-m", "hzsr.cli", "rig", "up", "--virtual", "--background",
                         "--out", str(d), "--size", "160x120", "--json"], capture_output=True, text=True, timeout=90)
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    doc = (d / "rig.yaml").read_text()
    adb_pid = int(doc.split("adb_server_pid:")[1].split()[0])
    try:
        assert _alive(info["pid"]) and _alive(adb_pid)
        again = subprocess.run([sys.executable, "-m", "hzsr.cli", "rig", "up", "--virtual", "--out", str(d)],
                               capture_output=True, text=True, timeout=30)
        assert again.returncode == 1 and "already running" in again.stderr  # the rig's state, not an option
        down = subprocess.run([sys.executable, "-m", "hzsr.cli", "rig", "down", "--rig", str(d / "rig.yaml")],
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        assert not _alive(info["pid"]) and not _alive(adb_pid)
        assert not (d / "rig.yaml").exists()
    finally:  # a failed assertion must not leave this test's rig running (these PIDs are its own)
        for pid in (info["pid"], adb_pid):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    bad = subprocess.run([sys.executable, "-m", "hzsr.cli", "rig", "up", "--virtual", "--out", str(d),
                          "--faults", "unplug"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--faults: unknown fault 'unplug'" in bad.stderr


def test_default_adb_port_never_used():
    """After every rig test above (adb server killed included), nothing listens on 5037."""
    import socket

    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", 5037)) != 0


@pytest.mark.parametrize("defect, moved", [("refocus", {"reference"}), ("wrong_depth", {"main", "reference"}),
                                           (None, set())])
def test_a_crew_refocus_shows_in_the_frames_focus_metadata(rig, defect, moved):
    # A phone reports where its lens is, not what 3A asked: the reference phone the crew refocused
    # says so in its T frame's focus distance (QA's metadata check reads it), as a real one would.
    from hzsr.sim.defects import refocus_layer
    from hzsr.sim.world import write_crew_action

    write_crew_action(rig.world.crew_path.parent, scene=0, defect=defect)  # a portrait: near subject, far backdrop
    scene, _ = rig.world.scene_at(time.monotonic_ns())
    subject, other = 1 / scene.layer(scene.subject).depth_m, 1 / refocus_layer(scene).depth_m
    assert abs(subject - other) > 0.3
    focus = {}
    for role in ("main", "reference"):
        d = _dev(rig, role)
        a = Agent(d)
        try:
            now = a(cmd="status")["boottime_ns"]
            assert a(cmd="capture", session="s", capture_id=f"c{role}", target_ns=now + 5 * 10**8, cameras=["T"])["ok"]
            assert _wait_done(d, "s", f"c{role}")["status"] == "ok"
            meta = json.loads(d.sync.read_bytes(f"{AGENT_FILES}/s/c{role}/meta.json"))
            focus[role] = meta["frames"][0]["focus_distance_diopters"]
        finally:
            a.close()
    for role, f in focus.items():
        want = other if role in moved else subject
        assert abs(f - want) < 0.15 * subject, (role, f, want, subject)
