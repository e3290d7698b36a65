"""``rig.yaml``: which phones form the rig, their roles, and how to reach their adb server.

    adb: {host: 127.0.0.1, port: 5137}
    phones:
      - {serial: 1A2B3C, role: main}
      - {serial: 4D5E6F, role: reference}

An unknown key, a missing serial or two phones in one role is a one-line ``ConfigError`` naming
the key. ``hzsr rig up --virtual`` writes this file; for real phones the crew writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hzsr.core.config import load_config
from hzsr.core.errors import ConfigError
from hzsr.core.process import ProcessProof, valid_pid
from hzsr.core.records import ClockCalibration
from hzsr.core.schema import Problem

#: The folder ``hzsr rig up --virtual`` writes, and where every rig verb looks for ``rig.yaml``.
DEFAULT_DIR = ".hzsr-rig"


@dataclass
class AdbEndpoint:
    host: str = "127.0.0.1"
    port: int = 5137  # a private adb server port; never 5037, which other tools share

    def check(self) -> list[Problem]:
        if not 1 <= self.port <= 65535:
            return [Problem("port", f"{self.port} is not a TCP port (1..65535)")]
        return []


@dataclass
class OwnedProcess:
    """Proof that a PID is still the process ``rig up`` started (see ``hzsr.core.process``)."""

    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: when it started, in clock ticks since boot
    cmdline: list[str]  # /proc/<pid>/cmdline

    def check(self) -> list[Problem]:
        out = []
        if not valid_pid(self.pid):
            out.append(Problem("pid", f"{self.pid} is not a process id (an integer above 1)"))
        if self.start_ticks < 0:
            out.append(Problem("start_ticks", "must be >= 0"))
        return out

    def proof(self) -> ProcessProof:
        return ProcessProof(self.pid, self.start_ticks, list(self.cmdline))


@dataclass
class VirtualSection:
    """Written by ``hzsr rig up --virtual``: what it started, with proof, and its folders."""

    pid: int  # the `rig up` process
    workdir: str
    truth_dir: str
    profile: str
    adb_server_pid: int | None = None
    processes: dict[str, OwnedProcess] = field(default_factory=dict)  # "rig", "adb_server"

    def check(self) -> list[Problem]:
        out = []
        for name in ("pid", "adb_server_pid"):
            v = getattr(self, name)
            if v is not None and not valid_pid(v):
                out.append(Problem(name, f"{v} is not a process id (an integer above 1)"))
        return out


@dataclass
class PhoneEntry:
    serial: str  # as `adb devices` lists it
    role: Literal["main", "reference", "spare"]
    clock_calibration: ClockCalibration | None = None  # written by `hzsr sync calibrate`


@dataclass
class RigSync:
    """``sync:`` in rig.yaml: how this rig's skews are judged (``hzsr.core.verdict.skew_reasons``)."""

    pass_limit_us: float = 250.0  # a capture passes only if |skew| + bound <= this, fails if |skew| - bound > this

    def check(self) -> list[Problem]:
        import math

        if not (math.isfinite(self.pass_limit_us) and self.pass_limit_us > 0):
            return [Problem("pass_limit_us", f"must be a finite number > 0, got {self.pass_limit_us}")]
        return []


@dataclass
class RigFile:
    phones: list[PhoneEntry]
    adb: AdbEndpoint = field(default_factory=AdbEndpoint)
    sync: RigSync = field(default_factory=RigSync)  # the skew pass limit (docs/sync.md)
    virtual: VirtualSection | None = None  # written by `hzsr rig up --virtual`: pids, folders

    def check(self) -> list[Problem]:
        out = []
        for i, p in enumerate(self.phones):
            if not p.serial.strip():
                out.append(Problem(f"phones[{i}].serial", "must not be empty"))
        roles = [p.role for p in self.phones]
        for role in ("main", "reference"):
            n = roles.count(role)
            # A one-phone rig (main only) serves rig doctor, conformance and adb clients; verbs
            # that need both phones say so through ``require`` before touching either.
            if n == 0 and role == "main":
                out.append(Problem("phones", f"no phone with role {role!r}"))
            elif n > 1:
                idx = [i for i, r in enumerate(roles) if r == role][1]
                out.append(Problem(f"phones[{idx}].role", f"two phones with role {role!r}"))
        serials = [p.serial for p in self.phones]
        for i, s in enumerate(serials):
            if serials.index(s) != i:
                out.append(Problem(f"phones[{i}].serial", f"duplicate serial {s!r}"))
        if self.adb.port == 5037:
            out.append(Problem("adb.port", "5037 is the shared default; use a private port"))
        return out

    def require(self, roles: tuple[str, ...], verb: str) -> None:
        """A ``ConfigError`` naming ``phones`` unless the rig has a phone in each of ``roles``."""
        have = [p.role for p in self.phones]
        missing = [r for r in roles if r not in have]
        if missing:
            raise ConfigError(f"{verb} needs a phone with role {' and '.join(map(repr, missing))}; this rig has "
                              f"{', '.join(have) or 'no phones'}", field="phones")

    def serial(self, role: str) -> str:
        return next(p.serial for p in self.phones if p.role == role)


def load_rig(path: str | Path) -> RigFile:
    """Load and check ``rig.yaml``; a bad one is a one-line ``ConfigError`` naming the field."""
    return load_config(RigFile, path)


def rig_owner(rig_yaml: str | Path) -> tuple[RigFile, ProcessProof | None]:
    """``rig.yaml`` and the recorded proof of the process that wrote it (None if it has none)."""
    rig = load_rig(rig_yaml)
    if rig.virtual is None:
        return rig, None
    own = rig.virtual.processes.get("rig")
    return rig, (own.proof() if own is not None else None)
