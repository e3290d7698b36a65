"""Stream life on the virtual phone's adbd, driven packet by packet as a host would.

Each test waits on protocol events (a packet, a thread ending), never on a clock: a bound here is
only a generous cap that stops a hung test.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from hzsr.sim.profiles import VPHONE_5X
from hzsr.sim.world import VirtualWorld, WorldConfig
from hzsr.vphone.adb_device import A_CLSE, A_CNXN, A_OKAY, A_OPEN, A_VERSION, A_WRTE, HEADER, pack
from hzsr.vphone.phone import VirtualPhone

CAP_S = 20.0  # a cap on any one wait, far above what any step needs even on a loaded machine


class RawHost:
    """One transport to the phone, spoken packet by packet (what the adb server does)."""

    def __init__(self, port: int, handshake: bool = True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=CAP_S)
        self.next_id = 100
        self.seen: list[tuple[int, int, int, bytes]] = []
        if handshake:
            self.send(A_CNXN, A_VERSION, 1024 * 1024, b"host::\0")
            assert self.packet()[0] == A_CNXN

    def send(self, cmd: int, a0: int, a1: int, data: bytes = b"") -> None:
        self.sock.sendall(pack(cmd, a0, a1, data))

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("phone closed the transport")
            buf += chunk
        return buf

    def packet(self) -> tuple[int, int, int, bytes]:
        cmd, a0, a1, n, _, _ = HEADER.unpack(self._exact(HEADER.size))
        pkt = (cmd, a0, a1, self._exact(n) if n else b"")
        self.seen.append(pkt)
        return pkt

    def open(self, service: str) -> tuple[int, int]:
        """OPEN a stream; returns (our id, the phone's id) once the phone's OKAY arrives."""
        mine = self.next_id
        self.next_id += 1
        self.send(A_OPEN, mine, 0, service.encode() + b"\0")
        while True:
            cmd, a0, a1, _ = self.packet()
            if cmd == A_OKAY and a1 == mine:
                return mine, a0
            assert not (cmd == A_CLSE and a1 == mine), f"phone refused {service}"

    def read_stream(self, mine: int, theirs: int) -> bytes:
        """Everything the phone writes on a stream until its CLSE (each WRTE acknowledged)."""
        out = b""
        while True:
            cmd, a0, a1, data = self.packet()
            if a1 != mine:
                continue
            if cmd == A_WRTE:
                out += data
                self.send(A_OKAY, mine, theirs)
            elif cmd == A_CLSE:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def phone(tmp_path_factory):
    world = VirtualWorld(VPHONE_5X, WorldConfig(seed=5, size=(160, 120)), tmp_path_factory.mktemp("truth"))
    p = VirtualPhone(VPHONE_5X, "VPH5XSTR0001", world=world, seed=5)
    yield p
    p.stop()


def _shell_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("vphone-shell-")]


def _wait(cond, what: str) -> None:
    t_end = time.monotonic() + CAP_S
    while not cond():
        assert time.monotonic() < t_end, f"{what} did not happen within {CAP_S:.0f} s"
        time.sleep(0.01)


def test_host_close_is_echoed_and_hangs_up_the_command(phone):
    h = RawHost(phone.port)
    try:
        before = set(_shell_threads())
        mine, theirs = h.open("shell,v2,raw:sleep 600")
        _wait(lambda: set(_shell_threads()) - before, "the command's thread starting")
        h.send(A_CLSE, mine, theirs)
        while True:  # the phone's answer: CLSE(its id, our id), as adbd sends it
            cmd, a0, a1, _ = h.packet()
            if a1 == mine:
                break
        assert (cmd, a0) == (A_CLSE, theirs)
        # SIGHUP semantics: the 600 s sleep ends now, and its thread with it.
        _wait(lambda: not (set(_shell_threads()) - before), "the hung-up command ending")
        mine, theirs = h.open("shell:echo after")
        assert h.read_stream(mine, theirs) == b"after\n"
    finally:
        h.close()


def test_exec_close_is_end_of_stdin_not_a_hangup(phone):
    h = RawHost(phone.port)
    try:
        mine, theirs = h.open("exec:cat > /data/local/tmp/exec-in.txt")
        h.send(A_WRTE, mine, theirs, b"kept\n")
        while not (h.packet()[:3] == (A_OKAY, theirs, mine)):
            pass
        h.send(A_CLSE, mine, theirs)
        _wait(lambda: (phone.storage.host_path("/data/local/tmp/exec-in.txt").exists()
                       and phone.storage.host_path("/data/local/tmp/exec-in.txt").read_bytes() == b"kept\n"),
              "exec-in's file")
    finally:
        h.close()


def test_nothing_is_served_before_the_handshake(phone):
    h = RawHost(phone.port, handshake=False)
    try:
        h.send(A_OPEN, 1, 0, b"shell:echo too-early\0")
        h.send(A_CNXN, A_VERSION, 1024 * 1024, b"host::\0")
        assert h.packet()[0] == A_CNXN  # the OPEN before it got nothing, not even a refusal
        mine, theirs = h.open("shell:echo in-order")
        assert h.read_stream(mine, theirs) == b"in-order\n"
        assert all(a1 != 1 for _, _, a1, _ in h.seen), "the phone answered the OPEN sent before CNXN"
    finally:
        h.close()


def test_a_second_handshake_ends_the_old_streams(phone):
    h = RawHost(phone.port)
    try:
        before = set(_shell_threads())
        h.open("shell,v2,raw:sleep 600")
        h.send(A_CNXN, A_VERSION, 1024 * 1024, b"host::\0")
        assert h.packet()[0] == A_CNXN
        _wait(lambda: not (set(_shell_threads()) - before), "the old stream's command ending")
        mine, theirs = h.open("shell:echo fresh")
        assert h.read_stream(mine, theirs) == b"fresh\n"
    finally:
        h.close()


def _agent_time(h: RawHost, mine: int, theirs: int) -> dict:
    h.send(A_WRTE, mine, theirs, b'{"cmd":"time","id":"t"}\n')
    buf = b""
    while b"\n" not in buf:
        cmd, _, a1, data = h.packet()
        if cmd == A_WRTE and a1 == mine:
            buf += data
            h.send(A_OKAY, mine, theirs)
    return json.loads(buf)


def test_running_and_orphaned_shells_never_delay_the_agent(phone):
    """8 running ``sleep 12`` and 8 orphaned ones: the ``time`` reply comes while the 8 still run."""
    h = RawHost(phone.port)
    orphans = RawHost(phone.port)
    try:
        tmp = "/data/local/tmp"
        running = [h.open(f"shell,v2,raw:touch {tmp}/run{k}; sleep 12") for k in range(8)]
        for k in range(8):
            orphans.open(f"shell,v2,raw:touch {tmp}/orphan{k}; sleep 12")
        # Each sleep has begun once its marker exists (a thread pool would have run only some).
        _wait(lambda: all(phone.storage.host_path(f"{tmp}/{n}{k}").exists()
                          for n in ("run", "orphan") for k in range(8)), "the 16 sleeps starting")
        orphans.close()  # the client is killed: its commands are orphaned
        mine, theirs = h.open("localabstract:hzsr_agent")
        reply = _agent_time(h, mine, theirs)
        assert reply["ok"] is True and reply["t1_ns"] <= reply["t2_ns"]
        # The reply came while the eight running sleeps still run: none has ended its stream.
        assert not any(cmd == A_CLSE and a1 in {m for m, _ in running} for cmd, _, a1, _ in h.seen)
    finally:
        h.close()
        orphans.close()
