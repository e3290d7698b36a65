"""`capture run` edges (issue 22): no rig leaves nothing behind, system folders refused, no symlink followed."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from hzsr.capture.adb_server import find_adb_server_pid, free_port
from hzsr.core.errors import ConfigError, RigError, SessionBusyError, SessionFormatError
from hzsr.core.journal import Journal
from hzsr.core.lock import SessionLock
from hzsr.core.safepath import refuse_system_folder, system_folder


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "hzsr.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, **kw)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stopped_virtual_rig_leaves_nothing_behind(tmp_path):
    port = free_port()
    rig = tmp_path / "rig.yaml"
    rig.write_text(yaml.safe_dump({"adb": {"port": port}, "phones": [{"serial": "127.0.0.1:1", "role": "main"},
                                                                     {"serial": "127.0.0.1:2", "role": "reference"}],
                                   "virtual": {"pid": _dead_pid(), "workdir": str(tmp_path), "truth_dir": str(tmp_path),
                                               "profile": "vphone-5x"}}))
    r = _cli("capture", "run", tmp_path / "s1", "--rig", rig)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not running; start it with `hzsr rig up --virtual`" in lines[0], r.stderr
    assert not (tmp_path / "s1").exists()
    assert find_adb_server_pid(port) is None


def test_failed_setup_of_a_new_session_is_undone(tmp_path):
    """A rig whose phones never answer `hello` (a real rig unplugged): folder, journal and lock are removed."""
    from hzsr.capture.session_run import CaptureRun

    def never(what, fn):
        raise RigError(f"{what} failed after 6 tries: Connection refused")

    link = SimpleNamespace(rig=SimpleNamespace(phones=[SimpleNamespace(role="main", serial="a:1")]),
                           retry=never, close=lambda: None, server_restarts=0, _local=True, on_recover=None)
    run = CaptureRun(tmp_path / "s1", link, say=lambda m: None)
    with pytest.raises(RigError, match="hello failed"):
        run.open()
    assert not (tmp_path / "s1").exists()
    # An existing session is never removed, whatever fails.
    (tmp_path / "s2").mkdir()
    (tmp_path / "s2" / "notes.txt").write_text("mine\n")
    run = CaptureRun(tmp_path / "s2", link, say=lambda m: None)
    with pytest.raises(RigError):
        run.open()
    run.close()
    assert (tmp_path / "s2" / "notes.txt").read_text() == "mine\n"


@pytest.mark.parametrize("folder", ["/", "/etc", "/usr/local/x", "/tmp", "/proc/self"])
def test_system_folders_are_refused(folder):
    assert system_folder(folder) is not None
    with pytest.raises(ConfigError, match="system folder"):
        refuse_system_folder(folder, "SESSION")


def test_capture_run_slash_is_refused_before_anything(tmp_path):
    link = tmp_path / "etc-link"
    link.symlink_to("/etc")
    for target in ("/", link):
        r = _cli("capture", "run", target, "--rig", tmp_path / "no-rig.yaml")
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "system folder" in r.stderr, r.stderr
    assert not os.path.exists("/journal.jsonl") and not os.path.exists("/.hzsr.lock")
    assert system_folder(tmp_path / "s1") is None and system_folder(os.path.expanduser("~/s1")) is None


def test_journal_and_lock_symlinks_are_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    s = tmp_path / "s"
    s.mkdir()
    (s / "journal.jsonl").symlink_to(victim)
    with pytest.raises(SessionFormatError, match="symbolic link"):
        Journal(s / "journal.jsonl").append("x")
    (s / ".hzsr.lock").symlink_to(victim)
    with pytest.raises(SessionBusyError, match="symbolic link"):
        SessionLock(s).acquire()
    assert victim.read_text() == "keep\n"


@pytest.mark.slow
def test_unreachable_real_rig_leaves_no_folder_and_no_adb_server(tmp_path):
    """The link's own recovery runs (6 tries, ~12 s): afterwards no session folder, no adb server."""
    port = free_port()
    rig = tmp_path / "rig.yaml"
    rig.write_text(yaml.safe_dump({"adb": {"port": port}, "phones": [{"serial": "127.0.0.1:1", "role": "main"},
                                                                     {"serial": "127.0.0.1:2", "role": "reference"}]}))
    r = _cli("capture", "run", tmp_path / "s1", "--rig", rig)
    assert r.returncode == 1 and "hello failed" in r.stderr, r.stderr
    assert not (tmp_path / "s1").exists()
    assert find_adb_server_pid(port) is None
