"""A capture session on a rig: sync clocks, trigger both phones at one instant, pull and verify.

The journal is the source of truth for progress. ``trigger`` is written *before* the phones are
told, each file is ``pulled`` then ``verified``, and a capture is ``capture_complete`` only once
its folder has been moved into ``captures/`` by one rename. Frames are staged in
``<session>/.incoming/<capture_id>/`` until then, so ``captures/`` never holds half a capture. A
crash, Ctrl-C, a dead link or a stalled phone therefore leaves a session that ``resume`` can
finish from the journal and the phones' own copies.

One process writes a session at a time: ``open`` takes the session lock (``hzsr.core.lock``) and
``close`` drops it. A capture that can never complete (a phone never took it, reports a camera
error, or lost it) is retired by ``resume`` as ``abandoned``: journaled with the reason, its
partial files moved to ``<session>/abandoned/<capture_id>/``, never into ``captures/``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hzsr.capture.clocksync import (
    SyncConfig,
    add_sample,
    apply_calibration,
    floor_ns,
    live_skew,
    loose_trigger_text,
    offset_estimate,
    sample_bounds,
    samples_used,
    skew_bound_ns,
    sync_round,
)
from hzsr.capture.link import LINK_ERRORS, RigLink
from hzsr.capture.three_a import ThreeAConfig, apply_3a
from hzsr.capture.transfer import FileToPull, pull_verified_many
from hzsr.core import records as R
from hzsr.core.agent_protocol import AGENT_FILES, CAMERAS_PER_ROLE, FRAME_3A_FIELDS, FRAME_TIMING_FIELDS
from hzsr.core.clock import fit_drift
from hzsr.core.errors import AgentError, CaptureError, CaptureLost, RigError, SessionFormatError
from hzsr.core.fileio import atomic_write_json, fsync_dir
from hzsr.core.journal import Journal
from hzsr.core.lock import SessionLock
from hzsr.core.records import SLOT_SOURCES
from hzsr.core.schema import to_plain
from hzsr.core.session import JournalState, journal_states
from hzsr.core.verdict import Reason, SkewThresholds, Verdict, skew_reasons, verdict_of


@dataclass
class CaptureConfig:
    """Options of ``hzsr capture run``; every default lives here."""

    lead_ms: float = 150.0  # least time between sending `capture` and the target instant
    lead_factor: float = 4.0  # ... and at least this many times the slowest command round trip
    phase_align: bool = True
    align_lead_ms: float = 250.0  # least lead with phase_align: a change lands 3 frames on, plus one long frame
    keep_on_phone: bool = True  # delete phone copies only when the crew opts in (or `purge`)
    skew: SkewThresholds = field(default_factory=SkewThresholds)  # the skew rule's levels (core/verdict.py)
    done_timeout_s: float = 60.0  # wait this long for a phone to finish writing a capture
    pull_timeout_s: float = 30.0  # per socket wait during a pull
    pull_tries: int = 3  # a hash mismatch is pulled again this many times in all
    parallel_pull: bool = True
    sync: SyncConfig = field(default_factory=SyncConfig)
    three_a: ThreeAConfig = field(default_factory=ThreeAConfig)  # AF mode, 3A locks, exposure matching
    post_capture_checks: bool = True  # after each shot, run the quick checks later stages offer (qa --quick)


@dataclass
class CaptureResult:
    capture_id: str
    status: str  # complete | incomplete | abandoned
    skew_us: float | None = None  # reference minus main, mapped to the host clock
    bound_us: float | None = None  # clock-sync error bound of that skew
    verdict: Verdict = Verdict.PASS  # fail: retake the shot
    reason: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)
    checks: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # name -> (verdict, reasons)

    def checks_text(self) -> str:
        return "".join(f" | {name}: {v}" + (f" ({'; '.join(rs)})" if rs else "")
                       for name, (v, rs) in self.checks.items())

    def line(self) -> str:
        if self.status != "complete":
            return f"{self.capture_id}: {self.status}: {self.reason}"
        if self.skew_us is None or self.bound_us is None:  # finished by resume: skew is sync check's job
            return f"{self.capture_id}: complete"
        return (f"{self.capture_id}: skew {self.skew_us:+.0f} us (bound +-{self.bound_us:.0f} us): "
                f"{self.verdict}{': ' + self.reason if self.reason else ''}"
                f"{'; retake' if self.verdict == 'fail' else ''}{self.checks_text()}")


def _now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class CaptureRun:
    def __init__(self, session_dir: str | Path, link: RigLink, cfg: CaptureConfig | None = None,
                 rig_path: str | None = None, say: Callable[[str], None] = print):
        self.dir = Path(session_dir)
        self.link = link
        self.cfg = cfg or CaptureConfig()
        self.say = say
        self.rig_path = rig_path
        self._new_dir = not self.dir.exists()  # before Journal() creates it: undone if setup fails
        self._server_before = self._adb_server_pid()  # a server this run starts is stopped if setup fails
        self.journal = Journal(self.dir / "journal.jsonl")
        self.lock = SessionLock(self.dir)
        self.session: R.SessionRecord | None = None
        self.command_rtt_ns = 0
        self.captures_since_full_sync = 0
        self._done_at: dict[str, float] = {}  # perf_counter when each role's done marker was seen
        self.agent_versions: dict[str, int] = {}  # protocol version per role, from hello

    @property
    def session_id(self) -> str:
        return self.dir.name

    # -- setup ---------------------------------------------------------------------------
    def open(self) -> None:
        """Lock the session, load it or create it from the phones' ``hello``; then a full clock sync.

        A new session whose setup fails before ``session.json`` is written (no rig, a phone that
        never answers) leaves nothing behind: no folder, no journal, no lock file, and no adb
        server that the link's recovery started for it.

        Raises:
            SessionBusyError: another process holds the session (one line naming its PID).
        """
        try:
            self._open()
        except BaseException:
            self._undo_new_session()
            raise

    def _adb_server_pid(self) -> int | None:
        """PID of the local adb server on the rig's port; 0 when not knowable (a remote server)."""
        from hzsr.capture.adb_server import find_adb_server_pid

        adb = getattr(getattr(self.link, "rig", None), "adb", None)
        if adb is None or not getattr(self.link, "_local", False):
            return 0
        return find_adb_server_pid(adb.port)

    def _undo_new_session(self) -> None:
        if not self._new_dir or (self.dir / "session.json").exists() or not self.lock.held:
            return
        try:
            self.link.close()
        finally:
            self.lock.release()
        if self._server_before is None and self._adb_server_pid() is not None:
            # Started for this run only (by the link's recovery or adbutils' fallback): stop it.
            from hzsr.capture.adb_server import AdbServer, bundled_adb

            try:
                AdbServer(self.link.rig.adb.port, bundled_adb()).stop()
            except (OSError, subprocess.SubprocessError, RigError):
                pass
        # The folder is new (this run made it) and holds only what open() wrote: remove those.
        for name in (self.journal.path.name, self.lock.path.name):
            (self.dir / name).unlink(missing_ok=True)
        try:
            self.dir.rmdir()
        except OSError:  # something else appeared in it meanwhile: keep it
            pass

    def _open(self) -> None:
        if self.dir.exists() and not self.dir.is_dir():
            raise CaptureError("exists and is not a folder", file=self.dir, field="SESSION", unreadable=True)
        self.lock.acquire()
        if self.lock.took_over_from is not None:
            self.journal.append("lock_taken_over", stale_pid=self.lock.took_over_from)
        self.link.on_recover = lambda action, detail: self.journal.append(
            "link_recovered", action=action, **detail)
        if (self.dir / "session.json").exists():
            self.session = R.SessionRecord.load(self.dir)
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            devices = []
            for p in self.link.rig.phones:
                if p.role == "spare":
                    continue
                h = self.link.retry(f"{p.serial} hello", lambda role=p.role: self.link.agent(role).request("hello"))
                cams = [R.CameraInfo(camera_id=c["camera_id"], role=c["role"], physical_id=c["physical_id"],
                                     focal_length_mm=c["focal_length_mm"], f_number=c["f_number"],
                                     pixel_size_um=c["pixel_size_um"], width=c["width"], height=c["height"],
                                     intrinsics=R.Intrinsics(**c["intrinsics"]),
                                     timestamp_source=c["timestamp_source"]) for c in h["cameras"]]
                devices.append(R.DeviceInfo(serial=p.serial, role=p.role, model=h["model"], build=h["build"],
                                            agent_version=h["agent_version"], sync_type=h["sync_type"],
                                            cameras=cams))
            self.session = R.SessionRecord(
                schema_version=R.SCHEMA_VERSION, session_id=self.session_id, created_utc=_now_utc(),
                source="adb", devices=devices,
                config={"capture": to_plain(self.cfg), "rig": to_plain(self.link.rig), "rig_path": self.rig_path})
            self.journal.append("session_started", source="adb", session_id=self.session_id,
                                devices=[d.serial for d in devices])
            self.session.save(self.dir)
        self.full_sync()

    def close(self) -> None:
        """Close the link to the phones and drop the session lock."""
        try:
            self.link.close()
        finally:
            self.lock.release()

    def device_info(self, role: str) -> R.DeviceInfo:
        assert self.session is not None
        return self.session.device(role)

    def full_sync(self) -> None:
        for role in ("main", "reference"):
            self._sync(role, self.cfg.sync.max_exchanges)
        self.captures_since_full_sync = 0
        assert self.session is not None
        self.session.save(self.dir)

    def _sync(self, role: str, n: int) -> R.ClockSample:
        dev = self.device_info(role)
        s = self.link.retry(f"{dev.serial} clock sync",
                            lambda: sync_round(self.link.agent(role), n, self.cfg.sync.good_rtt_us,
                                               dev.clock.drift_ppm))
        cal = next((p.clock_calibration for p in self.link.rig.phones if p.serial == dev.serial), None)
        if cal is not None:  # the link asymmetry `hzsr sync calibrate` measured (docs/sync.md)
            dev.clock.calibration = cal
            s = apply_calibration(s, cal.offset_correction_ns)
        step = add_sample(dev.clock, s, self.cfg.sync.wander_ppm)
        self.journal.append("clock_sync", device=dev.serial, host_ns=s.host_ns, offset_ns=s.offset_ns,
                            rtt_ns=s.rtt_ns, exchanges=n)
        # The new sample's interval and the earlier samples' prediction cannot both hold: the
        # clock stepped (add_sample; a loose sample widens the prediction instead).
        if step is not None:
            # Samples are never dropped: the step starts a new clock segment. Earlier captures
            # keep mapping through the segment they were taken in (hzsr.sync.timebase); the drift
            # is refitted with one intercept per segment, so the step does not bend it.
            dev.clock.segment_starts.append(len(dev.clock.samples) - 1)
            dev.clock.drift_ppm, dev.clock.drift_ppm_stderr = fit_drift(dev.clock.samples, dev.clock.segment_starts)
            self.journal.append("clock_jump", device=dev.serial, step_ns=int(step),
                                segment=len(dev.clock.segment_starts), sample_index=len(dev.clock.samples) - 1)
            self.say(f"warning: {role} phone's clock stepped {step / 1e6:+.3f} ms since the last sync; "
                     "a new clock segment starts here (hzsr sync check flags captures near the step)")
        return s

    # -- one capture ---------------------------------------------------------------------
    def next_capture_id(self) -> str:
        used = {e.get("capture_id") for e in self.journal.read().events if e["event"] == "trigger"}
        k = len(used)
        while f"c{k:05d}" in used:
            k += 1
        return f"c{k:05d}"

    def capture(self, scene_id: str, tags: list[str], notes: str = "") -> CaptureResult:
        """Trigger, collect and verify one triplet."""
        t_start = time.perf_counter()
        if self.captures_since_full_sync >= self.cfg.sync.resync_every:
            self.full_sync()
        for role in ("main", "reference"):
            self._sync(role, self.cfg.sync.quick_exchanges)
        self.captures_since_full_sync += 1
        assert self.session is not None
        self.session.save(self.dir)
        cid = self.next_capture_id()
        set3a = apply_3a(self.link, self.cfg.three_a, self.agent_versions)
        if set3a:
            self.journal.append("three_a", capture_id=cid, **set3a)
        lead_ns = max(int(self.cfg.lead_ms * 1e6), int(self.cfg.lead_factor * self.command_rtt_ns))
        if self.cfg.phase_align:
            lead_ns = max(lead_ns, int(self.cfg.align_lead_ms * 1e6))
        # Nothing slow between the target and the send: the lead must cover the command alone.
        target_host, trig = self._fresh_target(lead_ns)
        targets = {r: int(round(target_host + offset_estimate(self.device_info(r).clock, target_host,
                                                              self.cfg.sync.wander_ppm)[0]))
                   for r in ("main", "reference")}
        self.journal.append("trigger", capture_id=cid, target_host_ns=target_host,
                            targets_ns=targets, scene_id=scene_id, scene_tags=tags, notes=notes,
                            phase_align=self.cfg.phase_align, trigger_samples=[to_plain(t) for t in trig])

        def send(role: str) -> dict:
            t0 = time.monotonic_ns()
            ack = self.link.agent(role).request(
                "capture", session=self.session_id, capture_id=cid, target_ns=targets[role],
                cameras=CAMERAS_PER_ROLE[role], phase_align=self.cfg.phase_align)
            self.command_rtt_ns = max(self.command_rtt_ns, time.monotonic_ns() - t0)
            return ack

        acks: dict[str, dict] = {}
        errors: dict[str, Exception] = {}
        with ThreadPoolExecutor(2) as ex:
            futs = {r: ex.submit(send, r) for r in ("main", "reference")}
            for r, f in futs.items():
                try:
                    acks[r] = f.result()
                    self.journal.append("ack", capture_id=cid, device=self.device_info(r).serial,
                                        frame_timestamp_ns=acks[r]["frame_timestamp_ns"],
                                        frame_number=acks[r]["frame_number"], dir=acks[r]["dir"])
                except (AgentError, RigError, *LINK_ERRORS) as exc:
                    errors[r] = exc
        t_triggered = time.perf_counter()
        if errors:
            role, exc = next(iter(errors.items()))
            reason = f"{role} phone did not accept the capture: {exc}"
            # Nothing can complete a capture one phone never took: resume reports it, skips it.
            self._incomplete(cid, reason, permanent=True)
            raise CaptureError(reason, field=cid)
        self._done_at.clear()
        res = self.collect(cid)
        segments_at_trigger = {r: len(self.device_info(r).clock.segment_starts) for r in ("main", "reference")}
        # Map the frames with a clock sample taken after them, not the estimate that set the
        # target: an error in that one moved the frames with it and would cancel (docs/sync.md).
        try:
            for role in ("main", "reference"):
                self._sync(role, self.cfg.sync.quick_exchanges)
            self.session.save(self.dir)
        except (RigError, *LINK_ERRORS) as exc:
            self.say(f"warning: clock sync after {cid} failed ({exc}); its skew uses the sync before it")
        ts = {r: acks[r]["frame_timestamp_ns"] for r in ("main", "reference")}
        th = self.skew_thresholds()
        for extra in range(self.cfg.sync.extra_rounds + 1):
            res.skew_us, res.bound_us = live_skew(self.device_info("main").clock,
                                                  self.device_info("reference").clock, ts["main"], ts["reference"],
                                                  self.cfg.sync.wander_ppm)
            # Only the bound keeps it from passing (|skew| - bound <= limit < |skew| + bound), and
            # the links' floors could let it pass: a tighter sample after the frames may settle it,
            # so take one, up to extra_rounds. (Uncalibrated, the floors alone are ~0.5-1 ms: none.)
            limit = min(th.pass_limit_us, th.max_skew_us)
            best = skew_bound_ns(*(float(sample_bounds(self.device_info(r).clock.samples,
                                                       self.device_info(r).clock.calibration).min())
                                   for r in ("main", "reference"))) / 1e3
            if extra == self.cfg.sync.extra_rounds or not abs(res.skew_us) - res.bound_us <= limit \
                    < abs(res.skew_us) + res.bound_us or abs(res.skew_us) + best > limit:
                break
            try:
                for role in ("main", "reference"):
                    self._sync(role, self.cfg.sync.quick_exchanges)
            except (RigError, *LINK_ERRORS):
                break
        self.session.save(self.dir)
        t_end = time.perf_counter()
        # Host overhead: the whole capture less the span in which a phone was still exposing and
        # writing (trigger sent .. last done marker seen); the phone's own work is not the host's.
        phone_span = max(self._done_at.values(), default=t_triggered) - t_triggered
        res.timings_s.update(total=t_end - t_start, phone=phone_span,
                             host_overhead=(t_end - t_start) - phone_span)
        # The rule `hzsr sync check` applies, so the crew hears at once what curators see later.
        reasons = skew_reasons(res.skew_us, res.bound_us, th, calibrated=self.calibrated(),
                               loose_trigger=loose_trigger_text(trig))
        if any(len(self.device_info(r).clock.segment_starts) > n for r, n in segments_at_trigger.items()):
            reasons.append(Reason(Verdict.FAIL, "clock_jump", "a phone's clock stepped around this capture: retake"))
        res.verdict = verdict_of(reasons)
        res.reason = "; ".join(r.message for r in reasons)
        res.timings_s["sync_and_trigger"] = t_triggered - t_start
        self.journal.append("capture_verdict", capture_id=cid, skew_us=res.skew_us, bound_us=res.bound_us,
                            verdict=res.verdict.value)
        if self.cfg.post_capture_checks and res.status == "complete":
            from hzsr.capture.hooks import run_checks

            t0 = time.perf_counter()
            res.checks = run_checks(self.dir / "captures" / cid)
            res.timings_s["post_capture_checks"] = time.perf_counter() - t0
            for name, (v, reasons) in res.checks.items():
                self.journal.append("capture_check", capture_id=cid, check=name, verdict=v, reasons=reasons)
        return res

    def skew_thresholds(self) -> SkewThresholds:
        """The skew rule's levels: the config's, with the pass limit from rig.yaml's ``sync`` section."""
        return SkewThresholds(pass_limit_us=self.link.rig.sync.pass_limit_us, max_skew_us=self.cfg.skew.max_skew_us)

    def calibrated(self) -> bool:
        """Whether every phone's clock carries a board calibration (``hzsr sync calibrate``)."""
        return all(self.device_info(r).clock.calibration is not None for r in ("main", "reference"))

    def _fresh_target(self, lead_ns: int) -> tuple[int, list[R.TriggerSample]]:
        """The trigger instant, set only from fresh, tight clock samples (``SyncConfig.tight_factor``).

        Each phone's latest (fresh) sample must have ``rtt / 2`` within ``tight_factor`` x the
        link's floor + ``tight_slack_us``. A loose one (a round under CPU load, a USB stall) gets
        another quick round, up to ``extra_rounds``. The offset at the target is mapped from the
        best nearby samples; which ones, and that mapping's bound, are recorded either way, and a
        still-loose fresh sample fails the capture.
        """
        sc = self.cfg.sync
        roles = ("main", "reference")
        rounds = {r: 1 for r in roles}
        while True:
            target = time.monotonic_ns() + lead_ns
            if self.cfg.phase_align:  # on the host's frame grid: every capture asks for the same phase
                period = self._frame_period_ns()
                target = -(-target // period) * period
            out = []
            for r in roles:
                clock = self.device_info(r).clock
                _, bound = offset_estimate(clock, target, sc.wander_ppm)  # what the target rests on
                # Looseness is the fresh sample's own: its raw rtt / 2 against the link's floor
                # (calibrated or not; a drift still unknown early in a session is in the bound).
                fl = floor_ns(clock)
                latest = clock.samples[-1].rtt_ns / 2 + (abs(clock.calibration.offset_correction_ns)
                                                         if clock.calibration is not None else 0.0)
                loose = latest > sc.tight_factor * fl + sc.tight_slack_us * 1e3
                out.append(R.TriggerSample(r, samples_used(clock, target, sc.wander_ppm), int(bound), int(fl),
                                           bool(loose), rounds[r]))
            redo = [t.role for t in out if t.loose and rounds[t.role] <= sc.extra_rounds]
            if not redo:
                return target, out
            for r in redo:
                self._sync(r, sc.quick_exchanges)
                rounds[r] += 1
            assert self.session is not None
            self.session.save(self.dir)  # the samples the next target may rest on are on disk first

    def _frame_period_ns(self) -> int:
        if not getattr(self, "_period_ns", None):
            self._period_ns = int(self.link.retry(
                "main status", lambda: self.link.agent("main").request("status"))["frame_period_ns"])
        return self._period_ns

    # -- collecting ----------------------------------------------------------------------
    def _wait_done(self, role: str, cid: str) -> dict:
        """Wait for the phone's ``done`` marker, polling its agent; returns ``{done, meta}``."""
        serial = self.device_info(role).serial
        t_end = time.monotonic() + self.cfg.done_timeout_s

        def ask():
            try:
                return self.link.agent(role).request("meta", session=self.session_id, capture_id=cid)
            except AgentError as exc:
                if exc.code == "pending":
                    return None
                if exc.code == "not_found":  # the phone never wrote it (it died or rebooted first)
                    raise CaptureLost(f"{role} phone has no such capture: it was lost before the phone "
                                      "wrote it", field=cid) from None
                raise
            except LINK_ERRORS:
                self.link.drop_agent(role)
                raise

        while time.monotonic() < t_end:
            got = self.link.retry(f"{serial} wait done", ask)
            if got is not None:
                self._done_at[role] = time.perf_counter()
                return got
            time.sleep(0.01)
        raise CaptureError(f"no done marker after {self.cfg.done_timeout_s:.0f} s", field=f"{role}:{cid}")

    def _pull_role(self, role: str, cid: str, stage: Path) -> list[dict]:
        serial = self.device_info(role).serial
        got = self._wait_done(role, cid)
        done, meta = got["done"], got["meta"]
        if done.get("status") != "ok" or meta is None:
            err = done.get("error", {})
            raise CaptureLost(f"{role} phone reports the capture failed: {err.get('code')}: {err.get('message')}",
                              field=cid)
        folder = f"{AGENT_FILES}/{self.session_id}/{cid}"
        paths = [f"{folder}/{fr['file']}" for fr in meta["frames"]]
        frames = []
        for fr in meta["frames"]:
            self.journal.append("file_ready", capture_id=cid, device=serial, file=fr["file"],
                                size=fr["size_bytes"], sha256=fr["sha256"])
        slots = {fr["file"]: next(s for s, (r, c) in SLOT_SOURCES.items() if r == role and c == fr["role"])
                 for fr in meta["frames"]}
        items = {path: FileToPull(path, stage / f"{slots[fr['file']]}.jpg", fr["sha256"], fr["size_bytes"])
                 for fr, path in zip(meta["frames"], paths, strict=True)}
        by_path = dict(zip(paths, meta["frames"], strict=True))
        # One sync connection per phone for all its files, each checked against the agent's hash
        # (transfer.py); a file that fails verification is pulled again, up to pull_tries times.
        pending, done = list(paths), {}
        for attempt in range(1, self.cfg.pull_tries + 1):
            batch = self.link.retry(
                f"{serial} pull {' '.join(by_path[p]['file'] for p in pending)}",
                lambda pending=pending: pull_verified_many(self.link.device(role), [items[p] for p in pending],
                                                           self.cfg.pull_timeout_s))
            done.update(batch.pulled)
            for path, exc in batch.failed.items():
                self.journal.append("verify_failed", capture_id=cid, device=serial, file=by_path[path]["file"],
                                    attempt=attempt, reason=exc.message)
            pending = [p for p in pending if p in batch.failed]
            if not pending:
                break
            if attempt == self.cfg.pull_tries:
                raise batch.failed[pending[0]]
        for path in paths:
            fr, pulled = by_path[path], done[path]
            self.journal.append("pulled", capture_id=cid, device=serial, file=fr["file"], size=pulled.size)
            self.journal.append("verified", capture_id=cid, device=serial, file=fr["file"], sha256=pulled.sha256)
            frames.append({**fr, "slot": slots[fr["file"]], "device": serial, "device_role": role})
        return frames

    def collect(self, cid: str) -> CaptureResult:
        """Pull and verify every frame of ``cid``, then move it into ``captures/`` in one rename."""
        t0 = time.perf_counter()
        final = self.dir / "captures" / cid
        if final.exists():
            return CaptureResult(cid, "complete")
        stage = self.dir / ".incoming" / cid
        stage.mkdir(parents=True, exist_ok=True)
        roles = ("main", "reference")
        try:
            if self.cfg.parallel_pull:
                with ThreadPoolExecutor(2) as ex:
                    parts = list(ex.map(lambda r: self._pull_role(r, cid, stage), roles))
            else:
                parts = [self._pull_role(r, cid, stage) for r in roles]
        except (CaptureError, RigError) as exc:
            self._incomplete(cid, exc.one_line(), permanent=isinstance(exc, CaptureLost))
            raise
        t_pulled = time.perf_counter()
        trig = self._trigger(cid)
        frames = []
        for fr in [f for part in parts for f in part]:
            frames.append(R.FrameRecord(
                slot=fr["slot"], file=f"{fr['slot']}.jpg", device=fr["device"], role=fr["device_role"],
                camera_role=fr["role"], camera_id=fr["camera_id"], sensor_timestamp_ns=fr["sensor_timestamp_ns"],
                timestamp_source=fr["timestamp_source"], exposure_time_ns=fr["exposure_time_ns"], iso=fr["iso"],
                focus_distance_diopters=fr["focus_distance_diopters"], focus_calibration=fr["focus_calibration"],
                af_state=fr["af_state"], af_roi=list(fr["af_roi"]), intrinsics=R.Intrinsics(**fr["intrinsics"]),
                width=fr["width"], height=fr["height"], sha256=fr["sha256"], size_bytes=fr["size_bytes"],
                frame_number=fr.get("frame_number"),
                **{k: fr.get(k) for k in FRAME_3A_FIELDS + FRAME_TIMING_FIELDS}))
        frames.sort(key=lambda f: list(SLOT_SOURCES).index(f.slot))
        rec = R.CaptureRecord(schema_version=R.SCHEMA_VERSION, capture_id=cid, scene_id=trig["scene_id"],
                              scene_tags=list(trig["scene_tags"]), notes=trig.get("notes", ""), frames=frames,
                              trigger_host_ns=trig["target_host_ns"],
                              trigger_samples=[R.TriggerSample(**t) for t in trig.get("trigger_samples", [])])
        rec.save(stage)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage, final)
        fsync_dir(final.parent)
        self.journal.append("capture_complete", capture_id=cid)
        if not self.cfg.keep_on_phone:
            self.delete_from_phones(cid)
        return CaptureResult(cid, "complete", timings_s={"pull_verify": t_pulled - t0})

    def _trigger(self, cid: str) -> dict:
        """The journal's ``trigger`` event of ``cid``, checked field by field."""
        trig = next((e for e in self.journal.read().events if e["event"] == "trigger"
                     and e.get("capture_id") == cid), None)
        if trig is None:
            raise SessionFormatError(f"no trigger event for {cid}", file=self.journal.path)
        for name, tp in (("target_host_ns", int), ("scene_id", str), ("scene_tags", list), ("notes", str)):
            v = trig.get(name, "" if name == "notes" else None)
            if not isinstance(v, tp) or isinstance(v, bool) or (tp is list and not all(isinstance(t, str) for t in v)):
                raise SessionFormatError(f"trigger of {cid}: bad or missing {name}", file=self.journal.path)
        from hzsr.core.schema import parse_dataclass

        _, problems = parse_dataclass(list[R.TriggerSample], trig.get("trigger_samples", []))
        if problems:
            raise SessionFormatError(f"trigger of {cid}: trigger_samples{problems[0].field}: {problems[0].message}",
                                     file=self.journal.path)
        return trig

    def _incomplete(self, cid: str, reason: str, permanent: bool = False) -> None:
        self.journal.append("capture_incomplete", capture_id=cid, reason=reason, permanent=permanent)
        stage = self.dir / ".incoming" / cid
        if stage.is_dir() and not any(stage.iterdir()):
            stage.rmdir()

    # -- after the fact ------------------------------------------------------------------
    def delete_from_phones(self, cid: str, verified: bool = True) -> None:
        """Delete a capture's phone copies; only ever after its verified folder is in place.

        ``verified=False`` is for an abandoned capture: what could be pulled is in
        ``abandoned/<cid>/``, the rest can never make a triplet.
        """
        if verified:
            rec = R.CaptureRecord.load(self.dir / "captures" / cid)  # raises unless complete on the host
            from hzsr.core.fileio import sha256_file

            for f in rec.frames:
                if sha256_file(self.dir / "captures" / cid / f.file) != f.sha256:
                    raise CaptureError("host copy does not match its record; not deleting the phone's",
                                       field=f"captures/{cid}/{f.file}")
        for role in ("main", "reference"):
            serial = self.device_info(role).serial
            try:
                self.link.retry(f"{serial} delete", lambda role=role: self.link.agent(role).request(
                    "delete", session=self.session_id, capture_id=cid))
            except AgentError as exc:
                if exc.code != "not_found":
                    raise
            self.journal.append("deleted", capture_id=cid, device=serial)

    def abandon(self, cid: str, reason: str) -> Path:
        """Retire a capture that can never complete: partial files go to ``abandoned/<cid>/``.

        The move is one rename, then ``abandoned.json`` (id and reason) is written beside the
        files and the journal records ``capture_abandoned``; ``captures/`` is never touched.
        Idempotent: a crash between the steps is finished by the next call.
        """
        stage = self.dir / ".incoming" / cid
        dest = self.dir / "abandoned" / cid
        dest.parent.mkdir(parents=True, exist_ok=True)
        if stage.is_dir() and not dest.exists():
            os.replace(stage, dest)
            fsync_dir(dest.parent)
        dest.mkdir(exist_ok=True)
        kept = sorted(p.name for p in dest.iterdir() if p.name != "abandoned.json")
        atomic_write_json(dest / "abandoned.json", {"capture_id": cid, "reason": reason, "kept_files": kept})
        self.journal.append("capture_abandoned", capture_id=cid, reason=reason, kept_files=kept,
                            dir=f"abandoned/{cid}")
        return dest

    def discard(self, cid: str, reason: str = "retake") -> None:
        """Mark a capture discarded (kept on disk, excluded downstream)."""
        path = self.dir / "captures" / cid
        rec = R.CaptureRecord.load(path)
        rec.status = "discarded"
        rec.notes = (rec.notes + f" [discarded: {reason}]").strip()
        rec.save(path)
        self.journal.append("capture_discarded", capture_id=cid, reason=reason)


