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

    def __init__(self, lines: list[dict | bytes]):
        self._in = [ln if isinstance(ln, bytes) else json.dumps(ln).encode() + b"\n" for ln in lines]
        self.out = bytearray()

    async def read_some(self) -> bytes:
        return self._in.pop(0) if self._in else b""

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


def _capture(agent: CaptureAgent, cid: str, lead_ms: float, req_id: int) -> dict:
    return {"cmd": "capture", "id": req_id, "session": "s", "capture_id": cid, "phase_align": True,
            "target_ns": agent.boottime_ns() + int(lead_ms * 1e6)}


def test_capture_in_the_streams_first_frames(agent):
    # The camera opened "now": put its first frame 200 ms ahead, and ask for a capture 50 ms ahead,
    # before any frame was reported (the request that once killed the agent).
    agent.stream.t0 = agent.boottime_ns() + 2e8
    replies = _serve(agent, [_capture(agent, "c0", 50, 1), {"cmd": "status", "id": 2}])
    assert [r["ok"] for r in replies] == [True, True], replies
    assert replies[0]["frame_number"] == 0  # the first frame the stream has
    assert replies[0]["frame_timestamp_ns"] >= agent.stream.t0 - 4 * agent.stream.cfg.timestamp_jitter_ns


def test_capture_after_a_backward_clock_step(agent):
    agent.stream.t0 = agent.boottime_ns() - 1e9  # the stream has run for a second
    agent.jump_clock(-3_000_000_000)  # then the phone's clock steps back past its start
    assert agent.boottime_ns() < agent.stream.t0
    replies = _serve(agent, [_capture(agent, "c1", 100, 1), {"cmd": "status", "id": 2},
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
