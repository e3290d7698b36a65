"""Capture safety: only our own processes are signalled, hostile session names, port 5037 never
used, one writer per session, every session can be finished, clock history kept across a jump,
no mDNS socket, files readable by colleagues."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hzsr.capture.adb_server import find_adb_server_pid, free_port
from hzsr.capture.link import Backoff, RigLink
from hzsr.capture.rigfile import load_rig
from hzsr.capture.session_run import CaptureConfig, CaptureRun, journal_state, purge, resume
from hzsr.core.agent_protocol import AGENT_FILES as PROTOCOL_AGENT_FILES
from hzsr.core.errors import CaptureError, ConfigError, SessionBusyError
from hzsr.core.journal import Journal
from hzsr.core.lock import SessionLock
from hzsr.core.process import ProcessProof
from hzsr.core.records import SessionRecord
from hzsr.core.validate import validate_session
from hzsr.sync.check import run_sync_check
from tests.rig_truth import true_skews_us

from .test_capture import _assert_nothing_lost

AGENT_FILES = PROTOCOL_AGENT_FILES.lstrip("/")


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "hzsr.cli", *args], capture_output=True, text=True, **kw)


def _run(rig, session, **cfg):
    link = RigLink(load_rig(rig.rig_yaml), backoff=Backoff(tries=4, base_s=0.05, max_s=0.5), agent_timeout_s=3.0)
    # The trigger lead must outlast a command round trip on a machine under full CPU load (a
    # target the phone gets too late is refused: `target_in_past`); timing is not under test here.
    cfg.setdefault("lead_ms", 400)
    return CaptureRun(session, link, CaptureConfig(**cfg), rig_path=str(rig.rig_yaml), say=lambda m: None)


# -- 1. rig down signals only its own processes ------------------------------------------------
def _rig_yaml(path, virtual):
    doc = {"adb": {"port": free_port()}, "phones": [{"serial": "a:1", "role": "main"},
                                                    {"serial": "b:2", "role": "reference"}],
           "virtual": virtual}
    path.write_text(yaml.safe_dump(doc))
    return path


def _virtual(pid, proof=None):
    v = {"pid": pid, "workdir": "/tmp", "truth_dir": "/tmp", "profile": "vphone-5x"}
    if proof is not None:
        v["processes"] = {"rig": {"pid": proof.pid, "start_ticks": proof.start_ticks, "cmdline": proof.cmdline}}
    return v


def test_rig_down_refuses_a_process_that_is_not_the_rig(tmp_path):
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    victim = subprocess.Popen(argv)
    try:
        # Recorded as rig up records: once the process runs its command (after exec), not at fork.
        real = ProcessProof.once_running(victim.pid, argv)
        assert real is not None
        cases = {
            "no proof": _virtual(victim.pid),
            "pid reused": _virtual(victim.pid, ProcessProof(victim.pid, real.start_ticks - 1, real.cmdline)),
            "other command": _virtual(victim.pid, ProcessProof(victim.pid, real.start_ticks, ["hzsr", "rig", "up"])),
        }
        for name, v in cases.items():
            r = _cli("rig", "down", "--rig", str(_rig_yaml(tmp_path / f"{name}.yaml", v)), timeout=30)
            assert r.returncode == 1, (name, r.stderr)
            assert len(r.stderr.strip().splitlines()) == 1 and "not signalling" in r.stderr, (name, r.stderr)
            assert victim.poll() is None, name  # still alive
        # With the true proof it is signalled: the proof is what rig down trusts.
        r = _cli("rig", "down", "--rig", str(_rig_yaml(tmp_path / "ok.yaml", _virtual(victim.pid, real))), timeout=30)
        assert r.returncode == 0, r.stderr
        assert victim.wait(10) == -signal.SIGTERM
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("pid, msg", [(-1, "virtual.pid: -1 is not a process id"),
                                      (0, "virtual.pid: 0 is not a process id"),
                                      (1, "virtual.pid: 1 is not a process id"),
                                      (True, "virtual.pid: expected integer, got bool"),
                                      ("abc", "virtual.pid: expected integer, got str"),
                                      (2.5, "virtual.pid: expected integer, got float")])
def test_rig_down_bad_pid_is_a_config_error_naming_the_field(tmp_path, pid, msg):
    r = _cli("rig", "down", "--rig", str(_rig_yaml(tmp_path / "rig.yaml", _virtual(pid))), timeout=30)
    assert r.returncode == 1 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_rig_down_on_junk_one_line_with_readme_exit_codes(tmp_path):
    (tmp_path / "bad.yaml").write_bytes(b"adb: {port: 5137}\nphones: \xff\xfe\n")
    (tmp_path / "virt.yaml").write_text("phones: []\nvirtual: [1]\n")
    (tmp_path / "adb.yaml").write_text("phones: []\nadb: 7\n")
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "port.yaml").write_text("phones: []\nadb: {port: 100000000000000000000}\n")
    (tmp_path / "neg.yaml").write_text("phones: []\nadb: {port: -5}\n")
    for name, code, text in [(str(tmp_path), 2, "cannot read"), ("bad.yaml", 2, "not UTF-8"),
                             ("virt.yaml", 1, "virtual: expected object"), ("adb.yaml", 1, "adb: expected object"),
                             ("deep.yaml", 2, "nested too deeply"), ("port.yaml", 1, "adb.port"),
                             ("neg.yaml", 1, "adb.port: -5 is not a TCP port"), ("nope.yaml", 2, "file not found")]:
        r = _cli("rig", "down", "--rig", str(tmp_path / name), timeout=30)
        assert r.returncode == code and text in r.stderr, (name, r.returncode, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- 2. hostile session names ------------------------------------------------------------------
HOSTILE = "a b;mkdir PWNED;echo 'q\" $(mkdir PWNED2) é中"


def test_hostile_session_name_captures_resumes_and_purges(tmp_path, rig):
    sess = tmp_path / HOSTILE
    run = _run(rig, sess)
    run.open()
    assert run.capture("x", []).status == "complete"
    rig.phone("reference").drop_after_bytes(1000)  # the next pull breaks; resume finishes it
    run.cfg.pull_tries = 1
    run.link.backoff = Backoff(tries=1)
    with pytest.raises((CaptureError, Exception)):
        run.capture("x", [])
    run.link.backoff = Backoff(tries=4, base_s=0.05)
    assert [r.status for r in resume(run)] == ["complete"]
    assert _assert_nothing_lost(rig, sess) == 6
    assert sorted(purge(run)) == ["c00000", "c00001"]
    run.close()
    for p in rig.phones:
        root = p.storage.root
        assert not list(root.rglob("PWNED*")), "the name reached the phone's shell unquoted"
        assert not (root / AGENT_FILES / HOSTILE / "c00000").exists()  # purged
    assert not list(tmp_path.rglob("PWNED*")) and not os.path.exists("PWNED")


# -- 3. port 5037 never used ---------------------------------------------------------------------
def test_no_entry_point_uses_port_5037_when_the_private_server_is_down(tmp_path, sim_session):
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 5037)) == 0:
            pytest.skip("something else serves 5037 on this machine")
    dead = [free_port(), free_port()]  # phones nobody serves: adb connect fails at once
    rig_yaml = tmp_path / "rig.yaml"
    port = free_port()
    rig_yaml.write_text(yaml.safe_dump({"adb": {"port": port}, "phones": [
        {"serial": f"127.0.0.1:{dead[0]}", "role": "main"}, {"serial": f"127.0.0.1:{dead[1]}", "role": "reference"}]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANDROID_ADB")}
    cmds = [["rig", "doctor", "--rig", str(rig_yaml)],
            ["rig", "clock", "--rig", str(rig_yaml), "--seconds", "0.1"],
            ["capture", "run", str(tmp_path / "new"), "--rig", str(rig_yaml)],
            ["capture", "resume", str(sim_session), "--rig", str(rig_yaml)],
            ["capture", "purge", str(sim_session), "--rig", str(rig_yaml)]]
    try:
        procs = [subprocess.Popen([sys.executable, "-m", "hzsr.cli", *c], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for c in cmds]
        outs = [p.communicate(timeout=120) for p in procs]
        for c, p, (_, err) in zip(cmds, procs, outs, strict=True):
            assert p.returncode == 1 and "Traceback" not in err, (c, err)
            assert "resumable" not in err  # never promised for a session that has no session.json
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", 5037)) != 0, "an adb server was started on 5037"
        assert find_adb_server_pid(5037) is None
    finally:
        from hzsr.capture.adb_server import AdbServer, bundled_adb

        if find_adb_server_pid(port):  # adbutils' fallback started ours on the private port
            AdbServer(port, bundled_adb()).stop()


# -- 6. one writer per session -------------------------------------------------------------------
def test_second_writer_gets_one_line_naming_the_holder(tmp_path, sim_session, rig):
    with SessionLock(sim_session):
        r = _cli("capture", "resume", str(sim_session), "--rig", str(rig.rig_yaml), timeout=60)
        assert r.returncode == 1 and f"in use by pid {os.getpid()}" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        run = _run(rig, sim_session)
        with pytest.raises(SessionBusyError, match=f"pid {os.getpid()}"):
            run.open()
        run.close()


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    code = ("import sys, time; from hzsr.core.lock import SessionLock; SessionLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "s")], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(SessionBusyError, match=f"pid {p.pid}"):
            SessionLock(tmp_path / "s").acquire()
    finally:
        p.kill()
        p.wait()
    lock = SessionLock(tmp_path / "s").acquire()
    assert lock.took_over_from == p.pid
    lock.release()
    again = SessionLock(tmp_path / "s").acquire()
    assert again.took_over_from is None  # a clean release leaves nothing to take over
    again.release()


def test_two_capture_runs_on_one_session_cannot_interleave(tmp_path, rig):
    a, b = _run(rig, tmp_path / "s"), _run(rig, tmp_path / "s")
    a.open()
    assert a.capture("x", []).status == "complete"
    n_samples = len(SessionRecord.load(tmp_path / "s").device("main").clock.samples)
    with pytest.raises(SessionBusyError):
        b.open()
    assert len(SessionRecord.load(tmp_path / "s").device("main").clock.samples) == n_samples
    a.close()
    b.link.close()


# -- 7. every session can be finished -------------------------------------------------------------
def test_unfinishable_captures_are_abandoned_kept_aside_counted_and_purged(tmp_path, rig):
    sess = tmp_path / "s"
    run = _run(rig, sess)
    run.open()
    assert run.capture("x", []).status == "complete"
    rig.phone("main").fail_next_capture()
    with pytest.raises(CaptureError, match="camera_error"):
        run.capture("x", [])
    # The host died right after journaling a trigger it never sent: no phone has c00002.
    run.journal.append("trigger", capture_id="c00002", target_host_ns=1, targets_ns={}, scene_id="x",
                       scene_tags=[], notes="", phase_align=True)
    run.close()
    r = _cli("capture", "resume", str(sess), "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    assert {x["capture_id"]: x["status"] for x in json.loads(r.stdout)["resumed"]} == {
        "c00001": "abandoned", "c00002": "abandoned"}
    assert "c00001: abandoned: " in r.stderr and "camera_error" in r.stderr
    states = journal_state(Journal(sess / "journal.jsonl"))
    assert states == {"c00000": "complete", "c00001": "abandoned", "c00002": "abandoned"}
    reasons = {e["capture_id"]: e["reason"] for e in Journal(sess / "journal.jsonl")
               if e["event"] == "capture_abandoned"}
    assert "camera_error" in reasons["c00001"] and "no such capture" in reasons["c00002"]
    # The reference phone's verified frame is kept aside, not in captures/, nothing in .incoming.
    kept = sess / "abandoned" / "c00001"
    assert (kept / "ref_T.jpg").read_bytes() == (
        rig.phone("reference").storage.root / AGENT_FILES / "s" / "c00001" / "T.jpg").read_bytes()
    assert sorted(p.name for p in (sess / "captures").iterdir()) == ["c00000"]
    assert not (sess / ".incoming").exists()
    found = validate_session(sess)
    assert [f.file for f in found if f.severity == "warning"] == ["abandoned/c00001", "abandoned/c00002"]
    assert not [f for f in found if f.severity == "error"]
    v = _cli("session", "validate", str(sess))
    assert v.returncode == 0 and "warn: 0 errors, 2 warnings" in v.stdout
    assert run_sync_check(sess, plots=False)["abandoned"] == {"count": 2, "capture_ids": ["c00001", "c00002"]}
    again = _cli("capture", "resume", str(sess), "--json", timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["resumed"] == []  # nothing left to do
    p = _cli("capture", "purge", str(sess), "--json", timeout=120)
    assert p.returncode == 0 and sorted(json.loads(p.stdout)["deleted_from_phones"]) == ["c00000", "c00001", "c00002"]
    for ph in rig.phones:
        assert not any((ph.storage.root / AGENT_FILES / "s").iterdir())


# -- 5. clock history is append-only ---------------------------------------------------------------
def test_clock_jump_keeps_earlier_captures_skew(tmp_path, rig):
    sess = tmp_path / "s"
    run = _run(rig, sess)
    run.open()
    for _ in range(2):
        assert run.capture("x", []).status == "complete"
    run_sync_check(sess, plots=False)
    import pandas as pd

    rows0 = pd.read_csv(sess / "sync" / "sync.csv").set_index("capture_id")
    n0 = len(SessionRecord.load(sess).device("reference").clock.samples)
    rig.phone("reference").jump_clock(40.0)
    for _ in range(2):
        assert run.capture("x", []).status == "complete"
    run.close()
    after = run_sync_check(sess, plots=False)
    rows = pd.read_csv(sess / "sync" / "sync.csv").set_index("capture_id")
    clock = SessionRecord.load(sess).device("reference").clock
    # A sync before and after each capture (the one after maps its frames: issue 10), and more
    # when a sample was loose (issue 17); none is ever dropped.
    assert len(clock.samples) >= n0 + 4 and clock.segment_starts == [n0]
    # Taken before the jump: the same skew as before it, unflagged. Both lie between samples of the
    # old segment (the sync after c00001 came before the step). The mapping weighs the best nearby
    # samples by their bounds (issue 17), so the main phone's later samples (no step there) and a
    # refined drift error may shift it by a few us (tens under CPU load, where samples are
    # looser): less than its own error bound, never the 40 ms step.
    for cid in ("c00000", "c00001"):
        moved = abs(rows.loc[cid, "skew_ref_main_us"] - rows0.loc[cid, "skew_ref_main_us"])
        assert moved < rows0.loc[cid, "skew_bound_us"], (cid, moved, rows0.loc[cid, "skew_bound_us"])
        assert "clock_jump" not in str(rows.loc[cid, "flags"])
    true = true_skews_us(rig)
    for cid in ("c00000", "c00001", "c00002", "c00003"):  # after the jump: mapped with the new segment
        err = abs(rows.loc[cid, "skew_ref_main_us"] - true[cid])
        assert err <= rows.loc[cid, "skew_bound_us"], (cid, err, rows.loc[cid, "skew_bound_us"])
        assert "clock_jump" not in str(rows.loc[cid, "flags"])
    jumps = after["devices"][rig.phone("reference").address]["clock_jumps"]
    # The step is measured between the last sample before it and the first after: each is off by
    # at most its rtt/2, so that is the tolerance (a fixed 1 ms failed once under load: 41.2 ms).
    s0, s1 = clock.samples[n0 - 1], clock.samples[n0]
    tol = (s0.rtt_ns + s1.rtt_ns) / 2 + 50e3  # + drift and wander over the gap between them
    assert len(jumps) == 1 and abs(jumps[0]["jump_ns"] - 40e6) <= tol, (jumps, tol)


# -- 10. loopback only: no mDNS -------------------------------------------------------------------
def test_private_adb_server_opens_no_mdns_socket(rig):
    if subprocess.run(["which", "ss"], capture_output=True).returncode:
        pytest.skip("no ss")
    pid = rig.adb.pid()
    assert pid
    udp = subprocess.run(["ss", "-ulpnH"], capture_output=True, text=True).stdout
    assert f"pid={pid}," not in udp, udp
    tcp = [ln for ln in subprocess.run(["ss", "-tlpnH"], capture_output=True, text=True).stdout.splitlines()
           if f"pid={pid}," in ln]
    assert tcp and all("127.0.0.1:" in ln for ln in tcp), tcp


@pytest.mark.parametrize("platform, bus, user, expect", [
    ("linux", False, None, "0"),  # no USB bus: the native backend, not libusb's 3 s scan timeout
    ("linux", True, None, None),  # a USB bus: adb's own default backend
    ("linux", False, "1", None),  # the user's choice is kept
    ("darwin", False, None, None),
])
def test_adb_env_picks_the_native_usb_backend_only_where_there_is_no_usb_bus(tmp_path, monkeypatch, platform, bus,
                                                                             user, expect):
    from hzsr.capture import adb_server

    monkeypatch.setattr(adb_server.sys, "platform", platform)
    usb = tmp_path / "usb"
    if bus:
        usb.mkdir()
    env = adb_server.adb_env({} if user is None else {"ADB_LIBUSB": user}, usb_bus=usb)
    assert env.get("ADB_LIBUSB") == expect
    assert env["ADB_MDNS"] == "0"


# The user's ADB_LIBUSB as this module is imported, before any rig here runs use_private_port, which
# writes adb_env()'s ADB_LIBUSB=0 into os.environ (after which adb_env() takes it for the user's own).
_USER_ADB_LIBUSB = os.environ.get("ADB_LIBUSB")


def test_private_adb_server_runs_with_the_chosen_environment(rig):
    from hzsr.capture.adb_server import adb_env

    pid = rig.adb.pid()
    assert pid
    environ = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
    user = {} if _USER_ADB_LIBUSB is None else {"ADB_LIBUSB": _USER_ADB_LIBUSB}
    want = {**user, **adb_env(user)}  # on this machine without /dev/bus/usb that includes ADB_LIBUSB=0
    if sys.platform.startswith("linux") and not Path("/dev/bus/usb").exists() and not user:
        assert want.get("ADB_LIBUSB") == "0", want
    for k, v in want.items():
        assert environ.get(k) == v, (k, environ.get(k))
    assert environ["ANDROID_ADB_SERVER_PORT"] == str(rig.adb.port)


# -- 11. umask ------------------------------------------------------------------------------------
def test_session_files_follow_the_umask(tmp_path, rig):
    old = os.umask(0o022)
    try:
        run = _run(rig, tmp_path / "s")
        run.open()
        run.capture("x", [])
        run.close()
    finally:
        os.umask(old)
    for p in [tmp_path / "s" / "session.json", tmp_path / "s" / "journal.jsonl",
              *(tmp_path / "s" / "captures" / "c00000").iterdir()]:
        assert p.stat().st_mode & 0o777 == 0o644, p


def test_capture_session_that_is_a_file_is_one_line(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    r = _cli("capture", "run", str(f), "--rig", str(tmp_path / "none.yaml"))
    assert r.returncode == 2 and "SESSION: exists and is not a folder" in r.stderr and "Traceback" not in r.stderr
    for bad in ("-5", "nan", "inf"):
        r = _cli("capture", "run", str(tmp_path / "s"), "--interval", bad)
        assert r.returncode == 2 and "--interval: must be a finite number >= 0" in r.stderr, r.stderr
    with pytest.raises(ConfigError):
        load_rig(tmp_path / "none.yaml")
    assert time.time() > 0


def test_retry_failure_names_the_phone_once(tmp_path):
    p = _rig_yaml(tmp_path / "rig.yaml", None)
    link = RigLink(load_rig(p), backoff=Backoff(tries=1))

    def fail():
        raise OSError("link down")

    with pytest.raises(Exception) as ei:
        link.retry("a:1 hello", fail)
    assert str(ei.value) == "a:1 hello failed after 1 tries: link down"  # not "a:1: a:1 hello failed"


def test_resume_with_a_deeply_nested_journal_line_is_one_line(sim_session, rig):
    j = sim_session / "journal.jsonl"
    lines = j.read_text().splitlines()
    j.write_text("\n".join([lines[0], "[" * 100_000 + "]" * 100_000, *lines[1:]]) + "\n")
    r = _cli("capture", "resume", str(sim_session), "--rig", str(rig.rig_yaml), timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().endswith("journal.jsonl: journal: unparseable line 2"), r.stderr
