"""``rig down`` stops only what ``rig up`` recorded; a one-phone rig starts, checks and stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from hzsr.capture.adb_server import AdbServer, find_adb_server_pid, free_port, pid_alive
from hzsr.core.process import ProcessProof

pytestmark = pytest.mark.adb


def _cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hzsr.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def victim():
    """A process standing in for the rig: rig down may signal it only with its true proof."""
    argv = [sys.executable, "-c", "import time; time.sleep(120)"]
    p = subprocess.Popen(argv)
    proof = ProcessProof.once_running(p.pid, argv)
    assert proof is not None
    yield p, proof
    p.kill()
    p.wait()


def _rig_yaml(path, port, rig_proof, phones=("main", "reference")):
    procs = {"rig": {"pid": rig_proof.pid, "start_ticks": rig_proof.start_ticks, "cmdline": rig_proof.cmdline}}
    doc = {"adb": {"port": port}, "phones": [{"serial": f"p:{i}", "role": r} for i, r in enumerate(phones)],
           "virtual": {"pid": rig_proof.pid, "workdir": "/tmp", "truth_dir": "/tmp", "profile": "vphone-5x",
                       "processes": procs}}
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_foreign_adb_server_on_the_rigs_port_is_left_running(tmp_path, victim):
    proc, proof = victim
    foreign = AdbServer.start(free_port())  # not started by rig up: rig.yaml records no proof of it
    try:
        pid = find_adb_server_pid(foreign.port)
        assert pid is not None
        r = _cli("rig", "down", "--rig", str(_rig_yaml(tmp_path / "rig.yaml", foreign.port, proof)))
        assert r.returncode == 0, r.stderr
        assert proc.wait(10) == -signal.SIGTERM  # the rig's process: stopped
        assert pid_alive(pid) and find_adb_server_pid(foreign.port) == pid  # the foreign server: untouched
        assert f"left the adb server on port {foreign.port} (pid {pid}) running" in r.stdout
    finally:
        foreign.stop()


def test_a_rejected_rig_yaml_still_has_its_rig_stopped(tmp_path, victim):
    proc, proof = victim
    path = _rig_yaml(tmp_path / "rig.yaml", free_port(), proof, phones=())
    r = _cli("rig", "down", "--rig", str(path))
    assert proc.wait(10) == -signal.SIGTERM
    assert r.returncode == 1 and "phones: no phone with role 'main'" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and f"stopped pid {proc.pid}" in r.stdout
    assert path.exists()  # kept: the file is wrong in a way a person should look at


@pytest.mark.slow  # ~16 s: a rig process, doctor and the whole conformance suite
def test_one_phone_rig_up_doctor_conformance_down(tmp_path):
    d = tmp_path / "one"
    up = _cli("rig", "up", "--virtual", "--phones", "1", "--background", "--out", str(d), "--size", "160x120",
              "--json")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    rig_yaml = str(d / "rig.yaml")
    adb_pid = yaml.safe_load((d / "rig.yaml").read_text())["virtual"]["adb_server_pid"]
    try:
        assert [p["role"] for p in info["phones"]] == ["main"]
        doc = _cli("rig", "doctor", "--rig", rig_yaml, "--json")
        rows = json.loads(doc.stdout)
        assert doc.returncode == 0 and {r["status"] for r in rows} <= {"pass", "warn"}, doc.stdout[-1500:]
        conf = _cli("rig", "conformance", "--rig", rig_yaml, "--json", timeout=240)
        assert conf.returncode == 0 and list(json.loads(conf.stdout)) == ["main"], conf.stdout[-1500:]
        cap = _cli("capture", "run", str(tmp_path / "sess"), "--rig", rig_yaml, "--count", "1")
        assert cap.returncode == 1 and "needs a phone with role 'reference'" in cap.stderr, cap.stderr
        assert not (tmp_path / "sess").exists()  # said before anything was started or written
        down = _cli("rig", "down", "--rig", rig_yaml)
        assert down.returncode == 0, down.stderr
        assert not pid_alive(info["pid"]) and not pid_alive(adb_pid)
    finally:  # a failed assertion must not leave this test's rig running (these PIDs are its own)
        for pid in (info["pid"], adb_pid):
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
