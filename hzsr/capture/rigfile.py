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
from typing import Any, Literal

from hzsr.core.config import load_config
from hzsr.core.records import ClockCalibration
from hzsr.core.schema import Problem


@dataclass
class AdbEndpoint:
    host: str = "127.0.0.1"
    port: int = 5137  # a private adb server port; never 5037, which other tools share


@dataclass
class PhoneEntry:
    serial: str  # as `adb devices` lists it
    role: Literal["main", "reference", "spare"]
    clock_calibration: ClockCalibration | None = None  # written by `hzsr sync calibrate`


@dataclass
class RigFile:
    phones: list[PhoneEntry]
    adb: AdbEndpoint = field(default_factory=AdbEndpoint)
    virtual: dict[str, Any] | None = None  # written by `hzsr rig up --virtual`: pids, folders

    def check(self) -> list[Problem]:
        out = []
        for i, p in enumerate(self.phones):
            if not p.serial.strip():
                out.append(Problem(f"phones[{i}].serial", "must not be empty"))
        roles = [p.role for p in self.phones]
        for role in ("main", "reference"):
            n = roles.count(role)
            if n == 0:
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

    def serial(self, role: str) -> str:
        return next(p.serial for p in self.phones if p.role == role)


def load_rig(path: str | Path) -> RigFile:
    return load_config(RigFile, path)
