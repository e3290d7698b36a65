"""The virtual phone's ADB device side, driven by the real adb server (adbutils wheel) and adbutils."""

import socket
import struct
import time

import pytest

from hzsr.capture.adb_server import AdbServer
from hzsr.sim.profiles import VPHONE_5X
from hzsr.vphone.adb_device import A_CNXN, A_VERSION, A_WRTE, pack
from hzsr.vphone.phone import VirtualPhone

pytestmark = pytest.mark.adb


def _wait_state(client, serial, want, timeout=10.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        states = {d.serial: d.state for d in client.list()}
        if states.get(serial) == want or (want is None and serial not in states):
            return states.get(serial)
        time.sleep(0.1)
    return {d.serial: d.state for d in client.list()}.get(serial)


@pytest.fixture(scope="module")
def rig():
    server = AdbServer.start()
    phones = [VirtualPhone(VPHONE_5X, "VPH5XAAA001"), VirtualPhone(VPHONE_5X, "VPH5XAAA002")]
    client = server.client()
    serials = []
    for p in phones:
        out = server.run("connect", f"127.0.0.1:{p.port}")
        assert "connected" in out.stdout, out
        serials.append(f"127.0.0.1:{p.port}")
        assert _wait_state(client, serials[-1], "device") == "device"
    yield server, phones, serials
    for p in phones:
        p.stop()
    server.stop()


def test_list_shows_both_with_model(rig):
    server, _, serials = rig
    client = server.client()
    assert {d.serial for d in client.list() if d.state == "device"} >= set(serials)
    for s in serials:
        assert client.device(s).prop.model == "HZSR Virtual 5x"


def test_shell2_exit_codes_and_operators(rig):
    server, _, serials = rig
    d = server.client().device(serials[0])
    assert d.shell2("false").returncode == 1
    assert d.shell2("true").returncode == 0
    r = d.shell2("false; echo $? && echo ok || echo never")
    assert r.returncode == 0 and r.output == "1\nok\n"
    assert d.shell2("nosuchcmd").returncode == 127
    assert d.shell("getprop ro.serialno").strip() == "VPH5XAAA001"


def test_adb_binary_shell_getprop(rig):
    server, _, serials = rig
    out = server.run("-s", serials[1], "shell", "getprop", "ro.product.model")
    assert out.returncode == 0 and out.stdout.strip() == "HZSR Virtual 5x"


def _raw(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(pack(A_CNXN, A_VERSION, 4096, b"host::\0"))
    hdr = s.recv(24)
    assert struct.unpack("<6I", hdr)[0] == A_CNXN
    return s


def _dropped(sock) -> bool:
    sock.settimeout(5)
    try:
        while True:
            if sock.recv(65536) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True


@pytest.mark.parametrize("bad", ["magic", "oversized"])
def test_malformed_packet_refused_others_keep_working(rig, bad):
    server, phones, serials = rig
    s = _raw(phones[0].port)
    if bad == "magic":
        s.sendall(struct.pack("<6I", A_WRTE, 1, 1, 0, 0, 0x12345678))
    else:
        s.sendall(struct.pack("<6I", A_WRTE, 1, 1, 8 * 1024 * 1024, 0, A_WRTE ^ 0xFFFFFFFF))
    assert _dropped(s)
    s.close()
    d = server.client().device(serials[0])
    assert d.shell("echo alive").strip() == "alive"


def test_killed_phone_goes_offline(rig):
    server, _, _ = rig
    extra = VirtualPhone(VPHONE_5X, "VPH5XAAA003")
    serial = f"127.0.0.1:{extra.port}"
    assert "connected" in server.run("connect", serial).stdout
    client = server.client()
    assert _wait_state(client, serial, "device") == "device"
    extra.stop()
    assert _wait_state(client, serial, "offline") == "offline"


def test_root_and_unroot_answer_as_a_user_build(rig):
    server, _, serials = rig
    r = server.run("-s", serials[0], "root")
    assert "adbd cannot run as root in production builds" in r.stdout + r.stderr, r
    r = server.run("-s", serials[0], "unroot")
    assert "adbd not running as root" in r.stdout + r.stderr, r
    d = server.client().device(serials[0])
    assert d.shell("id -u").strip() == "2000"  # still the shell user, and the transport still works
    assert d.shell("settings get global adb_enabled").strip() == "1"
    assert "cmd" not in server.run("-s", serials[0], "features").stdout.split()


def test_shell_output_is_never_silently_empty_under_load(rig):
    """The intermittent empty output of the issue: 240 concurrent shells while the CPUs are busy."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    server, _, serials = rig
    client = server.client()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        def one(k: int) -> tuple[int, str]:
            return k, client.device(serials[k % 2]).shell(f"echo out{k}; getprop ro.serialno")

        with ThreadPoolExecutor(12) as ex:
            got = list(ex.map(one, range(240)))
    finally:
        for b in busy:
            b.kill()
            b.wait()
    bad = [(k, out) for k, out in got if out.split() != [f"out{k}", f"VPH5XAAA00{k % 2 + 1}"]]
    assert not bad, f"{len(bad)} of 240 wrong, e.g. {bad[:3]}"


def test_killing_an_adb_shell_client_stops_its_command(rig):
    """The issue's orphan: `adb shell sleep` killed on the host; the phone's command must end."""
    import subprocess
    import threading

    server, phones, serials = rig
    marker = "/data/local/tmp/orphan-started"
    before = {t for t in threading.enumerate() if t.name.startswith("vphone-shell-")}
    client = subprocess.Popen([server.adb, "-P", str(server.port), "-s", serials[0], "shell",
                               f"touch {marker}; sleep 600"])
    try:
        t_end = time.time() + 20  # caps on events, not timings
        while not phones[0].storage.host_path(marker).exists():
            assert time.time() < t_end, "the command never started"
            time.sleep(0.05)
        mine = {t for t in threading.enumerate() if t.name.startswith("vphone-shell-")} - before
        assert mine, "no shell thread for the command"
        client.kill()
        client.wait()
        for t in mine:  # the server closes the stream; the phone hangs the 600 s sleep up
            t.join(20)
            assert not t.is_alive(), "the orphaned command still runs"
    finally:
        if client.poll() is None:
            client.kill()
