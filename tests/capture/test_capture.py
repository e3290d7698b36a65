"""hzsr capture against the virtual rig, through the real adb server: sessions, faults, resume."""

import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from hzsr.capture.link import Backoff, RigLink
from hzsr.capture.rigfile import load_rig
from hzsr.capture.session_run import CaptureConfig, CaptureRun, journal_state, purge, resume
from hzsr.core.agent_protocol import AGENT_FILES as PROTOCOL_AGENT_FILES
from hzsr.core.errors import CaptureError, ConfigError, RigError
from hzsr.core.journal import Journal
from hzsr.core.records import CaptureRecord
from hzsr.core.validate import validate_session
from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig
from tests.rig_truth import true_skews_us
from tests.signals import ctrl_c_reaches_child

pytestmark = pytest.mark.adb
AGENT_FILES = PROTOCOL_AGENT_FILES.lstrip("/")  # relative to a phone's storage root


def _run(rig, session, **cfg):
    link = RigLink(load_rig(rig.rig_yaml), backoff=Backoff(tries=5, base_s=0.2), agent_timeout_s=2.0)
    # The trigger lead must outlast a command round trip on a machine under full CPU load (a
    # target the phone gets too late is refused: `target_in_past`); timing is not under test here.
    cfg.setdefault("lead_ms", 400)
    return CaptureRun(session, link, CaptureConfig(**cfg), rig_path=str(rig.rig_yaml), say=lambda m: None)


def _assert_nothing_lost(rig, session):
    """Every complete capture validates, and each file equals the phone's own copy."""
    assert [f.line() for f in validate_session(session) if f.severity == "error"] == []
    phones = {p.address: p for p in rig.phones}
    n = 0
    for cdir in sorted((session / "captures").iterdir()):
        rec = CaptureRecord.load(cdir)
        for f in rec.frames:
            cam = f.camera_role
            phone_copy = phones[f.device].storage.root / AGENT_FILES / session.name / rec.capture_id / f"{cam}.jpg"
            assert hashlib.sha256((cdir / f.file).read_bytes()).hexdigest() == \
                hashlib.sha256(phone_copy.read_bytes()).hexdigest() == f.sha256
            n += 1
    assert not any((session / "captures").glob(".*"))
    return n


def test_rig_yaml_validation(tmp_path):
    cases = {
        "adb: {port: 5137}\nphones:\n - {serial: a, role: main}\n - {serial: b, role: reference}\ncolour: red\n":
            "colour: unknown key",
        "phones:\n - {role: main}\n - {serial: b, role: reference}\n": "phones[0].serial: missing required field",
        "phones:\n - {serial: a, role: main}\n - {serial: b, role: main}\n":
            "phones[1].role: two phones with role 'main'",
        "phones:\n - {serial: a, role: main}\n - {serial: b, role: reference}\nadb: {port: 5037}\n": "adb.port",
        "phones:\n - {serial: a, role: main}\n - {serial: a, role: reference}\n": "phones[1].serial: duplicate",
    }
    for text, msg in cases.items():
        p = tmp_path / "rig.yaml"
        p.write_text(text)
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace("]", r"\]")) as ei:
            load_rig(p)
        assert str(p) in str(ei.value)


def test_ten_capture_session_completes_and_validates(tmp_path, rig):
    run = _run(rig, tmp_path / "s10")
    run.open()
    results = [run.capture("lobby", ["indoor"]) for _ in range(10)]
    assert all(r.status == "complete" for r in results)
    assert _assert_nothing_lost(rig, tmp_path / "s10") == 30
    states = journal_state(Journal(tmp_path / "s10" / "journal.jsonl"))
    assert set(states.values()) == {"complete"} and len(states) == 10
    # Against the virtual phones' ground truth: the frames really were taken together (phase
    # alignment reached its goal after the first capture), and each reported skew is within its bound.
    true = true_skews_us(rig)
    assert np.median([abs(true[r.capture_id]) for r in results[1:]]) < 250
    for r in results:
        assert abs(r.skew_us - true[r.capture_id]) <= r.bound_us < 3000
        # The verdict is honest about the bound: pass only if even its edge is within the warn level.
        assert (r.verdict == "pass") == (abs(r.skew_us) + r.bound_us <= 250)
    run.link.close()


