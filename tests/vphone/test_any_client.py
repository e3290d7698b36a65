"""A client nobody here wrote, talking to a virtual phone's adbd directly: adb-shell (PyPI).

adb-shell speaks the device protocol itself (no adb server in between) and waits for the
phone's answer to each close; before the phone echoed CLSE, its push, pull, stat and list each
hung to their timeout. Every call here runs under adb-shell's own read timeout of 2 s, the bound
the issue sets: a missing echo is a hang, so it fails with AdbTimeoutError, never slowly passes.
"""

from __future__ import annotations

import stat

import pytest

from hzsr.sim.profiles import VPHONE_5X
from hzsr.vphone.phone import VirtualPhone

adb_device = pytest.importorskip("adb_shell.adb_device", reason="adb-shell is a [dev] extra: pip install adb-shell")

BOUND_S = 2.0


@pytest.fixture(scope="module")
def client():
    phone = VirtualPhone(VPHONE_5X, "VPH5XANY0001")
    dev = adb_device.AdbDeviceTcp("127.0.0.1", phone.port, default_transport_timeout_s=BOUND_S)
    assert dev.connect(rsa_keys=None, auth_timeout_s=BOUND_S, read_timeout_s=BOUND_S)
    yield dev, phone
    dev.close()
    phone.stop()


def test_shell(client):
    dev, _ = client
    assert dev.shell("getprop ro.serialno", read_timeout_s=BOUND_S) == "VPH5XANY0001\n"
    assert dev.shell("echo $((6*7)) a{b,c}", read_timeout_s=BOUND_S) == "42 ab ac\n"


def test_push_pull_stat_list(client, tmp_path):
    dev, phone = client
    src = tmp_path / "src.bin"
    data = bytes(range(256)) * 1000
    src.write_bytes(data)
    dev.push(str(src), "/data/local/tmp/any/src.bin", read_timeout_s=BOUND_S)
    assert phone.storage.host_path("/data/local/tmp/any/src.bin").read_bytes() == data
    mode, size, _mtime = dev.stat("/data/local/tmp/any/src.bin", read_timeout_s=BOUND_S)
    assert stat.S_ISREG(mode) and size == len(data)
    names = {e.filename.decode() for e in dev.list("/data/local/tmp/any", read_timeout_s=BOUND_S)}
    assert names == {".", "..", "src.bin"}
    dst = tmp_path / "dst.bin"
    dev.pull("/data/local/tmp/any/src.bin", str(dst), read_timeout_s=BOUND_S)
    assert dst.read_bytes() == data
    # and the transport still serves a shell after the sync streams closed
    assert dev.shell("ls /data/local/tmp/any", read_timeout_s=BOUND_S) == "src.bin\n"
