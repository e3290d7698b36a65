"""The append-only session journal (``journal.jsonl``).

Each event is one JSON line, fsync'd before ``append`` returns, so a crash loses at most the event
being written. A torn last line (the process died mid-write) is reported by ``read`` and skipped,
never fatal: everything before it is intact by construction.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hzsr.core.errors import SessionFormatError

#: Event kinds written by the capture stage. Other stages may add their own.
EVENT_KINDS = (
    "session_started",
    "clock_sync",
    "trigger",
    "ack",
    "file_ready",
    "pulled",
    "verified",
    "capture_complete",
    "capture_incomplete",
    "capture_discarded",
    "capture_abandoned",
    "deleted",
    "link_recovered",
    "lock_taken_over",
    "clock_jump",
    "session_stopped",
)

#: Every event's ``event`` is a string and its ``capture_id``, if any, a string; a line that breaks
#: this is a bad line like an unparseable one. Fields of one kind are checked where they are used.


def _well_formed(rec: Any) -> bool:
    if not isinstance(rec, dict) or not isinstance(rec.get("event"), str):
        return False
    return "capture_id" not in rec or isinstance(rec["capture_id"], str)


@dataclass
class JournalReadResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    #: 1-based line numbers that could not be parsed (a torn final line after a crash).
    bad_lines: list[int] = field(default_factory=list)
    n_lines: int = 0

    def torn_tail(self, lineno: int) -> bool:
        """Whether bad line ``lineno`` is the last one: a crash mid-append, not corruption."""
        return lineno == self.n_lines


class Journal:
    """Append-only, fsync'd JSON-lines journal.

    Args:
        path: the ``journal.jsonl`` file; created with its folder if missing.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event and fsync. Returns the record written."""
        record = {"event": event, "wall_time": time.time(), **fields}
        line = json.dumps(record, sort_keys=True, allow_nan=False) + "\n"
        # O_APPEND makes each write land at the end even with several writers in one process;
        # O_NOFOLLOW refuses a journal that is a symbolic link (planted to write through it).
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise SessionFormatError("is a symbolic link; refusing to write through it (remove it)",
                                         file=self.path, unreadable=True) from None
            raise
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def read(self) -> JournalReadResult:
        """Read every event; unparseable or ill-typed lines are listed, not raised.

        Raises:
            SessionFormatError: the journal exists but cannot be opened (a folder, no permission).
        """
        result = JournalReadResult()
        if not self.path.exists():
            return result
        try:
            f = open(self.path, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise SessionFormatError(f"cannot read: {exc.strerror}", file=self.path, unreadable=True) from None
        with f:
            for lineno, line in enumerate(f, start=1):
                result.n_lines = lineno
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except (ValueError, RecursionError):  # JSONDecodeError, a 5000-digit int, deep nesting
                    result.bad_lines.append(lineno)
                    continue
                if not _well_formed(rec):
                    result.bad_lines.append(lineno)
                    continue
                result.events.append(rec)
        return result

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.read().events)

    def require_clean(self) -> list[dict[str, Any]]:
        """Events, raising if any line other than a torn last one is bad."""
        res = self.read()
        if res.bad_lines:
            interior = [n for n in res.bad_lines if not res.torn_tail(n)]
            if interior:
                raise SessionFormatError(
                    f"unparseable line {interior[0]}", file=self.path, field="journal"
                )
        return res.events