def test_link_bias_is_missed_by_the_clocks_but_covered_by_the_bound(tmp_path):
    """100 us of link asymmetry on the reference phone: its frames land ~100 us from where the
    host's clock map puts them (true minus reported skew ~ the bias), which no exchange shows, and
    the bound still covers the truth."""
    r = VirtualRig(tmp_path / "rig", VirtualRigConfig(size=(160, 120), faults="link_bias_us=100@reference")).start()
    try:
        run = _run(r, tmp_path / "s")
        run.open()
        results = [run.capture("s", []) for _ in range(5)]
        run.link.close()
        true = true_skews_us(r)
        later = results[1:]  # the first capture keeps the HAL's unlearned overhead
        # The true skew alone also carries each capture's residual phase error, which the frame
        # timestamps show the host (CI saw a true-skew median of 5.6 us: a residual of about -95 us
        # cancelling the bias); what the host cannot see is the bias: the true skew's departure
        # from the reported one.
        missed = [true[x.capture_id] - x.skew_us for x in later]
        assert 60 < np.median(missed) < 160, missed
        for res in results:
            assert abs(res.skew_us - true[res.capture_id]) <= res.bound_us
    finally:
        r.stop()


def test_dropped_connection_mid_pull_recovers(tmp_path, rig):
    run = _run(rig, tmp_path / "s")
    run.open()
    rig.phone("reference").drop_after_bytes(1500)
    res = run.capture("s", [])
    assert res.status == "complete"
    assert any("pull" in m for m in run.link.log)  # it retried
    assert _assert_nothing_lost(rig, tmp_path / "s") == 3


def test_flipped_byte_is_pulled_again(tmp_path, rig):
    run = _run(rig, tmp_path / "s")
    run.open()
    rig.phone("main").flip_byte_next_pull()
    assert run.capture("s", []).status == "complete"
    failed = [e for e in Journal(tmp_path / "s" / "journal.jsonl") if e["event"] == "verify_failed"]
    # The phone's own hash, asked only now, puts the fault in the transfer, not on the phone.
    assert len(failed) == 1 and "phone has" in failed[0]["reason"] and failed[0]["attempt"] == 1, failed
    _assert_nothing_lost(rig, tmp_path / "s")


def test_host_disk_full_mid_pull_stops_at_once_and_resume_finishes(tmp_path, rig, monkeypatch):
    """The host's disk fills on the 3rd chunk a capture's pull writes: the capture stops at once with
    the crew's error naming the host disk (no adb restart, no retries: it is not the link), stays
    incomplete with nothing half-written in place, and `capture resume` finishes it once there is room."""
    import errno
    import io

    from hzsr.capture import transfer

    run = _run(rig, tmp_path / "s")
    run.open()
    writes = []

    class FillingDisk(io.FileIO):
        def write(self, b):
            writes.append(len(b))
            if len(writes) == 3:  # the event: the pull's third write, a raw ENOSPC from the OS
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(b)

    # transfer.py's temp files are opened with the builtin open (unbuffered): serve them from here
    monkeypatch.setattr(transfer, "open", lambda path, mode, buffering=-1: FillingDisk(path, mode), raising=False)
    recovered = []
    monkeypatch.setattr(run.link, "recover", lambda: recovered.append(1))
    with pytest.raises(CaptureError, match=r"host disk: cannot write the pulled file on this computer: No space"):
        run.capture("s", [])
    assert recovered == [] and not any("pull" in m for m in run.link.log)  # not taken for a link error
    assert list(journal_state(run.journal).values()) == ["incomplete"]
    assert not (tmp_path / "s" / "captures").exists() or not any((tmp_path / "s" / "captures").iterdir())
    monkeypatch.delattr(transfer, "open")  # room again
    assert [r.status for r in resume(run)] == ["complete"]
    assert _assert_nothing_lost(rig, tmp_path / "s") == 3


def test_storage_full_stops_cleanly_and_session_stays_valid(tmp_path, rig):
    run = _run(rig, tmp_path / "s")
    run.open()
    assert run.capture("s", []).status == "complete"
    rig.phone("reference").set_storage_full()
    with pytest.raises(CaptureError, match="reference phone did not accept the capture: .*storage_full"):
        run.capture("s", [])
    states = journal_state(run.journal)
    assert list(states.values()) == ["complete", "failed"]
    # A capture one phone never took is not retried: resume retires it as abandoned.
    assert [(r.capture_id, r.status) for r in resume(run)] == [("c00001", "abandoned")]
    assert list(journal_state(run.journal).values()) == ["complete", "abandoned"]
    assert _assert_nothing_lost(rig, tmp_path / "s") == 3


