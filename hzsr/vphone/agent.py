"""The capture agent of a virtual phone: the JSON-lines protocol on ``localabstract:hzsr_agent``.

``docs/agent-protocol.md`` is the reference; this module is its virtual implementation. The phone
has a boot-time clock (``timing.PhoneClock`` over the host's CLOCK_MONOTONIC: an offset, a
wandering drift and any injected jumps), a link profile with one-way delays
(``timing.LinkProfile``, slept around the clock read of ``time`` exchanges, where they matter),
and a camera HAL stream (``sim.sensor``) that the app steers onto the goal phase with
``sim.phase_align`` when a capture asks for ``phase_align``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from hzsr.core.agent_protocol import AGENT_FILES, MAX_LEAD_NS, PROTOCOL_VERSION
from hzsr.core.errors import AgentRequestError, StorageError, ThreeAError
from hzsr.core.fileio import sha256_bytes
from hzsr.sim.phase_align import AlignResult, PhaseAligner
from hzsr.sim.profiles import PhoneProfile
from hzsr.sim.sensor import SensorConfig, SensorStream
from hzsr.sim.three_a import ThreeA, frame_3a_meta
from hzsr.sim.timing import LinkProfile, PhoneClock, PhoneTiming
from hzsr.sim.world import VirtualWorld
from hzsr.vphone.adb_device import StreamIO
from hzsr.vphone.storage import PhoneStorage

log = logging.getLogger(__name__)

AGENT_VERSION = "1.0.0"
MIN_LEAD_NS = 20_000_000  # a target closer than this cannot be scheduled (the agent's own figure)
WT_OFFSET_NS = 1_500_000  # APPROXIMATE sync: W and T exposures differ by up to this


@dataclass
class AgentFaults:
    stall: bool = False  # stop answering (requests are read, never replied to)
    fail_next_capture: bool = False  # the next capture's done marker reports a camera error
    # Protocol violations, for `hzsr rig conformance` to catch:
    done_first: bool = False  # write the done marker before the images
    time_outside_rtt: bool = False  # `time` replies carry the clock read at the previous request
    ignore_3a: bool = False  # accept set_3a and report its values, but render with auto 3A
    ids_across_sessions: bool = False  # pending captures keyed by capture_id alone (an old bug)
    list_started_only: bool = False  # `list` omits acknowledged captures with no folder yet
    unbounded_lead: bool = False  # accept a target however far ahead
    no_cancel: bool = False  # `cancel` is unknown_cmd


@dataclass
class PendingCapture:
    """A capture acknowledged and not yet done: cancellable until its frame starts exposing."""

    dir: str
    frame_ts: int
    task: asyncio.Task | None = None
    exposing: bool = False  # the frame has started: too late to cancel; `done` will follow


@dataclass
class AgentState:
    phase_ns: float  # sensor stream phase in the phone clock
    frame_counter_base: int = 0
    # Keyed by (session, capture_id): one session's ids say nothing about another's.
    pending: dict[tuple[str, str], PendingCapture] = field(default_factory=dict)


class CaptureAgent:
    def __init__(self, serial: str, role: str, profile: PhoneProfile, world: VirtualWorld,
                 storage: PhoneStorage, clock: PhoneClock, link: LinkProfile, seed: int,
                 timestamp_source: str | None = None):
        self.serial, self.role, self.profile = serial, role, profile
        self.world, self.storage, self.clock, self.link = world, storage, clock, link
        self.rng = np.random.default_rng(seed)
        self.faults = AgentFaults()
        self._armed_jump: tuple | None = None  # (captures left, jump_ns, callback): clock_jump_ms fault
        self.timestamp_source = timestamp_source or profile.timestamp_source
        self.state = AgentState(phase_ns=0.0)
        self.phone_timing = PhoneTiming()
        # The camera opens now: the free-running phase depends on when, so it differs run to run.
        self.stream = SensorStream(SensorConfig(period_ns=profile.frame_period_ns, readout_ns=profile.readout_ns),
                                   self.boottime_ns() + float(self.rng.uniform(0, 3e8)), int(self.rng.integers(2**31)))
        self.aligner = PhaseAligner(self.stream)
        # The last phase alignment and the lead it had (target minus the phone's clock on arrival):
        # a test or a log can then tell a cut-short alignment from a wrong one.
        self.last_alignment: tuple[AlignResult, int] | None = None
        self._unstall = asyncio.Event()
        self.protocol_version = PROTOCOL_VERSION  # 1: behave as a v1 agent (no 3A control)
        self.three_a = ThreeA(role, world, world.cfg.size)
        self._last_time_ns: int | None = None
        # `time` replies run on a pool of their own: rendering, 3A metering and the phone's
        # shell commands never queue ahead of a clock read.
        self._clock_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"agent-time-{serial}")

    def close(self) -> None:
        """Release the agent's threads (the phone is stopping)."""
        self._clock_pool.shutdown(wait=False, cancel_futures=True)

    # -- clock -------------------------------------------------------------------------
    def boottime_ns(self) -> int:
        return int(self.clock.phone_ns(time.monotonic_ns()))

    def jump_clock(self, jump_ns: int) -> None:
        self.clock.jumps.append((time.monotonic_ns(), int(jump_ns)))

    def arm_clock_jump(self, jump_ns: int, after_captures: int, then=None) -> None:
        """Step the clock by ``jump_ns`` when ``after_captures`` more captures have finished (an
        event, not a timer: the step lands between the same two captures however loaded the host)."""
        self._armed_jump = (max(int(after_captures), 1), int(jump_ns), then)

    def _capture_finished(self) -> None:
        armed = self._armed_jump
        if armed is None:
            return
        left, jump_ns, then = armed
        if left > 1:
            self._armed_jump = (left - 1, jump_ns, then)
            return
        self._armed_jump = None
        self.jump_clock(jump_ns)
        if then is not None:
            then()

    def set_stall(self, stalled: bool) -> None:
        self.faults.stall = stalled
        if not stalled:
            self._unstall.set()

    # -- transport ---------------------------------------------------------------------
    async def handle(self, s: StreamIO) -> None:
        buf = b""
        while True:
            chunk = await s.read_some()
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                if self.faults.stall:
                    self._unstall.clear()
                    await self._unstall.wait()
                reply = await self._reply(line)
                await s.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")

    async def _reply(self, line: bytes) -> dict:
        req_id = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise AgentRequestError("bad_request", "a request is a JSON object with a string 'cmd'")
            req_id = req.get("id")
            if req["cmd"] == "time":
                out = await asyncio.get_running_loop().run_in_executor(self._clock_pool, self._time)
            elif req["cmd"] in ("set_3a", "get_3a") and self.protocol_version >= 2:
                # Metering renders; a camera does it off the thread that answers requests.
                out = await asyncio.to_thread(self._set_3a if req["cmd"] == "set_3a" else self._get_3a, req)
            else:
                fn = {"hello": self._hello, "capture": self._capture, "status": self._status,
                      "list": self._list, "meta": self._meta, "delete": self._delete,
                      "cancel": self._cancel}.get(req["cmd"])
                if fn is None and self.protocol_version >= 2:
                    fn = {"set_3a": self._set_3a, "get_3a": self._get_3a}.get(req["cmd"])
                if fn is None:
                    raise AgentRequestError("unknown_cmd", f"unknown cmd {req['cmd']!r}")
                out = fn(req)
            return {"id": req_id, "ok": True, **out}
        except json.JSONDecodeError as exc:
            return {"id": None, "ok": False, "error": {"code": "bad_json", "message": exc.msg}}
        except AgentRequestError as exc:
            return {"id": req_id, "ok": False, "error": {"code": exc.code, "message": exc.message, **exc.extra}}
        except Exception as exc:  # a bug of the agent's own: say so in the reply and keep serving
            log.exception("agent %s: request %r failed", self.serial, line[:200])
            return {"id": req_id, "ok": False,
                    "error": {"code": "internal", "message": f"{type(exc).__name__}: {exc}"[:500]}}

    # -- commands ----------------------------------------------------------------------
    def _hello(self, req: dict) -> dict:
        cams = []
        for cam in self.profile.cameras:
            k = cam.intrinsics(self.world.cfg.size)
            cams.append({
                "camera_id": cam.camera_id, "role": cam.role, "physical_id": cam.physical_id,
                "focal_length_mm": cam.focal_length_mm, "f_number": cam.f_number,
                "pixel_size_um": cam.pixel_size_um * cam.native_size[0] / self.world.cfg.size[0],
                "width": self.world.cfg.size[0], "height": self.world.cfg.size[1],
                "intrinsics": {"fx": k[0, 0], "fy": k[1, 1], "cx": k[0, 2], "cy": k[1, 2]},
                "timestamp_source": self.timestamp_source,
            })
        return {"protocol_version": self.protocol_version, "agent_version": AGENT_VERSION,
                "model": self.profile.model, "build": self.profile.build_fingerprint,
                "serial": self.serial, "sync_type": self.profile.sync_type,
                "frame_period_ns": self.profile.frame_period_ns, "cameras": cams}

    def _time(self) -> dict:
        """Runs in a worker thread: the one-way delays are slept where they would occur."""
        link, rng = self.link, self.rng
        time.sleep(link.sample_ns("up", rng) * 1e-9)
        t1 = self.boottime_ns()
        t2 = t1
        if self.faults.time_outside_rtt:
            # A stale clock: the value read at the previous request, not at this one.
            stale, self._last_time_ns = self._last_time_ns, t2
            t1 = t2 = stale if stale is not None else t2
        time.sleep((self.phone_timing.reply_delay_ns(rng) + link.sample_ns("down", rng)) * 1e-9)
        return {"t1_ns": t1, "t2_ns": t2}

    def _set_3a(self, req: dict) -> dict:
        try:
            return self.three_a.set(req, self.clock.host_ns(self.boottime_ns()), self.rng)
        except ThreeAError as exc:
            raise AgentRequestError("bad_request", str(exc)) from None

    def _get_3a(self, req: dict) -> dict:
        host_ns = self.clock.host_ns(self.boottime_ns())
        return {"cameras": {c: self.three_a.state(c, host_ns, self.rng) for c in ("W", "T")}}

    def _status(self, req: dict) -> dict:
        return {"boottime_ns": self.boottime_ns(), "frame_period_ns": self.profile.frame_period_ns,
                # Before the stream's first frame, the phase it will start with.
                "phase_ns": int(self.stream.reported(max(0, self.stream.frame_at(self.boottime_ns())))
                                % self.profile.frame_period_ns),
                "pending": [{"session": s, "capture_id": c} for s, c in sorted(self.state.pending)],
                "storage_free_bytes": self.storage.free_bytes()}

    def _capture_dir(self, session: str, capture_id: str) -> str:
        for name, v in (("session", session), ("capture_id", capture_id)):
            if not isinstance(v, str) or not v or "/" in v or v.startswith("."):
                raise AgentRequestError("bad_request", f"{name} must be a plain, non-empty name")
        return f"{AGENT_FILES}/{session}/{capture_id}"

    def _capture(self, req: dict) -> dict:
        d = self._capture_dir(req.get("session"), req.get("capture_id"))
        target = req.get("target_ns")
        if not isinstance(target, int):
            raise AgentRequestError("bad_request", "target_ns must be an integer (boot-time ns)")
        cams = req.get("cameras", ["W", "T"])
        if not isinstance(cams, list) or not cams or any(c not in ("W", "T") for c in cams):
            raise AgentRequestError("bad_request", "cameras must be a non-empty list of 'W' and 'T'")
        now = self.boottime_ns()
        if target < now + MIN_LEAD_NS:
            raise AgentRequestError("target_in_past", "target_ns is in the past or too close to schedule",
                             now_ns=now, min_lead_ns=MIN_LEAD_NS)
        if target > now + MAX_LEAD_NS and not self.faults.unbounded_lead:
            raise AgentRequestError("target_too_far", f"target_ns is more than {MAX_LEAD_NS / 1e9:g} s ahead",
                                    now_ns=now, max_lead_ns=MAX_LEAD_NS)
        key = (req["session"], req["capture_id"])
        clash = key in self.state.pending or (self.faults.ids_across_sessions
                                              and any(c == key[1] for _, c in self.state.pending))
        if self.storage.host_path(d).exists() or clash:
            raise AgentRequestError("exists", f"capture {req['capture_id']} already exists in {req['session']}")
        need = 3 * 1024 * 1024 * len(cams) * max(1, self.world.cfg.size[0] * self.world.cfg.size[1] // 12_000_000)
        if self.storage.full or self.storage.free_bytes() < need:
            raise AgentRequestError("storage_full", "not enough free storage for this capture",
                             free_bytes=self.storage.free_bytes())
        if req.get("phase_align"):
            # The target is the goal phase: steer the stream onto it by frame-duration changes.
            self.last_alignment = (self.aligner.align(now, target, target), target - now)
        k = self.aligner.capture_frame(target)  # the first frame stamped at or after the target
        frame_ts, frame_number = int(round(self.stream.reported(k))), k
        pend = self.state.pending[key] = PendingCapture(d, frame_ts)
        pend.task = asyncio.get_running_loop().create_task(
            self._run_capture(req, d, cams, frame_ts, frame_number, self.stream.start(k)))
        return {"capture_id": req["capture_id"], "frame_timestamp_ns": frame_ts, "frame_number": frame_number,
                "dir": d}

    async def _run_capture(self, req: dict, d: str, cams: list[str], frame_ts: int, frame_number: int,
                           true_start: float) -> None:
        key = (req["session"], req["capture_id"])
        true_host = self.clock.host_ns(true_start)
        delay = (true_host - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)  # a `cancel` before the frame starts ends the capture here
        pend = self.state.pending.get(key)
        if pend is None:
            return
        pend.exposing = True
        try:
            await asyncio.to_thread(self._make_frames, req, d, cams, frame_ts, frame_number, true_host)
        finally:
            self.state.pending.pop(key, None)

    def _make_frames(self, req: dict, d: str, cams: list[str], frame_ts: int, frame_number: int,
                     true_host: float) -> None:
        if self.faults.fail_next_capture:
            self.faults.fail_next_capture = False
            self._done(d, {"status": "failed", "error": {"code": "camera_error",
                                                        "message": "CameraDevice.onError: ERROR_CAMERA_DEVICE"}})
            return
        frames = []
        wt = float(self.rng.uniform(-WT_OFFSET_NS, WT_OFFSET_NS))
        if self.faults.done_first:
            self._done(d, {"status": "ok", "files": [f"{c}.jpg" for c in cams] + ["meta.json"]})
        try:
            # Only a request holding both W and T has the APPROXIMATE offset: the T exposure starts
            # up to WT_OFFSET_NS away from the W frame whose timestamp both frames carry.
            both = "W" in cams and "T" in cams
            for cam_role in cams:
                host_ns = true_host + (wt if cam_role == "T" and both else 0.0)
                ctl, af_focus, af_region = self.three_a.frame_controls(cam_role, host_ns)
                if self.faults.ignore_3a or self.protocol_version < 2:
                    ctl, af_focus, af_region = None, None, None
                lens: dict[str, float] = {}
                jpg, exp, scene, roi, t_scene = self.world.render(self.role, cam_role, host_ns, af_focus,
                                                                  self.rng, controls=ctl, lens=lens)
                cam = self.profile.camera(cam_role)
                focus = (1 / scene.layer(scene.subject).depth_m * float(1 + self.rng.normal(0, 0.03))
                         if af_focus is None else af_focus)
                focus = lens.get("focus_diopters", focus)  # where a crew's refocus put the lens, as a phone reports
                name = f"{cam_role}.jpg"
                self.storage.write_atomic(f"{d}/{name}", jpg)
                k = cam.intrinsics(self.world.cfg.size)
                calibrated = self.profile.sync_type == "CALIBRATED" and cam_role == "T" and both
                stamp = frame_ts + int(wt) if calibrated else frame_ts
                frames.append({
                    "file": name, "camera_id": cam.camera_id, "physical_id": cam.physical_id, "role": cam_role,
                    "sensor_timestamp_ns": stamp, "timestamp_source": self.timestamp_source,
                    "frame_number": frame_number, "exposure_time_ns": exp.exposure_time_ns, "iso": exp.iso,
                    "focus_distance_diopters": round(focus, 4), "focus_calibration": "APPROXIMATE",
                    "af_state": "FOCUSED_LOCKED", "af_roi": af_region or req.get("af_roi") or roi,
                    "intrinsics": {"fx": k[0, 0], "fy": k[1, 1], "cx": k[0, 2], "cy": k[1, 2]},
                    "width": self.world.cfg.size[0], "height": self.world.cfg.size[1],
                    "sha256": sha256_bytes(jpg), "size_bytes": len(jpg),
                    "rolling_shutter_skew_ns": self.profile.readout_ns,  # SENSOR_ROLLING_SHUTTER_SKEW
                })
                if self.protocol_version >= 2:
                    frames[-1].update(frame_3a_meta(self.three_a, cam_role, cam, exp, self.profile.frame_period_ns,
                                                    lying=self.faults.ignore_3a))
                self.world.record_truth(self.serial, {
                    "session": req["session"], "capture_id": req["capture_id"], "role": self.role,
                    "camera": cam_role, "sensor_timestamp_ns": stamp, "true_host_ns": int(host_ns),
                    "scene_id": scene.scene_id, "scene_tags": scene.tags, "scene_time_s": t_scene,
                })
            meta = {"protocol_version": self.protocol_version, "session": req["session"],
                    "capture_id": req["capture_id"], "device_serial": self.serial, "frames": frames}
            self.storage.write_atomic(f"{d}/meta.json", json.dumps(meta, indent=1).encode())
            if not self.faults.done_first:
                self._done(d, {"status": "ok", "files": [f["file"] for f in frames] + ["meta.json"]})
        except StorageError as exc:
            self._done(d, {"status": "failed", "error": {"code": "storage_full" if exc.errno == 28 else "io_error",
                                                        "message": exc.strerror}})

    def _done(self, d: str, body: dict) -> None:
        # The capture is over (its frames exposed): an armed clock jump lands now, before the host
        # can see the marker, so it falls between this capture's frames and the host's next sync.
        self._capture_finished()
        data = json.dumps(body).encode()
        try:
            self.storage.write_atomic(f"{d}/done", data)
        except StorageError:
            # The marker must land even on a full phone: it is a few bytes, written last.
            p = self.storage.host_path(f"{d}/done")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)

    def _list(self, req: dict) -> dict:
        session = req.get("session")
        base = self.storage.host_path(f"{AGENT_FILES}/{session}" if session else AGENT_FILES)
        out = []
        if base.is_dir():
            if session:
                dirs = [(session, p) for p in sorted(base.iterdir()) if p.is_dir()]
            else:
                dirs = [(s.name, p) for s in sorted(base.iterdir()) if s.is_dir() for p in sorted(s.iterdir())]
            for sess, p in dirs:
                done = p / "done"
                status = json.loads(done.read_text()).get("status") if done.exists() else "pending"
                out.append({"session": sess, "capture_id": p.name, "status": status,
                            "files": sorted(f.name for f in p.iterdir() if not f.name.startswith("."))})
        # Acknowledged captures whose frame has not come yet have no folder: list them too.
        listed = {(c["session"], c["capture_id"]) for c in out}
        for sess, cid in sorted(self.state.pending):
            if self.faults.list_started_only:
                break
            if (sess, cid) not in listed and (not session or sess == session):
                out.append({"session": sess, "capture_id": cid, "status": "pending", "files": []})
        out.sort(key=lambda c: (c["session"], c["capture_id"]))
        return {"captures": out}

    def _meta(self, req: dict) -> dict:
        d = self._capture_dir(req.get("session"), req.get("capture_id"))
        done = self.storage.host_path(f"{d}/done")
        if not done.exists():
            pending = (req["session"], req["capture_id"]) in self.state.pending or (
                self.faults.ids_across_sessions and any(c == req["capture_id"] for _, c in self.state.pending))
            code = "pending" if pending else "not_found"
            raise AgentRequestError(code, "no done marker for this capture")
        meta = self.storage.host_path(f"{d}/meta.json")
        return {"done": json.loads(done.read_text()),
                "meta": json.loads(meta.read_text()) if meta.exists() else None}

    def _delete(self, req: dict) -> dict:
        d = self._capture_dir(req.get("session"), req.get("capture_id"))
        if (req["session"], req["capture_id"]) in self.state.pending:
            raise AgentRequestError("busy", "capture still in progress (cancel it, or wait for its done marker)")
        try:
            self.storage.remove(d, recursive=True)
        except StorageError as exc:
            raise AgentRequestError("not_found" if exc.errno == 2 else "io_error", exc.strerror) from None
        return {"deleted": d}

    def _cancel(self, req: dict) -> dict:
        """Withdraw an acknowledged capture whose frame has not started; nothing is written."""
        if self.faults.no_cancel:
            raise AgentRequestError("unknown_cmd", "unknown cmd 'cancel'")
        d = self._capture_dir(req.get("session"), req.get("capture_id"))
        key = (req["session"], req["capture_id"])
        pend = self.state.pending.get(key)
        if pend is None:
            raise AgentRequestError("not_found", "no pending capture with this session and capture_id "
                                    "(a finished one is removed with delete)")
        if pend.exposing:
            raise AgentRequestError("busy", "the frame is already being captured; wait for its done marker")
        if pend.task is not None:
            pend.task.cancel()
        del self.state.pending[key]
        return {"cancelled": d}
