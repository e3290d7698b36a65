"""``hzsr rig conformance``: check a live capture agent against every rule of docs/agent-protocol.md.

For the author of a phone-side agent (an Android app): run it against the phone on a rig.yaml and
every rule prints pass, fail (with what was seen) or skip (not applicable, e.g. 3A rules on a
protocol-1 agent). Each rule is a function named in ``RULES``; the rule ids are the headings the
protocol page uses, so a failure points at the paragraph to read.

The suite writes captures into a session named ``conformance-<time>`` on the phone and deletes
them at the end; 3A settings are returned to auto.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from adbutils import Network

from hzsr.capture.link import LINK_ERRORS, AgentClient, RigLink
from hzsr.core.agent_protocol import (
    AGENT_FILES,
    AGENT_SOCKET,
    CAMERA_FIELDS,
    CAMERAS_PER_ROLE,
    CAPTURE_ACK_FIELDS,
    ERROR_CODES,
    FRAME_3A_FIELDS,
    FRAME_FIELDS,
    HELLO_FIELDS,
    MAX_LEAD_NS,
    STATUS_FIELDS,
    SUPPORTED_VERSIONS,
    SYNC_TYPES,
    TIMESTAMP_SOURCES,
)
from hzsr.core.errors import AgentError, RigError


class RuleFailed(Exception):
    """A rule's check did not hold; the message says what was seen."""


class RuleSkipped(Exception):
    """The rule does not apply to this agent (e.g. 3A rules for protocol 1)."""


@dataclass
class RuleResult:
    rule: str
    status: str  # pass | fail | skip
    detail: str = ""


@dataclass
class ConformanceConfig:
    """Options of ``hzsr rig conformance``; every default lives here."""

    lead_ms: float = 300.0  # capture targets are this far ahead of the phone's clock
    far_lead_ms: float = 5000.0  # targets of captures the suite cancels before their frame comes
    time_exchanges: int = 30  # `time` exchanges for the clock rules
    drift_tolerance_us: float = 50.0  # clock drift allowed across the time exchanges
    done_timeout_s: float = 30.0
    brightness_ratio: tuple[float, float] = (1.4, 2.8)  # 2x exposure must brighten by this (linear)
    # 3a.manual_honoured, block by block (steady_blocks x steady_blocks): a block held still where its
    # two dark frames (same settings) agree within this |log| ratio; the frames count only with at
    # least steady_min_still of the blocks still and steady_min_alike of those with a bright/dark
    # ratio within steady_ratio_log_spread (|log|) of the median, else the three are retaken.
    # Measured on the virtual rig's still scenes, every kind, both phones (docs/agent-protocol.md).
    steady_scene_log_ratio: float = 0.1
    steady_blocks: int = 16
    steady_min_still: float = 0.3
    steady_ratio_log_spread: float = 0.2
    steady_min_alike: float = 0.7
    steady_scene_tries: int = 3


