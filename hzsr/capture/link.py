"""The host's link to the rig: the adb server, each phone, and each phone's capture agent.

Every call that can hang has a deadline. A lost phone or a dead adb server is retried with
backoff: the server is restarted on its private port, and phones reached over TCP are
reconnected with ``adb connect`` (USB phones come back by themselves).
"""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import adbutils
from adbutils import AdbError, Network

from hzsr.capture.adb_server import bundled_adb
from hzsr.capture.protocol import AGENT_SOCKET
from hzsr.capture.rigfile import RigFile
from hzsr.core.errors import RigError

T = TypeVar("T")
LINK_ERRORS = (AdbError, OSError, ConnectionError, socket.timeout, EOFError)


@dataclass
class Backoff:
    """Retry policy: ``tries`` attempts, waits ``base_s * 2^k`` capped at ``max_s``."""

    tries: int = 6
    base_s: float = 0.25
    max_s: float = 4.0

    def waits(self):
        for k in range(self.tries - 1):
            yield min(self.base_s * 2**k, self.max_s)


class AgentError(RigError):
    """The agent answered with an error reply."""

    def __init__(self, serial: str, code: str, message: str, reply: dict):
        super().__init__(f"{code}: {message}", field=serial)
        self.code, self.reply = code, reply


class AgentClient:
    """JSON-lines client of one phone's capture agent, over a direct adb stream."""

    def __init__(self, device: adbutils.AdbDevice, timeout_s: float = 5.0):
        self.serial = device.serial
        self.timeout_s = timeout_s
        self.sock = device.create_connection(Network.LOCAL_ABSTRACT, AGENT_SOCKET)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout_s)
        self._buf = b""
        self._ids = itertools.count(1)

    def _readline(self) -> bytes:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"{self.serial}: agent closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def request(self, cmd: str, **fields: Any) -> dict:
        """Send one request and return the reply; an error reply raises ``AgentError``."""
        rid = next(self._ids)
        self.sock.sendall(json.dumps({"cmd": cmd, "id": rid, **fields}).encode() + b"\n")
        try:
            while True:
                reply = json.loads(self._readline())
                if reply.get("id") == rid:
                    break
        except TimeoutError:
            raise RigError(f"agent did not answer {cmd!r} within {self.timeout_s:.1f} s (stalled?)",
                           field=self.serial) from None
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise AgentError(self.serial, err.get("code", "error"), err.get("message", ""), reply)
        return reply

    def time_exchange(self) -> tuple[int, int, int, int]:
        """One SNTP exchange: (t0, t1, t2, t3), host stamps in CLOCK_MONOTONIC."""
        rid = next(self._ids)
        msg = json.dumps({"cmd": "time", "id": rid}).encode() + b"\n"
        t0 = time.monotonic_ns()
        self.sock.sendall(msg)
        line = self._readline()
        t3 = time.monotonic_ns()
        reply = json.loads(line)
        if reply.get("id") != rid or not reply.get("ok"):
            raise RigError(f"bad time reply: {line[:100]!r}", field=self.serial)
        return t0, reply["t1_ns"], reply["t2_ns"], t3

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class RigLink:
    """The adb server of a rig and its phones by role."""

    def __init__(self, rig: RigFile, backoff: Backoff | None = None, agent_timeout_s: float = 5.0):
        self.rig = rig
        self.backoff = backoff or Backoff()
        self.agent_timeout_s = agent_timeout_s
        self.client = adbutils.AdbClient(host=rig.adb.host, port=rig.adb.port)
        self._agents: dict[str, AgentClient] = {}
        self.log: list[str] = []  # what recovery did, for the journal

    # -- devices -----------------------------------------------------------------------
    def device(self, role: str) -> adbutils.AdbDevice:
        return self.client.device(self.rig.serial(role))

    def states(self) -> dict[str, str]:
        return {d.serial: d.state for d in self.client.list()}

    def agent(self, role: str) -> AgentClient:
        if role not in self._agents:
            self._agents[role] = AgentClient(self.device(role), self.agent_timeout_s)
        return self._agents[role]

    def drop_agent(self, role: str) -> None:
        a = self._agents.pop(role, None)
        if a is not None:
            a.close()

    def close(self) -> None:
        for role in list(self._agents):
            self.drop_agent(role)

    # -- recovery ----------------------------------------------------------------------
    def recover(self) -> None:
        """Bring the server and every phone back: restart, reconnect TCP phones, wait online."""
        adb = [bundled_adb(), "-H", self.rig.adb.host, "-P", str(self.rig.adb.port)]
        try:
            self.client.list()
        except LINK_ERRORS:
            self.log.append("adb server unreachable: restarting it")
            subprocess.run([*adb, "start-server"], capture_output=True, timeout=20)
        states = {}
        try:
            states = self.states()
        except LINK_ERRORS:
            pass
        for p in self.rig.phones:
            if states.get(p.serial) != "device" and ":" in p.serial:
                self.log.append(f"{p.serial}: {states.get(p.serial, 'absent')}: adb connect")
                subprocess.run([*adb, "connect", p.serial], capture_output=True, timeout=20)
        self.close()

    def retry(self, what: str, fn: Callable[[], T], retry_on: tuple = LINK_ERRORS) -> T:
        """Run ``fn``; on a link error, recover and retry with backoff, then give up loudly."""
        last: BaseException | None = None
        for wait in [*self.backoff.waits(), None]:
            try:
                return fn()
            except AgentError:
                raise
            except retry_on as exc:
                last = exc
                self.log.append(f"{what}: {type(exc).__name__}: {exc}")
                if wait is None:
                    break
                time.sleep(wait)
                try:
                    self.recover()
                except LINK_ERRORS + (subprocess.TimeoutExpired,):
                    pass
        raise RigError(f"{what} failed after {self.backoff.tries} tries: {last}", field=what.split(" ")[0])
