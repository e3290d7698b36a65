"""The virtual rig through the real adb server (adbutils wheel binary) and adbutils.

These are the integration tests: they drive the phones exactly as a host drives real ones.
"""

import hashlib
import json
import os
import socket
import time

import numpy as np
import pytest
import yaml
from adbutils import AdbError, Network

from hzsr.core.agent_protocol import AGENT_FILES
from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig

pytestmark = pytest.mark.adb


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = VirtualRig(tmp_path_factory.mktemp("rig"), VirtualRigConfig(size=(320, 240))).start()
    yield r
    r.stop()


def _dev(rig, role="main"):
    return rig.adb.client().device(rig.phone(role).address)


class Agent:
    """A minimal JSON-lines client of the agent, over adbutils' direct stream."""

    def __init__(self, dev, timeout=5.0):
        self.sock = dev.create_connection(Network.LOCAL_ABSTRACT, "hzsr_agent")
        self.sock.settimeout(timeout)
        self.f = self.sock.makefile("rwb")

    def __call__(self, **req):
        self.f.write((json.dumps(req) + "\n").encode())
        self.f.flush()
        return json.loads(self.f.readline())

    def close(self):
        self.f.close()
        self.sock.close()


def _wait_done(dev, session, cid, timeout=10.0):
    path = f"{AGENT_FILES}/{session}/{cid}/done"
    t0 = time.time()
    while time.time() - t0 < timeout:
        if dev.sync.stat(path).size:
            return json.loads(dev.sync.read_bytes(path))
        time.sleep(0.05)
    raise AssertionError(f"no done marker for {cid}")


def test_list_shows_both_with_model_and_serial(rig):
    devs = {d.serial: d for d in rig.adb.client().list()}
    for p in rig.phones:
        assert devs[p.address].state == "device"
        d = rig.adb.client().device(p.address)
        assert d.prop.model == "HZSR Virtual 5x"
        assert d.shell("getprop ro.serialno").strip() == p.serial
    doc = yaml.safe_load(rig.rig_yaml.read_text())
    assert [p["role"] for p in doc["phones"]] == ["main", "reference"]


def test_shell2_exit_codes(rig):
    d = _dev(rig)
    assert d.shell2("false").returncode == 1
    assert d.shell2("ls /no/such/dir").returncode == 1
    assert d.shell2("echo hi && true").output == "hi\n"
    r = d.shell2("echo out; nosuch", v2=True)
    assert r.returncode == 127 and r.stdout == "out\n" and "not found" in r.stderr


def test_push_pull_20mb_roundtrip(rig, tmp_path):
    data = os.urandom(20 * 1024 * 1024)
    src, back = tmp_path / "big.bin", tmp_path / "back.bin"
    src.write_bytes(data)
    d = _dev(rig, "reference")
    d.sync.push(src, "/sdcard/Download/big.bin")
    phone_sha = d.shell("sha256sum /sdcard/Download/big.bin").split()[0]
    assert phone_sha == hashlib.sha256(data).hexdigest()
    d.sync.pull("/sdcard/Download/big.bin", back)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == phone_sha
    assert d.sync.stat("/sdcard/Download/big.bin").size == len(data)
    d.shell("rm /sdcard/Download/big.bin")


def test_adb_binary_push_pull_and_getprop(rig, tmp_path):
    p = rig.phone("main").address
    out = rig.adb.run("-s", p, "shell", "getprop", "ro.product.model")
    assert out.returncode == 0 and out.stdout.strip() == "HZSR Virtual 5x"
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(300_000))
    assert rig.adb.run("-s", p, "push", str(src), "/sdcard/Download/dir/a.bin").returncode == 0
    assert rig.adb.run("-s", p, "pull", "/sdcard/Download/dir/a.bin", str(tmp_path / "b.bin")).returncode == 0
    assert (tmp_path / "b.bin").read_bytes() == src.read_bytes()


def test_forward_reaches_agent(rig):
    d = _dev(rig)
    port = d.forward_port("localabstract:hzsr_agent")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b'{"cmd": "hello", "id": 7}\n')
        reply = json.loads(s.makefile("rb").readline())
    assert reply["ok"] and reply["id"] == 7 and reply["model"] == "HZSR Virtual 5x"
    assert {c["role"] for c in reply["cameras"]} == {"W", "T"}
    assert reply["sync_type"] == "APPROXIMATE" and reply["cameras"][0]["timestamp_source"] == "REALTIME"


def test_tcp_forward_and_unknown_socket(rig):
    d = _dev(rig, "reference")
    port = d.forward_port("tcp:38765")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b'{"cmd": "status"}\n')
        assert json.loads(s.makefile("rb").readline())["ok"]
    with pytest.raises(AdbError, match="closed"):  # refused like adbd refuses an unknown service
        d.create_connection(Network.LOCAL_ABSTRACT, "no_such_socket")
    assert d.shell("echo alive").strip() == "alive"


