"""Benchmark: the agent's ``time`` reply while shell commands run on the same phone (issue 25).

One virtual phone, driven packet by packet over its adbd port (no adb server in between). Each
round measures the slowest of 20 ``time`` round trips (what clock sync would suffer) with no shell
running and with 8 ``sleep 3`` running, for two designs in the same run, rounds interleaved:

- ``threads``: the phone as built (each shell command on a thread of its own, ``time`` on the
  agent's own pool);
- ``shared_pool``: the simplest alternative, the design before issue 25 (shell commands and the
  agent's ``time`` on asyncio's default executor, ``min(32, cores + 4)`` threads), restored by
  patching the two call sites in this process only.

Prints JSON: per design the medians over 3 rounds of the idle and loaded slowest round trips
(ms), their ratio, and the load average. Run: ``PYTHONPATH=. python bench/vphone_time_under_shells.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from hzsr.sim.profiles import VPHONE_5X
from hzsr.sim.world import VirtualWorld, WorldConfig
from hzsr.vphone import adb_device
from hzsr.vphone.adb_device import A_CNXN, A_OKAY, A_OPEN, A_VERSION, A_WRTE, HEADER, pack
from hzsr.vphone.phone import VirtualPhone

SLEEPERS = 8
SLEEP_S = 3
EXCHANGES = 20
ROUNDS = 3


class Host:
    """A bare transport to the phone: OPEN streams, write lines, read replies."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.next_id = 1
        self.send(A_CNXN, A_VERSION, 1 << 20, b"host::\0")
        assert self.packet()[0] == A_CNXN

    def send(self, cmd: int, a0: int, a1: int, data: bytes = b"") -> None:
        self.sock.sendall(pack(cmd, a0, a1, data))

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            buf += self.sock.recv(n - len(buf))
        return buf

    def packet(self) -> tuple[int, int, int, bytes]:
        cmd, a0, a1, n, _, _ = HEADER.unpack(self._exact(HEADER.size))
        return cmd, a0, a1, self._exact(n) if n else b""

    def open(self, service: str) -> tuple[int, int]:
        mine, self.next_id = self.next_id, self.next_id + 1
        self.send(A_OPEN, mine, 0, service.encode() + b"\0")
        while True:
            cmd, a0, a1, _ = self.packet()
            if cmd == A_OKAY and a1 == mine:
                return mine, a0

    def worst_time_rtt_ms(self, mine: int, theirs: int) -> float:
        ts = []
        for _ in range(EXCHANGES):
            t0 = time.perf_counter()
            self.send(A_WRTE, mine, theirs, b'{"cmd":"time"}\n')
            while True:
                cmd, _, a1, _ = self.packet()
                if cmd == A_WRTE and a1 == mine:
                    self.send(A_OKAY, mine, theirs)
                    break
            ts.append(time.perf_counter() - t0)
        return max(ts) * 1e3


@contextmanager
def shared_pool():
    """The design before issue 25: shell commands and ``time`` on asyncio's default executor."""
    run_shell = adb_device.AdbDeviceConnection._run_shell

    async def pooled(self, s, cmd, collect, hangup_on_close=True):
        stdin = adb_device._StdinPipe()
        task = asyncio.get_running_loop().create_task(collect(stdin))
        try:
            return await asyncio.to_thread(self.backend.shell.run, cmd, stdin.read)
        finally:
            task.cancel()

    adb_device.AdbDeviceConnection._run_shell = pooled
    try:
        yield
    finally:
        adb_device.AdbDeviceConnection._run_shell = run_shell


def measure(phone: VirtualPhone, design: str) -> tuple[float, float]:
    own_pool = phone.agent._clock_pool
    if design == "shared_pool":
        phone.agent._clock_pool = None  # run_in_executor(None, ...): the default executor
    try:
        h = Host(phone.port)
        mine, theirs = h.open("localabstract:hzsr_agent")
        idle = h.worst_time_rtt_ms(mine, theirs)
        sleepers = Host(phone.port)
        for _ in range(SLEEPERS):
            sleepers.open(f"shell,v2,raw:sleep {SLEEP_S}")
        loaded = h.worst_time_rtt_ms(mine, theirs)
        sleepers.sock.close()
        h.sock.close()
        return idle, loaded
    finally:
        phone.agent._clock_pool = own_pool


def main() -> dict:
    out: dict = {"sleepers": SLEEPERS, "sleep_s": SLEEP_S, "exchanges": EXCHANGES, "rounds": ROUNDS}
    got: dict[str, list[tuple[float, float]]] = {"threads": [], "shared_pool": []}
    with tempfile.TemporaryDirectory() as tmp:
        world = VirtualWorld(VPHONE_5X, WorldConfig(seed=1, size=(160, 120)), Path(tmp) / "truth")
        for _ in range(ROUNDS):
            for design in ("threads", "shared_pool"):
                phone = VirtualPhone(VPHONE_5X, "VPH5XBENCH01", world=world, seed=1)
                try:
                    if design == "shared_pool":
                        with shared_pool():
                            got[design].append(measure(phone, design))
                    else:
                        got[design].append(measure(phone, design))
                finally:
                    phone.stop()
                time.sleep(SLEEP_S)  # let the previous round's sleepers end before the next
    for design, pairs in got.items():
        idle = statistics.median(p[0] for p in pairs)
        loaded = statistics.median(p[1] for p in pairs)
        out[design] = {"idle_worst_rtt_ms": round(idle, 3), "loaded_worst_rtt_ms": round(loaded, 3),
                       "loaded_over_idle": round(loaded / idle, 2)}
    out["shared_pool_over_threads_loaded"] = round(
        out["shared_pool"]["loaded_worst_rtt_ms"] / out["threads"]["loaded_worst_rtt_ms"], 1)
    out["load_average_1m"] = os.getloadavg()[0]
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