def test_stalled_agent_then_resume(tmp_path, rig):
    run = _run(rig, tmp_path / "s")
    run.link.backoff = Backoff(tries=2, base_s=0.1)
    run.open()
    orig = run._wait_done
    once = threading.Lock()
    stalled = threading.Event()

    def stalled_wait(role, cid):
        # The event: both phones took the capture (the host now waits for their done markers).
        # The main phone's agent stalls then, once, whichever pull thread gets here first (a timer
        # here raced the two threads and was started twice).
        with once:
            if not stalled.is_set():
                rig.phone("main").stall_agent(True)
                stalled.set()
        return orig(role, cid)

    run._wait_done = stalled_wait
    with pytest.raises((RigError, CaptureError), match="did not answer"):
        run.capture("s", [])
    cid = next(iter(journal_state(run.journal)))
    assert journal_state(run.journal)[cid] == "incomplete"
    rig.phone("main").stall_agent(False)
    run._wait_done = orig
    run.link.close()
    results = resume(run)
    assert [(r.capture_id, r.status) for r in results] == [(cid, "complete")]
    _assert_nothing_lost(rig, tmp_path / "s")


def test_clock_jump_detected_and_resynced(tmp_path, rig, monkeypatch):
    from hzsr.capture import clocksync, session_run

    judged, steps = [], []  # (difference, bound) of each sample; (step, its bound) add_sample reported

    def step_against_prediction(*args, **kw):
        judged.append(orig_step(*args, **kw))
        return judged[-1]

    def add_sample(*args, **kw):
        step = orig_add(*args, **kw)
        if step is not None:
            steps.append((step, judged[-1][1]))
        return step

    orig_step, orig_add = clocksync.step_against_prediction, clocksync.add_sample
    monkeypatch.setattr(clocksync, "step_against_prediction", step_against_prediction)
    monkeypatch.setattr(session_run, "add_sample", add_sample)
    run = _run(rig, tmp_path / "s")
    msgs = []
    run.say = msgs.append
    run.open()
    assert run.capture("s", []).status == "complete"
    rig.phone("reference").jump_clock(40.0)
    res = run.capture("s", [])
    assert res.status == "complete"
    true = true_skews_us(rig)[res.capture_id]
    # Re-synced before the trigger: the 40 ms step is gone from the true skew (what is left is the
    # quick sync's error, which load can make a few hundred us: judged by its bound, not here),
    # and the skew reported is within its bound of the truth.
    assert abs(true) < 5_000 and abs(res.skew_us - true) <= res.bound_us, (true, res.skew_us, res.bound_us)
    assert any(e["event"] == "clock_jump" for e in run.journal)
    # The step is measured to 40 ms within its error intervals (or 1 ms, the least step add_sample
    # reports): a loaded host's slow exchanges widen them (38.739 ms seen at load 10).
    [(step, bound)] = steps
    assert abs(step - 40e6) <= max(1e6, bound), (step, bound)
    said = [float(m[1]) for m in map(re.compile(r"clock stepped ([+-]\d+\.\d+) ms").search, msgs) if m]
    assert said == [round(step / 1e6, 3)], msgs
    _assert_nothing_lost(rig, tmp_path / "s")


def test_capture_failure_is_incomplete_never_half_written(tmp_path, rig):
    run = _run(rig, tmp_path / "s")
    run.open()
    rig.phone("main").fail_next_capture()
    with pytest.raises(CaptureError, match="main phone reports the capture failed: camera_error"):
        run.capture("s", [])
    assert not (tmp_path / "s" / "captures").exists() or not any((tmp_path / "s" / "captures").iterdir())
    assert list(journal_state(run.journal).values()) == ["failed"]  # nothing can finish it
    assert run.capture("s", []).status == "complete"


def test_purge_deletes_only_verified_copies(tmp_path, rig):
    run = _run(rig, tmp_path / "s")
    run.open()
    run.capture("s", [])
    run.capture("s", [])
    phone_dir = rig.phone("main").storage.root / AGENT_FILES / "s"
    assert len(list(phone_dir.iterdir())) == 2
    (tmp_path / "s" / "captures" / "c00001" / "main_W.jpg").write_bytes(b"tampered")
    with pytest.raises(CaptureError, match="host copy does not match"):
        purge(run)
    assert (phone_dir / "c00001").exists()  # the phone's copy survives a bad host copy
    assert not (phone_dir / "c00000").exists()  # the good one was deleted


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "hzsr.cli", *args], capture_output=True, text=True, **kw)