def test_path_traversal_refused_cleanly(rig, tmp_path):
    d = _dev(rig)
    r = d.shell2("cat ../../../../etc/passwd")
    assert r.returncode == 1 and "root:" not in r.output
    assert d.sync.stat("/sdcard/../../../../etc/passwd").size == 0
    with pytest.raises(AdbError):  # it means /tmp on the phone, whose root file system is read-only
        d.sync.push(b"x", "/sdcard/../../../../tmp/hzsr_escape_probe")
    assert not os.path.exists("/tmp/hzsr_escape_probe")
    assert d.shell("echo still-serving").strip() == "still-serving"


def test_agent_capture_writes_files_then_done(rig):
    d = _dev(rig)
    a = Agent(d)
    try:
        now = a(cmd="status")["boottime_ns"]
        # Three seconds of lead: the agent's ten frame-duration changes take about two, so a host
        # stalled between `status` and `capture` (a loaded CI machine) still leaves it the time.
        target = now + 3_000_000_000
        r = a(cmd="capture", session="t1", capture_id="c00000", target_ns=target, phase_align=True)
        agent = rig.phone("main").agent
        assert r["ok"]
        res, lead = agent.last_alignment
        assert lead > 1_000_000_000, f"the host took {(3e9 - lead) / 1e9:.2f} s to deliver the request"
        assert res.iterations > 0 and res.converged, res
        assert agent.aligner.overhead_est > 0  # it had to learn the HAL's overhead
        true_start = agent.stream.start(r["frame_number"])
        assert r["frame_timestamp_ns"] >= target  # the protocol's promise
        assert abs(true_start - target - 30_000) <= 15_000  # guard 30 us; threshold 10 us + line rounding
        done = _wait_done(d, "t1", "c00000")
        assert done["status"] == "ok"
        meta = json.loads(d.sync.read_bytes(f"{AGENT_FILES}/t1/c00000/meta.json"))
        assert [f["role"] for f in meta["frames"]] == ["W", "T"]
        for f in meta["frames"]:
            sha = d.shell(f"sha256sum {AGENT_FILES}/t1/c00000/{f['file']}").split()[0]
            assert sha == f["sha256"] and f["sensor_timestamp_ns"] == r["frame_timestamp_ns"]
        listed = a(cmd="list", session="t1")["captures"]
        assert listed[0]["status"] == "ok" and "done" in listed[0]["files"]
        # Errors are replies, and the connection keeps serving.
        assert a(cmd="capture", session="t1", capture_id="c00001", target_ns=now)["error"]["code"] == "target_in_past"
        assert a(cmd="capture", session="t1", capture_id="c00000",
                 target_ns=a(cmd="status")["boottime_ns"] + 10**9)["error"]["code"] == "exists"
        assert a(cmd="nope")["error"]["code"] == "unknown_cmd"
        assert a(cmd="capture", session="../x", capture_id="c", target_ns=1)["error"]["code"] == "bad_request"
        assert a(cmd="delete", session="t1", capture_id="c00000")["ok"]
        assert a(cmd="list", session="t1")["captures"] == []
    finally:
        a.close()


def test_bad_json_gets_an_error_reply(rig):
    a = Agent(_dev(rig))
    try:
        a.f.write(b"{not json\n")
        a.f.flush()
        assert json.loads(a.f.readline())["error"]["code"] == "bad_json"
        assert a(cmd="hello")["ok"]
    finally:
        a.close()


def test_time_exchange_estimate_within_its_bound(rig):
    """The SNTP estimate (min-rtt filter + interval intersection) against the phone's true clock:
    the error is within the estimate's own bound (no slack), which is no wider than rtt_min / 2."""
    from hzsr.core.clock import sntp_estimate

    a = Agent(_dev(rig, "reference"))
    try:
        stamps = []
        for _ in range(60):
            t0 = time.monotonic_ns()
            r = a(cmd="time")
            stamps.append((t0, r["t1_ns"], r["t2_ns"], time.monotonic_ns()))
        h, off, bound, used = sntp_estimate(np.array(stamps, np.float64))
        clock = rig.phone("reference").agent.clock
        true_off = clock.phone_ns(h) - h
        st = np.array(stamps, np.float64)
        rtt_min = ((st[:, 3] - st[:, 0]) - (st[:, 2] - st[:, 1])).min()
        assert abs(off - true_off) <= bound <= rtt_min / 2 + 1
        assert used >= 3
    finally:
        a.close()


def test_truth_outside_phone_storage(rig):
    # A capture of its own: the truth is written when frames are made, whatever ran before.
    d = _dev(rig)
    a = Agent(d)
    try:
        target = a(cmd="status")["boottime_ns"] + 10**9  # a stalled host still meets it
        assert a(cmd="capture", session="t_truth", capture_id="c00000", target_ns=target)["ok"]
        assert _wait_done(d, "t_truth", "c00000")["status"] == "ok"
    finally:
        a.close()
    truth = rig.workdir / "truth"
    assert any(truth.glob("*.jsonl"))
    for p in rig.phones:
        assert truth not in p.storage.root.parents and p.storage.root not in truth.parents
