"""Proof that a PID still names the process we started, before anything signals it.

A PID alone is not an identity: after a reboot or a crash the number is reused, and a hand-edited
file can name any process (``pid: 1``, or ``-1``, which ``kill`` reads as "every process"). What
identifies a process on Linux is the triple (PID, start time in clock ticks since boot, command
line), read from ``/proc/<pid>/stat`` field 22 and ``/proc/<pid>/cmdline``: a new process that
reuses the PID starts later. ``ProcessProof.matches`` compares all three.

A proof is recorded only once the process runs the command it will be checked against: ``rig up``
records itself (``ProcessProof.me``) and finds its adb server by its exec'd command line; a child
just started is read with ``once_running``, which waits for its exec.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def start_time_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time after boot, in clock ticks), None if gone.

    The command name (field 2) may hold spaces and parentheses, so fields are counted after the
    last ``)``.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])  # field 22 overall; fields[0] here is field 3 (state)
    except (IndexError, ValueError):
        return None


def cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def valid_pid(value: object) -> bool:
    """A PID a config may name: an int (not a bool) above 1 (1 is init; 0 and -1 are groups)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 1


@dataclass
class ProcessProof:
    """What ``rig up`` records about each process it owns (``virtual.processes`` in rig.yaml)."""

    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22
    cmdline: list[str]

    @classmethod
    def of(cls, pid: int) -> ProcessProof | None:
        """The proof of a running process, or None if it is not running (or not visible)."""
        start, argv = start_time_ticks(pid), cmdline(pid)
        if start is None or argv is None:
            return None
        return cls(pid, start, argv)

    @classmethod
    def once_running(cls, pid: int, argv: list[str], timeout_s: float = 10.0) -> ProcessProof | None:
        """The proof of ``pid`` once it runs ``argv``; None if it ends or runs something else first.

        Between ``fork`` and ``exec`` a child's ``/proc/<pid>/cmdline`` is still its parent's, so a
        proof read right after ``Popen`` can record the wrong command, and the check made later
        against the exec'd process fails. This waits for the exec (the event), not a set delay.
        """
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proof = cls.of(pid)
            if proof is None:
                return None
            if proof.cmdline == list(argv):
                return proof
            time.sleep(0.005)
        return None

    @classmethod
    def me(cls) -> ProcessProof:
        proof = cls.of(os.getpid())
        assert proof is not None, "/proc is not mounted"
        return proof

    def mismatch(self) -> str | None:
        """Why the process now at ``pid`` is not the one recorded; None if it is."""
        now = ProcessProof.of(self.pid)
        if now is None:
            return "not running"
        if now.start_ticks != self.start_ticks:
            return (f"started at tick {now.start_ticks}, not {self.start_ticks}: "
                    "the PID was reused by another process")
        if now.cmdline != self.cmdline:
            return f"runs {' '.join(now.cmdline)[:80]!r}, not the recorded command"
        return None

    def matches(self) -> bool:
        return self.mismatch() is None