@pytest.fixture
def bg_rig(tmp_path):
    d = tmp_path / "bg"
    up = _cli("rig", "up", "--virtual", "--background", "--out", str(d), "--size", "160x120", timeout=90)
    assert up.returncode == 0, up.stderr
    yield d / "rig.yaml"
    _cli("rig", "down", "--rig", str(d / "rig.yaml"), timeout=60)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_capture_process_resumes(tmp_path, bg_rig, sig):
    sess = tmp_path / "sk"
    proc = subprocess.Popen([sys.executable, "-m", "hzsr.cli", "capture", "run", str(sess), "--rig", str(bg_rig),
                             "--count", "40", "--interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=ctrl_c_reaches_child)
    journal = sess / "journal.jsonl"
    t0 = time.time()
    while time.time() - t0 < 60:  # wait until a few captures are in
        if journal.exists() and journal.read_text().count('"capture_complete"') >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "hzsr capture resume" in err
    r = _cli("capture", "resume", str(sess), timeout=120)
    assert r.returncode == 0, r.stderr
    states = journal_state(Journal(journal))
    assert states and set(states.values()) <= {"complete", "abandoned"}
    assert _cli("session", "validate", str(sess)).returncode == 0
    assert len(list((sess / "captures").iterdir())) == sum(v == "complete" for v in states.values())


def test_interactive_capture_retake_and_tags(tmp_path, bg_rig):
    sess = tmp_path / "si"
    keys = "\n\nr\nt\nrooftop sky,wide\n\nq\n"
    r = _cli("capture", "run", str(sess), "--interactive", "--rig", str(bg_rig), input=keys, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(re.findall(r"us\): (pass|warn)", r.stderr)) == 3 and "c00001: discarded" in r.stderr
    # The summary counts the kept captures only (c00001 was retaken) and names what was written.
    assert re.search(r": 2 captures: \d pass, \d warn, 0 fail", r.stdout), r.stdout
    assert f"wrote {sess / 'captures' / 'c00002'}" in r.stdout and "c00001" not in r.stdout
    recs = {d.name: CaptureRecord.load(d) for d in (sess / "captures").iterdir()}
    assert recs["c00001"].status == "discarded" and recs["c00000"].status == "complete"
    assert recs["c00002"].scene_id == "rooftop" and recs["c00002"].scene_tags == ["sky", "wide"]


def test_doctor_passes_then_fails_on_storage_and_offline(tmp_path, rig):
    ok = _cli("rig", "doctor", "--rig", str(rig.rig_yaml), timeout=120)
    assert ok.returncode == 0, ok.stdout
    assert "clock sync" in ok.stdout and "APPROXIMATE" in ok.stdout
    rig.phone("reference").set_storage_full()
    full = _cli("rig", "doctor", "--rig", str(rig.rig_yaml), "--json", timeout=120)
    rows = json.loads(full.stdout)
    assert full.returncode == 1
    assert any(r["check"] == "storage" and r["status"] == "fail" for r in rows)
    rig.phone("main").stop()
    off = _cli("rig", "doctor", "--rig", str(rig.rig_yaml), timeout=120)
    assert off.returncode == 1 and re.search(r"\bfail\b", off.stdout) and "offline" in off.stdout


# 25 s at 1280x960: in `make test-slow`; tests/sync/test_optical.py and test_check.py keep the
# board-measures-bias and calibration-removes-it checks in the default run.
@pytest.mark.slow
def test_sync_board_finds_the_bias_and_calibration_removes_it(tmp_path):
    """The whole loop on the virtual rig: 100 us bias on the reference link; the board measures it
    within 50 us; `hzsr sync calibrate` writes rig.yaml; later captures apply it."""
    from hzsr.cli import main
    from hzsr.core.records import SessionRecord

    r = VirtualRig(tmp_path / "rig", VirtualRigConfig(size=(1280, 960), scene="sync-board",
                                                      faults="link_bias_us=100@reference")).start()
    try:
        run = _run(r, tmp_path / "board")
        run.open()
        before = [run.capture("sync-board", []) for _ in range(8)]
        run.link.close()
        assert main(["sync", "optical", str(tmp_path / "board"), "--no-plots"]) == 0
        import pandas as pd

        df = pd.read_csv(tmp_path / "board" / "sync" / "optical.csv").set_index("capture_id")
        true = true_skews_us(r)
        for res in before:
            assert abs(df.at[res.capture_id, "optical_skew_us"] - true[res.capture_id]) <= 50
        bias_seen = float(np.median([df.at[x.capture_id, "optical_skew_us"] - x.skew_us for x in before]))
        assert bias_seen > 50  # the board sees what the clocks cannot
        assert main(["sync", "calibrate", str(tmp_path / "board"), "--rig", str(r.rig_yaml)]) == 0
        assert load_rig(r.rig_yaml).phones[1].clock_calibration is not None
        run = _run(r, tmp_path / "after")
        run.open()
        after = [run.capture("s", []) for _ in range(5)]
        run.link.close()
        true = true_skews_us(r)
        assert np.median([abs(true[x.capture_id]) for x in after[1:]]) < 50  # the bias is gone
        for x in after:
            assert abs(x.skew_us - true[x.capture_id]) <= x.bound_us
        dev = SessionRecord.load(tmp_path / "after").device("reference")
        assert dev.clock.calibration is not None  # recorded in session.json
    finally:
        r.stop()


def test_clock_step_between_sync_and_frame_shows_in_the_report(tmp_path, rig):
    """The reference clock steps 5 ms when the capture command arrives (after the host's sync):
    the phone fires 5 ms off. Mapping the frame with the estimate that set the target would
    report ~0 (the error cancels); the post-capture sync shows the truth, and the verdict says retake."""
    run = _run(rig, tmp_path / "s")
    run.open()
    agent = rig.phone("reference").agent
    orig = agent._capture

    def stepped(req):
        agent._capture = orig
        agent.jump_clock(5_000_000)
        return orig(req)

    agent._capture = stepped
    res = run.capture("s", [])
    true = true_skews_us(rig)[res.capture_id]
    assert abs(abs(true) - 5000) < 300
    assert abs(res.skew_us - true) <= res.bound_us and abs(res.skew_us - true) < 300
    assert res.verdict == "fail"
    run.link.close()


def test_pull_batch_one_sync_connection_and_per_file_verdicts(tmp_path, rig, monkeypatch):
    """All of a phone's files over one sync connection; the phone's sha256sum is asked only when a
    file disagrees with its metadata. A file whose metadata disagrees, and a file the phone
    refuses, fail alone and leave nothing behind."""
    from hzsr.capture import transfer

    phone = rig.phone("main")
    blobs = {name: bytes([i]) * (70_000 + i) for i, name in enumerate(("a", "b", "c"))}
    for name, b in blobs.items():
        phone.storage.write_atomic(f"/sdcard/t/{name}.jpg", b)
    opened = []
    real = transfer._open_service
    monkeypatch.setattr(transfer, "_open_service",
                        lambda d, svc, t: opened.append(svc.split(":")[0]) or real(d, svc, t))
    dev = rig.adb.client().device(phone.address)
    sha = {n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()}
    good = [transfer.FileToPull(f"/sdcard/t/{n}.jpg", tmp_path / "ok" / f"{n}.jpg", sha[n], len(blobs[n]))
            for n in blobs]
    res = transfer.pull_verified_many(dev, good, timeout_s=10)
    assert opened == ["sync"] and sorted(res.pulled) == [it.phone_path for it in good] and not res.failed
    assert all((tmp_path / "ok" / f"{n}.jpg").read_bytes() == b for n, b in blobs.items())
    opened.clear()
    items = [transfer.FileToPull(f"/sdcard/t/{n}.jpg", tmp_path / f"{n}.jpg", sha[n] if n != "b" else "0" * 64,
                                 len(blobs[n])) for n in blobs]
    res = transfer.pull_verified_many(dev, items, timeout_s=10)
    assert opened == ["sync", "exec"]  # the phone's hash, for b alone
    assert sorted(res.pulled) == ["/sdcard/t/a.jpg", "/sdcard/t/c.jpg"]
    assert "metadata says" in res.failed["/sdcard/t/b.jpg"].message
    assert (tmp_path / "a.jpg").read_bytes() == blobs["a"] and (tmp_path / "c.jpg").read_bytes() == blobs["c"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith((".jpg", ".part"))) == ["a.jpg", "c.jpg"]
    # A refused file (gone from the phone) fails; the files before it still land.
    missing = [items[0], transfer.FileToPull("/sdcard/t/gone.jpg", tmp_path / "gone.jpg", "0" * 64, 1)]
    res = transfer.pull_verified_many(dev, missing, timeout_s=10)
    assert list(res.pulled) == ["/sdcard/t/a.jpg"] and "refused" in res.failed["/sdcard/t/gone.jpg"].message
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / "gone.jpg").exists()
