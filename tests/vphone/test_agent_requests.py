"""The virtual capture agent in-process: it never dies on a request.

Requests are fed to ``CaptureAgent.handle`` through an in-memory stream, so each test reaches
the state it names on purpose (the stream's first frames, a clock stepped backwards, an
unforeseen error) instead of by the timing of a loaded machine.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from hzsr.sim.profiles import VPHONE_5X
from hzsr.sim.timing import LINK_PROFILES, PhoneClock
from hzsr.sim.world import VirtualWorld, WorldConfig
from hzsr.vphone.agent import CaptureAgent
from hzsr.vphone.storage import PhoneStorage


class LineStream:
    """What ``handle`` reads from and writes to: request lines in, reply lines out."""

    def __init__(self, lines: list):
        # A callable line is built when the agent reads it, so a capture's lead is measured from
        # the agent's read, not from the test's setup (a loaded machine once ate a 40 ms lead).
        self._in = list(lines)
        self.out = bytearray()

    async def read_some(self) -> bytes:
        if not self._in:
            return b""
        ln = self._in.pop(0)
        ln = ln() if callable(ln) else ln
        return ln if isinstance(ln, bytes) else json.dumps(ln).encode() + b"\n"

    async def write(self, data: bytes) -> None:
        self.out += data

    def replies(self) -> list[dict]:
        return [json.loads(x) for x in self.out.splitlines()]


@pytest.fixture
def agent(tmp_path):
    world = VirtualWorld(VPHONE_5X, WorldConfig(seed=3, size=(160, 120)), tmp_path / "truth")
    clock = PhoneClock(10**11, 3.0, time.monotonic_ns())
    return CaptureAgent("VPHTEST0001", "main", VPHONE_5X, world, PhoneStorage(tmp_path / "phone"), clock,
                        LINK_PROFILES["loopback"], seed=11)


def _serve(agent: CaptureAgent, lines: list) -> list[dict]:
    async def go():
        s = LineStream(lines)
        await agent.handle(s)
        # Let the scheduled frame writers finish before the loop closes.
        while agent.state.pending:
            await asyncio.sleep(0.01)
        return s.replies()

    return asyncio.run(go())


def _capture(agent: CaptureAgent, cid: str, lead_ms: float, req_id: int):
    """A capture request whose target is ``lead_ms`` after the agent reads it."""
    return lambda: {"cmd": "capture", "id": req_id, "session": "s", "capture_id": cid, "phase_align": True,
                    "target_ns": agent.boottime_ns() + int(lead_ms * 1e6)}


def test_capture_in_the_streams_first_frames(agent):
    # The camera opened "now": put its first frame 1 s ahead, and ask for a capture 300 ms ahead,
    # before any frame was reported (the request that once killed the agent).
    agent.stream.t0 = agent.boottime_ns() + 1e9
    replies = _serve(agent, [_capture(agent, "c0", 300, 1), {"cmd": "status", "id": 2}])
    assert [r["ok"] for r in replies] == [True, True], replies
    assert replies[0]["frame_number"] == 0  # the first frame the stream has
    assert replies[0]["frame_timestamp_ns"] >= agent.stream.t0 - 4 * agent.stream.cfg.timestamp_jitter_ns


def test_capture_after_a_backward_clock_step(agent):
    agent.stream.t0 = agent.boottime_ns() - 1e9  # the stream has run for a second
    agent.jump_clock(-3_000_000_000)  # then the phone's clock steps back past its start
    assert agent.boottime_ns() < agent.stream.t0
    replies = _serve(agent, [_capture(agent, "c1", 300, 1), {"cmd": "status", "id": 2},
                             _capture(agent, "c2", 4000, 3)])
    assert [r["ok"] for r in replies] == [True, True, True], replies
    assert replies[0]["frame_number"] == 0  # its target is before the stream: the first frame
    assert replies[2]["frame_number"] > 0


def test_an_unforeseen_error_is_a_reply_and_the_agent_keeps_serving(agent, monkeypatch):
    def boom(req):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(agent, "_status", boom)
    replies = _serve(agent, [{"cmd": "status", "id": 1}, {"cmd": "hello", "id": 2}, b"not json\n",
                             {"cmd": "time", "id": 3}])
    assert replies[0] == {"id": 1, "ok": False,
                          "error": {"code": "internal", "message": "ZeroDivisionError: division by zero"}}
    assert replies[1]["ok"] and replies[1]["id"] == 2 and replies[1]["model"] == VPHONE_5X.model
    assert replies[2]["error"]["code"] == "bad_json"
    assert replies[3]["ok"] and replies[3]["id"] == 3


def _req(cmd: str, req_id: int, **f) -> dict:
    return {"cmd": cmd, "id": req_id, **f}


def test_captures_are_keyed_by_session_and_id(agent):
    far = agent.boottime_ns() + 3_000_000_000
    a = {"session": "a", "capture_id": "c0"}
    b = {"session": "b", "capture_id": "c0"}
    replies = _serve(agent, [
        _req("capture", 1, target_ns=far, **a), _req("capture", 2, target_ns=far, **b),
        _req("list", 3), _req("status", 4),
        _req("cancel", 5, **b), _req("meta", 6, **a), _req("meta", 7, **b), _req("delete", 8, **a),
        _req("cancel", 9, **a), _req("cancel", 10, **a)])
    assert [r["ok"] for r in replies[:5]] == [True] * 5, replies
    # Both acknowledged captures are listed before their frame, as pending with no files.
    assert [(c["session"], c["status"], c["files"]) for c in replies[2]["captures"]] == [
        ("a", "pending", []), ("b", "pending", [])]
    assert replies[3]["pending"] == [a, b]
    assert replies[4]["cancelled"].endswith("/b/c0")
    assert replies[5]["error"]["code"] == "pending"  # b's cancel left a alone
    assert replies[6]["error"]["code"] == "not_found"
    assert replies[7]["error"]["code"] == "busy"
    assert replies[8]["ok"] and replies[9]["error"]["code"] == "not_found"
    assert not agent.storage.host_path("/sdcard/Android/data/org.hzsr.agent/files/a/c0").exists()


def test_a_target_beyond_the_lead_bound_is_refused(agent):
    from hzsr.core.agent_protocol import MAX_LEAD_NS

    hour = agent.boottime_ns() + 3600 * 10**9
    replies = _serve(agent, [_req("capture", 1, session="s", capture_id="far", target_ns=hour), _req("list", 2)])
    err = replies[0]["error"]
    assert err["code"] == "target_too_far" and err["max_lead_ns"] == MAX_LEAD_NS and err["now_ns"] < hour
    assert replies[1]["captures"] == []


def test_cancel_of_a_finished_capture_is_not_found(agent):
    replies = _serve(agent, [_capture(agent, "c5", 300, 1)])
    assert replies[0]["ok"], replies
    done = agent.storage.host_path("/sdcard/Android/data/org.hzsr.agent/files/s/c5/done")
    assert done.exists()  # _serve waited for it: a finished capture is no longer pending
    assert _serve(agent, [_req("cancel", 2, session="s", capture_id="c5")])[0]["error"]["code"] == "not_found"


def test_cancel_once_the_frame_is_exposing_is_busy(agent):
    key = {"session": "s", "capture_id": "c6"}

    async def go() -> list[dict]:
        first = LineStream([_req("capture", 1, target_ns=agent.boottime_ns() + 3_000_000_000, **key)])
        await agent.handle(first)
        pend = agent.state.pending[("s", "c6")]
        pend.exposing = True  # the state the frame's own start puts it in, reached here on purpose
        second = LineStream([_req("cancel", 2, **key), _req("delete", 3, **key)])
        await agent.handle(second)
        pend.task.cancel()  # end the test's capture without waiting 3 s for its frame
        agent.state.pending.clear()
        return first.replies() + second.replies()

    replies = asyncio.run(go())
    assert replies[0]["ok"]
    assert replies[1]["error"]["code"] == "busy" and replies[2]["error"]["code"] == "busy"