def journal_state(journal: Journal) -> dict[str, JournalState]:
    """Each capture's state in ``journal`` (``hzsr.core.session.journal_states``, the one state machine)."""
    return {cid: e.state for cid, e in journal_states(journal.read().events).items()}


def resume(run: CaptureRun) -> list[CaptureResult]:
    """Finish every capture that was triggered but not completed, or retire it as abandoned.

    A capture whose files can still be pulled is finished (``complete``). One that can never be
    (``failed`` in the journal, a phone reporting a camera error, a phone with no trace of it)
    is ``abandoned``. Only a capture the link could not reach this time stays ``incomplete``.
    """
    run.journal.require_clean()
    out = []
    for cid, entry in journal_states(run.journal.read().events).items():
        st = entry.state
        if st is JournalState.FAILED:
            reason = entry.reason or "a phone never took the capture"
            run.abandon(cid, reason)
            out.append(CaptureResult(cid, "abandoned", reason=reason))
        elif st in (JournalState.TRIGGERED, JournalState.INCOMPLETE):
            if (run.dir / "captures" / cid).exists():
                run.journal.append("capture_complete", capture_id=cid)
                out.append(CaptureResult(cid, "complete"))
                continue
            try:
                out.append(run.collect(cid))
            except CaptureLost as exc:
                run.abandon(cid, exc.one_line())
                out.append(CaptureResult(cid, "abandoned", reason=exc.one_line()))
            except (CaptureError, RigError) as exc:
                out.append(CaptureResult(cid, "incomplete", reason=exc.one_line()))
    stale = run.dir / ".incoming"
    if stale.exists() and not any(stale.iterdir()):
        shutil.rmtree(stale)
    return out


def purge(run: CaptureRun) -> list[str]:
    """Delete phone copies of every complete, discarded or abandoned capture not yet deleted.

    A complete capture's copies go only once its host copy matches its record; an abandoned
    one's partial files were kept aside on the host by ``resume``.
    """
    run.journal.require_clean()
    deleted = {(e["capture_id"]) for e in run.journal.read().events if e["event"] == "deleted"}
    done = []
    for cid, st in journal_state(run.journal).items():
        if st in (JournalState.COMPLETE, JournalState.DISCARDED) and cid not in deleted:
            run.delete_from_phones(cid)
            done.append(cid)
        elif st is JournalState.ABANDONED and cid not in deleted:
            run.delete_from_phones(cid, verified=False)
            done.append(cid)
    return done