def _block_linear_means(img: np.ndarray, mask: np.ndarray, cells: int) -> np.ndarray:
    """Mean linear brightness, ``(v / 255) ** 2.2``, of ``mask``'s pixels in each of ``cells`` x
    ``cells`` blocks (NaN where a block is less than half in ``mask``), flattened."""
    h, w = mask.shape
    cell = ((np.arange(h) * cells // h)[:, None] * cells + (np.arange(w) * cells // w)[None, :]).ravel()
    m = mask.ravel().astype(np.float64)
    n = np.bincount(cell, m, cells * cells)
    total = np.bincount(cell, None, cells * cells)
    sums = np.bincount(cell, ((img.astype(np.float64) / 255) ** 2.2).ravel() * m, cells * cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 0.5 * total, sums / n, np.nan)


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise RuleFailed(msg)


class RawConn:
    """A bare connection to the agent: bytes in, lines out, for the framing rules."""

    def __init__(self, link: RigLink, role: str, timeout_s: float = 5.0):
        self.sock = link.device(role).create_connection(Network.LOCAL_ABSTRACT, AGENT_SOCKET)
        self.sock.settimeout(timeout_s)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise RuleFailed("no reply line within the timeout") from None
            if not chunk:
                raise RuleFailed("the agent closed the connection")
            self.buf += chunk
        out, self.buf = self.buf.split(b"\n", 1)
        return out

    def reply(self) -> dict:
        raw = self.line()
        try:
            r = json.loads(raw)
        except json.JSONDecodeError:
            raise RuleFailed(f"reply is not JSON: {raw[:80]!r}") from None
        expect(isinstance(r, dict), f"reply is not a JSON object: {raw[:80]!r}")
        return r

    def close(self) -> None:
        self.sock.close()


@dataclass
class Suite:
    link: RigLink
    role: str
    cfg: ConformanceConfig = field(default_factory=ConformanceConfig)
    # Milliseconds: two runs in one second must not share (and so see) each other's captures.
    session: str = field(default_factory=lambda: f"conformance-{time.time_ns() // 1_000_000}")
    hello: dict = field(default_factory=dict)
    captures: dict[str, dict] = field(default_factory=dict)  # capture_id -> {ack, done, meta}
    n: int = 0
    early_done: list[str] = field(default_factory=list)  # captures whose done came before meta.json

    # -- helpers -----------------------------------------------------------------------
    @property
    def agent(self) -> AgentClient:
        return self.link.agent(self.role)

    def req(self, cmd: str, **f: Any) -> dict:
        return self.agent.request(cmd, **f)

    def error_of(self, cmd: str, **f: Any) -> dict:
        try:
            r = self.req(cmd, **f)
        except AgentError as exc:
            return exc.reply
        raise RuleFailed(f"{cmd} {f} was accepted ({json.dumps(r)[:120]}); an error reply was expected")

    @property
    def cams(self) -> list[str]:
        """The cameras the agent's hello lists, in W, T order (a reference phone may have only T)."""
        roles = {c.get("role") for c in self.hello.get("cameras", [])}
        return [r for r in ("W", "T") if r in roles] or ["W", "T"]

    def v2(self) -> None:
        if self.hello.get("protocol_version", 1) < 2:
            raise RuleSkipped(f"protocol {self.hello.get('protocol_version')}: no 3A control")

    def capture(self, cameras: list[str] | None = None) -> tuple[str, dict]:
        """Capture and wait for its done marker; returns (capture_id, {ack, done, meta, target})."""
        cid = f"c{self.n:03d}"
        self.n += 1
        now = self.req("status")["boottime_ns"]
        target = now + int(self.cfg.lead_ms * 1e6)
        ack = self.req("capture", session=self.session, capture_id=cid, target_ns=target,
                       cameras=cameras or self.cams, phase_align=True)
        got = self.wait_done(cid)
        expect(got.get("done", {}).get("status") == "ok", f"{cid}: the capture failed: {got.get('done')}")
        if not isinstance(got.get("meta"), dict):
            # A done marker before meta.json breaks capture.done_last; wait for the rest so
            # the other rules still check what they are about.
            self.early_done.append(cid)
            t_end = time.monotonic() + self.cfg.done_timeout_s
            while not isinstance(got.get("meta"), dict) and time.monotonic() < t_end:
                time.sleep(0.05)
                got = self.req("meta", session=self.session, capture_id=cid)
            expect(isinstance(got.get("meta"), dict), f"{cid}: done marker but never a meta.json")
        self.captures[cid] = {"ack": ack, "target": target, **got}
        return cid, self.captures[cid]

    def wait_done(self, cid: str) -> dict:
        t_end = time.monotonic() + self.cfg.done_timeout_s
        while time.monotonic() < t_end:
            try:
                return self.req("meta", session=self.session, capture_id=cid)
            except AgentError as exc:
                if exc.code not in ("pending", "not_found"):
                    raise
            time.sleep(0.02)
        raise RuleFailed(f"no done marker for {cid} after {self.cfg.done_timeout_s:.0f} s")

    def image(self, cid: str, name: str) -> np.ndarray:
        data = self.link.device(self.role).sync.read_bytes(f"{AGENT_FILES}/{self.session}/{cid}/{name}")
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        expect(img is not None, f"{cid}/{name} is not a decodable JPEG")
        return img

    # -- framing -------------------------------------------------------------------------
    def rule_framing_one_line(self) -> str:
        c = RawConn(self.link, self.role)
        try:
            c.send(b'{"cmd":"hello","id":1}\n')
            r = c.reply()
            expect(r.get("ok") is True and r.get("id") == 1, f"hello reply {r}")
        finally:
            c.close()
        self.hello = r
        return "hello answered with one JSON line"

    def rule_framing_split_and_pipelined(self) -> str:
        c = RawConn(self.link, self.role)
        try:
            c.send(b'{"cmd":"sta')
            time.sleep(0.05)
            c.send(b'tus","id":"split"}\n')
            r = c.reply()
            expect(r.get("id") == "split" and r.get("ok") is True, f"split request: {r}")
            c.send(b'{"cmd":"status","id":"a"}\n{"cmd":"hello","id":"b"}\n')
            ids = [c.reply().get("id"), c.reply().get("id")]
            expect(ids == ["a", "b"], f"pipelined replies out of order: {ids}")
        finally:
            c.close()
        return "a split request is reassembled; pipelined requests answered in order"

    def rule_framing_id_echo(self) -> str:
        c = RawConn(self.link, self.role)
        try:
            for rid in ("s", 7, {"k": [1, 2]}, None):
                c.send(json.dumps({"cmd": "status", "id": rid}).encode() + b"\n")
                r = c.reply()
                expect(r.get("id") == rid, f"id {rid!r} came back as {r.get('id')!r}")
        finally:
            c.close()
        return "string, number, object and null ids echoed"

    def rule_framing_connections(self) -> str:
        a, b = RawConn(self.link, self.role), RawConn(self.link, self.role)
        try:
            a.send(b'{"cmd":"hello","id":"a"}\n')
            b.send(b'{"cmd":"hello","id":"b"}\n')
            expect(b.reply().get("id") == "b" and a.reply().get("id") == "a", "two connections not both served")
        finally:
            a.close()
            b.close()
        return "two connections served at once"

    # -- errors --------------------------------------------------------------------------
    def rule_error_bad_json(self) -> str:
        c = RawConn(self.link, self.role)
        try:
            c.send(b"this is not json\n")
            r = c.reply()
            expect(r.get("ok") is False and (r.get("error") or {}).get("code") == "bad_json" and "id" in r
                   and r["id"] is None, f"reply to a non-JSON line: {r}")
            c.send(b'{"cmd":"hello","id":2}\n')
            expect(c.reply().get("id") == 2, "connection not usable after an error")
        finally:
            c.close()
        return "bad_json with id null; the connection stays open"

    def rule_error_unknown_cmd(self) -> str:
        e = self.error_of("frobnicate")
        expect(e["error"].get("code") == "unknown_cmd", f"got {e['error']}")
        return "unknown_cmd"

    def rule_error_bad_request(self) -> str:
        e = self.error_of("capture", session=self.session, capture_id="x")
        expect(e["error"].get("code") == "bad_request" and e["error"].get("message"), f"got {e['error']}")
        e = self.error_of("capture", session="../etc", capture_id="x", target_ns=1)
        expect(e["error"].get("code") == "bad_request", f"session '../etc': got {e['error']}")
        return "missing target_ns and a session with '/' are bad_request"

    def rule_error_target_in_past(self) -> str:
        now = self.req("status")["boottime_ns"]
        e = self.error_of("capture", session=self.session, capture_id="past", target_ns=now - 1_000_000)
        err = e["error"]
        expect(err.get("code") == "target_in_past" and isinstance(err.get("now_ns"), int)
               and isinstance(err.get("min_lead_ns"), int), f"got {err}")
        return f"target_in_past with now_ns, min_lead_ns={err['min_lead_ns']}"

    def rule_error_shape(self) -> str:
        e = self.error_of("frobnicate")
        expect(set(e) >= {"id", "ok", "error"} and set(e["error"]) >= {"code", "message"}
               and e["error"]["code"] in ERROR_CODES, f"error reply {e}")
        return "error replies carry id, ok=false, error.code and error.message"

    # -- hello, time, status ---------------------------------------------------------------
    def rule_hello_fields(self) -> str:
        h = self.req("hello")
        self.hello = h
        for k in HELLO_FIELDS:
            expect(k in h, f"hello lacks {k!r}")
        expect(h["protocol_version"] in SUPPORTED_VERSIONS, f"protocol_version {h['protocol_version']} "
               f"not one of {SUPPORTED_VERSIONS}")
        expect(h["sync_type"] in SYNC_TYPES, f"sync_type {h['sync_type']!r}")
        roles = sorted(c.get("role") for c in h["cameras"])
        need = set(CAMERAS_PER_ROLE.get(self.role, ["W", "T"]))
        expect(need <= set(roles), f"cameras roles {roles}; a {self.role} phone needs {sorted(need)}")
        for c in h["cameras"]:
            for k in CAMERA_FIELDS:
                expect(k in c, f"camera {c.get('role')} lacks {k!r}")
            expect(c["timestamp_source"] in TIMESTAMP_SOURCES, f"timestamp_source {c['timestamp_source']!r}")
            expect(set(c["intrinsics"]) >= {"fx", "fy", "cx", "cy"}, "intrinsics needs fx, fy, cx, cy")
        return f"protocol {h['protocol_version']}, agent {h['agent_version']}"

    def _exchanges(self) -> list[tuple[int, int, int, int]]:
        # Uneven gaps between exchanges: a clock read at the wrong moment (a cached or stale
        # value) then lags by different amounts, which no single offset can explain. A few gaps
        # are longer than any round trip on a loaded host (150 ms): a value that stale falls
        # outside its exchange's round trip however slow the link, so the rule catches it.
        out = []
        for k in range(self.cfg.time_exchanges):
            out.append(self.agent.time_exchange())
            time.sleep(0.15 if k % 10 == 9 else (0.001 if k % 2 else 0.02))
        return out

    def rule_time_turnaround(self) -> str:
        ex = self._exchanges()
        for t0, t1, t2, t3 in ex:
            expect(t1 <= t2, f"t1 {t1} > t2 {t2}")
            expect(t2 - t1 <= t3 - t0, f"the phone's turnaround {(t2 - t1) / 1e3:.0f} us exceeds the round trip "
                   f"{(t3 - t0) / 1e3:.0f} us")
        return f"t1 <= t2 and t2 - t1 <= t3 - t0 in {len(ex)} exchanges"

    def rule_time_within_rtt(self) -> str:
        ex = self._exchanges()
        lo = max(t2 - t3 for t0, t1, t2, t3 in ex)  # offset >= this for every exchange
        hi = min(t1 - t0 for t0, t1, t2, t3 in ex)  # offset <= this
        slack = self.cfg.drift_tolerance_us * 1e3
        expect(lo <= hi + slack, f"no single clock offset fits every exchange: the stamps fall outside their "
               f"round trips by {(lo - hi) / 1e3:.0f} us (t1/t2 must be read while the request is being served)")
        return f"one offset fits all {len(ex)} exchanges (margin {(hi - lo) / 1e3:.0f} us)"

    def rule_status_fields(self) -> str:
        a = self.req("status")
        for k in STATUS_FIELDS:
            expect(k in a, f"status lacks {k!r}")
        expect(0 <= a["phase_ns"] < a["frame_period_ns"], f"phase_ns {a['phase_ns']} outside [0, frame_period)")
        b = self.req("status")
        expect(b["boottime_ns"] > a["boottime_ns"], "boottime_ns did not increase between two status calls")
        return "fields present; boottime_ns increases"

    # -- capture ---------------------------------------------------------------------------
    def rule_capture_ack(self) -> str:
        cid, c = self.capture()
        ack = c["ack"]
        for k in CAPTURE_ACK_FIELDS:
            expect(k in ack, f"capture reply lacks {k!r}")
        expect(ack["frame_timestamp_ns"] >= c["target"], "frame_timestamp_ns is before target_ns")
        expect(ack["dir"].rstrip("/") == f"{AGENT_FILES}/{self.session}/{cid}", f"dir {ack['dir']!r}")
        expect(c["done"].get("status") == "ok", f"done marker {c['done']}")
        return f"frame {(ack['frame_timestamp_ns'] - c['target']) / 1e6:.3f} ms after the target"

    def rule_capture_done_last(self) -> str:
        cid, c = self.capture()
        expect(not self.early_done, f"the done marker was there before meta.json in {', '.join(self.early_done)}")
        d = f"{AGENT_FILES}/{self.session}/{cid}"
        out = self.link.device(self.role).shell(f"stat -c '%y|%n' {d}/*")
        stamps = {}
        for line in out.splitlines():
            when, _, name = line.partition("|")
            m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))?", when)
            if m:
                secs = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
                stamps[name.rsplit("/", 1)[-1]] = secs + float("0." + (m.group(2) or "0"))
        expect("done" in stamps, f"stat of {d}/* shows no done: {out[:200]!r}")
        files = c["done"].get("files", [])
        missing = [f for f in files if f not in stamps]
        expect(not missing, f"done lists files that are not there: {missing}")
        later = [f for f in files if stamps[f] > stamps["done"]]
        expect(not later, f"written after the done marker: {later}")
        return f"done written after {', '.join(files)}"

    def rule_capture_meta(self) -> str:
        cid, c = self.capture()
        meta = c["meta"]
        expect(isinstance(meta, dict), "meta reply has no meta.json")
        for k in ("protocol_version", "session", "capture_id", "device_serial", "frames"):
            expect(k in meta, f"meta.json lacks {k!r}")
        d = f"{AGENT_FILES}/{self.session}/{cid}"
        dev = self.link.device(self.role)
        for fr in meta["frames"]:
            for k in FRAME_FIELDS:
                expect(k in fr, f"frame {fr.get('file')} lacks {k!r}")
            out = dev.shell(f"sha256sum {d}/{fr['file']}").split()
            expect(out[:1] == [fr["sha256"]], f"{fr['file']}: sha256 {fr['sha256'][:12]} != phone's {out[:1]}")
            expect(dev.sync.stat(f"{d}/{fr['file']}").size == fr["size_bytes"], f"{fr['file']}: size_bytes differs")
        return f"{len(meta['frames'])} frames: fields, sizes and sha256 agree with the files"

    def rule_capture_timestamps_monotonic(self) -> str:
        acks = [self.capture()[1]["ack"] for _ in range(2)]
        ts = [a["frame_timestamp_ns"] for a in acks]
        fn = [a["frame_number"] for a in acks]
        expect(ts[1] > ts[0], f"frame_timestamp_ns not increasing: {ts}")
        expect(fn[1] > fn[0], f"frame_number not increasing: {fn}")
        return f"{(ts[1] - ts[0]) / 1e6:.1f} ms and {fn[1] - fn[0]} frames apart"

    def rule_capture_exists(self) -> str:
        cid = next(iter(self.captures), None) or self.capture()[0]
        now = self.req("status")["boottime_ns"]
        e = self.error_of("capture", session=self.session, capture_id=cid, target_ns=now + int(self.cfg.lead_ms * 1e6))
        expect(e["error"].get("code") == "exists", f"capture of an existing id: {e['error']}")
        return "a second capture with the same id is refused with exists"

    def rule_error_target_too_far(self) -> str:
        now = self.req("status")["boottime_ns"]
        e = self.error_of("capture", session=self.session, capture_id="far", target_ns=now + 3600 * 10**9)
        err = e["error"]
        expect(err.get("code") == "target_too_far" and isinstance(err.get("now_ns"), int)
               and isinstance(err.get("max_lead_ns"), int) and err["max_lead_ns"] <= MAX_LEAD_NS, f"got {err}")
        listed = [c["capture_id"] for c in self.req("list", session=self.session)["captures"]]
        expect("far" not in listed, "the refused capture is listed")
        return f"a target an hour ahead: target_too_far, max_lead_ns={err['max_lead_ns']}"

    def _far_capture(self, cid: str, session: str | None = None) -> dict:
        now = self.req("status")["boottime_ns"]
        return self.req("capture", session=session or self.session, capture_id=cid,
                        target_ns=now + int(self.cfg.far_lead_ms * 1e6), cameras=["T"])

    def _withdraw(self, session: str, cid: str) -> None:
        """Cancel a capture the suite made only to look at; a missing cancel fails rule ``cancel``."""
        try:
            self.req("cancel", session=session, capture_id=cid)
        except AgentError:
            pass

    def rule_capture_session_keyed(self) -> str:
        cid, other = "same-id", f"{self.session}-other"
        self._far_capture(cid)
        try:
            try:
                self._far_capture(cid, other)
            except AgentError as exc:
                raise RuleFailed(f"{other}/{cid} refused ({exc.code}) while {self.session}/{cid} is pending: "
                                 "captures must be keyed by session and capture_id") from None
            self.req("cancel", session=other, capture_id=cid)
            e = self.error_of("meta", session=self.session, capture_id=cid)
            expect(e["error"].get("code") == "pending",
                   f"cancelling {other}/{cid} touched {self.session}/{cid}: meta says {e['error']}")
        finally:
            self._withdraw(other, cid)
            self._withdraw(self.session, cid)
        return "one capture_id pending in two sessions at once, each cancelled apart"

    def rule_list_pending(self) -> str:
        self._far_capture("pending-list")
        try:
            got = {c["capture_id"]: c for c in self.req("list", session=self.session)["captures"]}
            expect("pending-list" in got, "list omits an acknowledged capture whose frame has not come")
            expect(got["pending-list"]["status"] == "pending", f"listed as {got['pending-list']['status']}")
        finally:
            self._withdraw(self.session, "pending-list")
        return "an acknowledged capture is listed as pending before its frame"

    def rule_cancel(self) -> str:
        ack = self._far_capture("cancelled")
        r = self.req("cancel", session=self.session, capture_id="cancelled")
        expect(r.get("cancelled", "").rstrip("/") == ack["dir"].rstrip("/"), f"cancel reply {r}")
        e = self.error_of("meta", session=self.session, capture_id="cancelled")
        expect(e["error"].get("code") == "not_found", f"meta after cancel: {e['error']}")
        e = self.error_of("cancel", session=self.session, capture_id="cancelled")
        expect(e["error"].get("code") == "not_found", f"second cancel: {e['error']}")
        listed = [c["capture_id"] for c in self.req("list", session=self.session)["captures"]]
        expect("cancelled" not in listed, "a cancelled capture is still listed")
        self._far_capture("cancelled")  # the id is free again
        self.req("cancel", session=self.session, capture_id="cancelled")
        return "cancelled before its frame: not_found after, nothing listed, the id reusable"

    def rule_list(self) -> str:
        got = self.req("list", session=self.session)["captures"]
        ids = {c["capture_id"]: c for c in got}
        for cid in self.captures:
            expect(cid in ids, f"list lacks {cid}")
            expect(ids[cid]["status"] == "ok", f"{cid} listed as {ids[cid]['status']}")
        return f"{len(ids)} captures listed, all ok"

    def rule_delete(self) -> str:
        cid = next(iter(self.captures), None) or self.capture()[0]
        r = self.req("delete", session=self.session, capture_id=cid)
        expect("deleted" in r, f"delete reply {r}")
        self.captures.pop(cid, None)
        e = self.error_of("meta", session=self.session, capture_id=cid)
        expect(e["error"].get("code") == "not_found", f"meta after delete: {e['error']}")
        e = self.error_of("delete", session=self.session, capture_id=cid)
        expect(e["error"].get("code") == "not_found", f"second delete: {e['error']}")
        return "deleted; meta and a second delete answer not_found"

    # -- 3A (protocol 2) --------------------------------------------------------------------
    def rule_3a_metadata(self) -> str:
        self.v2()
        _, c = self.capture()
        for fr in c["meta"]["frames"]:
            missing = [k for k in FRAME_3A_FIELDS if k not in fr]
            expect(not missing, f"frame {fr['file']} lacks {missing}")
            expect(len(fr["wb_gains"]) == 4 and len(fr["ccm"]) == 9 and len(fr["distortion"]) == 5,
                   "wb_gains, ccm, distortion must have 4, 9, 5 numbers")
        return "every frame carries " + ", ".join(FRAME_3A_FIELDS)

    def rule_3a_lock_honoured(self) -> str:
        self.v2()
        st = self.req("set_3a", cameras=self.cams, ae_lock=True, awb_lock=True)["cameras"]["T"]
        frames = []
        for _ in range(2):
            _, c = self.capture(["T"])
            frames.append(c["meta"]["frames"][0])
        for fr in frames:
            expect((fr["exposure_time_ns"], fr["iso"]) == (st["exposure_time_ns"], st["iso"]),
                   f"locked AE {st['exposure_time_ns']} ns ISO {st['iso']}, frame has {fr['exposure_time_ns']} ns "
                   f"ISO {fr['iso']}")
            expect(all(math.isclose(a, b, rel_tol=1e-3) for a, b in zip(fr["wb_gains"], st["wb_gains"], strict=True)),
                   f"locked AWB gains {st['wb_gains']}, frame has {fr['wb_gains']}")
            expect(fr["ae_state"] == "LOCKED" and fr["awb_state"] == "LOCKED",
                   f"ae_state {fr['ae_state']}, awb_state {fr['awb_state']}")
        return f"two frames at the locked {st['exposure_time_ns'] / 1e6:.2f} ms ISO {st['iso']}"

    def rule_3a_manual_honoured(self) -> str:
        self.v2()
        base = self.req("get_3a")["cameras"]["T"]
        t0, iso = max(base["exposure_time_ns"] // 2, 200_000), base["iso"]
        lo, hi = self.cfg.brightness_ratio
        changed = []
        for _ in range(self.cfg.steady_scene_tries):
            # Dark, bright, dark again, compared block by block: blocks where the two dark frames
            # agree held still, and there a followed setting makes the bright frame a scaled copy
            # of the dark ones (every block's ratio alike). A scene cut (or a cut and back) breaks
            # that, a mover leaves most blocks to judge by, and a grey card's blocks all agree. So
            # two scenes' brightness is never compared.
            dark, bright, dark_again = (self._manual_frame(t, iso, base["wb_gains"]) for t in (t0, 2 * t0, t0))
            mask = (bright > 20) & (bright < 225)
            expect(mask.mean() > 0.2, "too few unclipped pixels to measure")
            blocks = [_block_linear_means(img, mask, self.cfg.steady_blocks) for img in (dark, bright, dark_again)]
            d0, b1, d2 = (x[np.isfinite(blocks[0]) & (blocks[0] > 0) & (blocks[2] > 0)] for x in blocks)
            still = np.abs(np.log(d2 / d0)) <= self.cfg.steady_scene_log_ratio
            r = b1[still] / np.sqrt(d0[still] * d2[still])
            ratio = float(np.median(r)) if r.size else float("nan")
            alike = float(np.mean(np.abs(np.log(r / ratio)) <= self.cfg.steady_ratio_log_spread)) if r.size else 0.0
            how = f"{still.mean() if still.size else 0:.2f} of the blocks still, {alike:.2f} of them alike"
            if not (still.size and still.mean() >= self.cfg.steady_min_still and alike >= self.cfg.steady_min_alike):
                changed.append(how)
                continue
            expect(lo <= ratio <= hi, f"doubling the exposure changed linear brightness by x{ratio:.2f} "
                   f"(expected {lo}..{hi}): the images do not follow the settings")
            retried = f"; retried after the frames disagreed: {'; '.join(changed)}" if changed else ""
            return f"2x exposure -> x{ratio:.2f} linear brightness, values reported as set ({how}{retried})"
        raise RuleFailed(f"the frames disagree within each of {len(changed)} tries ({'; '.join(changed)}): the "
                         "scene changed (point the rig at a still scene), or the images lag the settings")

    def _manual_frame(self, exposure_ns: int, iso: int, wb_gains: list[float]) -> np.ndarray:
        """One T frame at manual ``exposure_ns`` and ``iso``, checked to be reported as set."""
        self.req("set_3a", cameras=["T"], exposure_time_ns=exposure_ns, iso=iso, wb_gains=wb_gains)
        cid, c = self.capture(["T"])
        fr = c["meta"]["frames"][0]
        expect((fr["exposure_time_ns"], fr["iso"]) == (exposure_ns, iso),
               f"asked {exposure_ns} ns ISO {iso}, frame reports {fr['exposure_time_ns']} ns ISO {fr['iso']}")
        expect(fr["ae_mode"] == "OFF", f"manual exposure reported ae_mode {fr['ae_mode']}")
        return self.image(cid, fr["file"]).astype(np.float64)

    def rule_3a_af_fixed(self) -> str:
        self.v2()
        self.req("set_3a", cameras=self.cams, af_mode="fixed", focus_diopters=0.5)
        _, c = self.capture()
        for fr in c["meta"]["frames"]:
            expect(abs(fr["focus_distance_diopters"] - 0.5) <= 0.01 and fr["af_mode"] == "OFF",
                   f"fixed focus 0.5 D: frame {fr['file']} has {fr['focus_distance_diopters']} D, "
                   f"af_mode {fr['af_mode']}")
        return "fixed focus 0.5 D reported by every frame"

    # -- running ---------------------------------------------------------------------------
    def cleanup(self) -> None:
        try:
            if self.hello.get("protocol_version", 1) >= 2:
                self.req("set_3a", cameras=self.cams, af_mode="auto", af_region=None, af_lock=False,
                         ae_lock=False, awb_lock=False)
            for c in self.req("list", session=self.session)["captures"]:
                if c["status"] == "pending":
                    self._withdraw(self.session, c["capture_id"])
                else:
                    self.req("delete", session=self.session, capture_id=c["capture_id"])
        except (AgentError, RigError, *LINK_ERRORS):
            pass


RULES: list[tuple[str, Callable[[Suite], str]]] = [
    ("framing.one_json_line", Suite.rule_framing_one_line),
    ("framing.split_and_pipelined", Suite.rule_framing_split_and_pipelined),
    ("framing.id_echo", Suite.rule_framing_id_echo),
    ("framing.connections", Suite.rule_framing_connections),
    ("hello.fields", Suite.rule_hello_fields),
    ("error.shape", Suite.rule_error_shape),
    ("error.bad_json", Suite.rule_error_bad_json),
    ("error.unknown_cmd", Suite.rule_error_unknown_cmd),
    ("error.bad_request", Suite.rule_error_bad_request),
    ("error.target_in_past", Suite.rule_error_target_in_past),
    ("time.turnaround", Suite.rule_time_turnaround),
    ("time.within_rtt", Suite.rule_time_within_rtt),
    ("status.fields", Suite.rule_status_fields),
    ("capture.ack", Suite.rule_capture_ack),
    ("capture.done_last", Suite.rule_capture_done_last),
    ("capture.meta", Suite.rule_capture_meta),
    ("capture.timestamps_monotonic", Suite.rule_capture_timestamps_monotonic),
    ("capture.exists", Suite.rule_capture_exists),
    ("capture.session_keyed", Suite.rule_capture_session_keyed),
    ("error.target_too_far", Suite.rule_error_target_too_far),
    ("list", Suite.rule_list),
    ("list.pending", Suite.rule_list_pending),
    ("cancel", Suite.rule_cancel),
    ("delete", Suite.rule_delete),
    ("3a.metadata", Suite.rule_3a_metadata),
    ("3a.lock_honoured", Suite.rule_3a_lock_honoured),
    ("3a.manual_honoured", Suite.rule_3a_manual_honoured),
    ("3a.af_fixed", Suite.rule_3a_af_fixed),
]


def run_conformance(link: RigLink, role: str, cfg: ConformanceConfig | None = None,
                    on_result: Callable[[RuleResult], None] | None = None,
                    only: set[str] | None = None) -> list[RuleResult]:
    """Run every rule (or those named in ``only``) against ``role``'s agent.

    A rule that raises is a fail naming the rule.
    """
    suite = Suite(link, role, cfg or ConformanceConfig())
    out = []
    try:
        for name, fn in RULES:
            if only is not None and name not in only:
                continue
            try:
                res = RuleResult(name, "pass", fn(suite))
            except RuleSkipped as exc:
                res = RuleResult(name, "skip", str(exc))
            except RuleFailed as exc:
                res = RuleResult(name, "fail", str(exc))
            except AgentError as exc:
                res = RuleResult(name, "fail", f"unexpected error reply: {exc.code}: {exc.reply.get('error')}")
            except (RigError, *LINK_ERRORS, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                res = RuleResult(name, "fail", f"{type(exc).__name__}: {exc}")
                link.drop_agent(role)  # a broken connection must not fail the rules after it
            out.append(res)
            if on_result is not None:
                on_result(res)
    finally:
        suite.cleanup()
    return out
