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

from hzsr.capture.adb_server import AdbServer, bundled_adb, find_adb_server_pid, use_private_port
from hzsr.capture.rigfile import RigFile
from hzsr.core.agent_protocol import AGENT_SOCKET
from hzsr.core.errors import AgentError, RigError

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
    """The adb server of a rig and its phones by role.

    Creating one points adb and adbutils at the rig's private port (``use_private_port``), so no
    later call can start a server on 5037.
    """

    def __init__(self, rig: RigFile, backoff: Backoff | None = None, agent_timeout_s: float = 5.0):
        self.rig = rig
        self.backoff = backoff or Backoff()
        self.agent_timeout_s = agent_timeout_s
        use_private_port(rig.adb.port)
        self.client = adbutils.AdbClient(host=rig.adb.host, port=rig.adb.port)
        self._agents: dict[str, AgentClient] = {}
        self.log: list[str] = []  # what recovery did, for the journal
        self.server_restarts = 0  # times recover() found the server dead and started it again
        self.reconnects = 0  # `adb connect` calls that brought a TCP phone back
        #: Called with (action, detail) for each recovery step; CaptureRun journals them.
        self.on_recover: Callable[[str, dict], None] | None = None
        self._server_pid = find_adb_server_pid(rig.adb.port) if self._local else None

    @property
    def _local(self) -> bool:
        return self.rig.adb.host in ("127.0.0.1", "localhost", "::1")

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
    def _server_listening(self) -> bool:
        """Whether something accepts on the server's port (a raw connect: adbutils would start one)."""
        try:
            with socket.create_connection((self.rig.adb.host, self.rig.adb.port), timeout=2):
                return True
        except OSError:
            return False

    def _note(self, action: str, **detail) -> None:
        self.log.append(f"{action}: {detail}")
        if self.on_recover is not None:
            self.on_recover(action, detail)

    def recover(self) -> None:
        """Bring the server and every phone back: restart, reconnect TCP phones, wait online.

        The server is restarted on its own port with ``adb -P PORT start-server`` (adb refuses
        ``-H`` there: "cannot start server on remote host"), which only works for a server on
        this host. A server restarted by adbutils' own fallback (it runs ``adb start-server``
        when it cannot connect) is caught by its changed PID. A new server knows no TCP phones,
        so each is ``adb connect``-ed again; USB phones come back by themselves.
        """
        adb = AdbServer(self.rig.adb.port, bundled_adb())
        if not self._server_listening():
            if not self._local:
                raise RigError(f"the adb server at {self.rig.adb.host}:{self.rig.adb.port} is down and is "
                               "not on this host; restart it there", field="adb")
            out = adb.run("start-server")
            self.server_restarts += 1
            self._note("adb_server_restarted", port=self.rig.adb.port, rc=out.returncode,
                       output=(out.stdout + out.stderr).strip()[-200:])
        if self._local:
            pid = find_adb_server_pid(self.rig.adb.port)
            if pid != self._server_pid and self._server_pid is not None and pid is not None:
                self._note("adb_server_replaced", old_pid=self._server_pid, new_pid=pid)
            self._server_pid = pid
        states = {}
        try:
            states = self.states()
        except LINK_ERRORS:
            pass
        for p in self.rig.phones:
            if states.get(p.serial) != "device" and ":" in p.serial:
                out = adb.run("connect", p.serial)
                self.reconnects += "connected" in out.stdout
                self._note("phone_reconnected", serial=p.serial, was=states.get(p.serial, "absent"),
                           output=out.stdout.strip()[-200:])
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
        raise RigError(f"{what} failed after {self.backoff.tries} tries: {last}")
