"""The session folder: its paths, the journal's state machine, and the one ``captures()`` iterator.

Every stage walks a session's captures through ``captures()``, so every stage agrees on what a
capture is and in what state:

- ``complete``: its folder is in ``captures/`` (moved there by one rename once every frame was
  verified) and the crew kept it;
- ``discarded``: in ``captures/`` too, but the crew discarded it (``r`` on the capture line,
  ``CaptureRecord.status``, journal ``capture_discarded``): kept on disk, excluded downstream;
- ``unfinished``: triggered, never completed (a crash, a dead link): ``hzsr capture resume``
  finishes or retires it;
- ``abandoned``: retired by ``resume`` (a phone failed it, or never took it): what could be
  pulled is kept in ``abandoned/<id>/``.

The journal's state machine (``journal_states``) is the one capture, resume, purge and
``session validate`` use. Each capture moves through it by its journal events::

    trigger ─▶ triggered ─┬─ capture_incomplete ─▶ incomplete, or failed if permanent
                          │     (either may still complete: a later resume pulls the files)
                          └─ capture_complete ─▶ complete ─ capture_discarded ─▶ discarded
    triggered | incomplete | failed ─ capture_abandoned ─▶ abandoned

Complete, discarded and abandoned are settled: no later ``incomplete`` or ``abandoned`` event
moves a capture out of them (a discarded capture stays discarded even if a ``capture_complete``
follows), and a repeated ``trigger`` of a known id does not reset it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hzsr.core.errors import HzsrError
from hzsr.core.journal import Journal
from hzsr.core.verdict import Word


class JournalState(Word):
    """A capture's state as its journal events leave it (finer than ``CaptureState``)."""

    TRIGGERED = "triggered"  # the phones were told; nothing after that yet
    INCOMPLETE = "incomplete"  # collecting failed this time; resume may finish it
    FAILED = "failed"  # incomplete, and nothing can finish it: resume retires it
    COMPLETE = "complete"
    DISCARDED = "discarded"
    ABANDONED = "abandoned"


class CaptureState(Word):
    """What a stage needs to know of a capture (module docstring)."""

    COMPLETE = "complete"
    DISCARDED = "discarded"
    UNFINISHED = "unfinished"
    ABANDONED = "abandoned"


@dataclass
class JournalEntry:
    state: JournalState
    reason: str = ""  # the last incomplete or abandoned event's reason


def journal_states(events: Iterable[dict[str, Any]]) -> dict[str, JournalEntry]:
    """Each capture's state after ``events`` (a journal's, in order), by capture id."""
    S = JournalState
    out: dict[str, JournalEntry] = {}
    for e in events:
        cid = e.get("capture_id")
        if not isinstance(cid, str) or not cid:
            continue
        kind = e.get("event")
        cur = out.get(cid)
        settled = cur is not None and cur.state in (S.COMPLETE, S.DISCARDED, S.ABANDONED)
        if kind == "trigger":
            if cur is None:
                out[cid] = JournalEntry(S.TRIGGERED)
        elif kind == "capture_incomplete":
            if not settled:
                out[cid] = JournalEntry(S.FAILED if e.get("permanent") else S.INCOMPLETE, str(e.get("reason") or ""))
        elif kind == "capture_complete":
            if cur is None or cur.state != S.DISCARDED:
                out[cid] = JournalEntry(S.COMPLETE)
        elif kind == "capture_discarded":
            out[cid] = JournalEntry(S.DISCARDED, str(e.get("reason") or ""))
        elif kind == "capture_abandoned":
            if not settled or cur.state == S.ABANDONED:
                out[cid] = JournalEntry(S.ABANDONED, str(e.get("reason") or ""))
    return out


def _at(relative: str) -> Any:
    """A ``SessionPaths`` field: ``relative`` under the session folder."""
    return field(init=False, repr=False, metadata={"at": relative})


@dataclass(frozen=True)
class SessionPaths:
    """Where everything of a session lives (docs/session-format.md)."""

    root: Path
    session_json: Path = _at("session.json")
    journal: Path = _at("journal.jsonl")
    captures: Path = _at("captures")  # complete and discarded captures, one folder each
    incoming: Path = _at(".incoming")  # frames being pulled, staged until the capture is complete
    abandoned: Path = _at("abandoned")
    sync_dir: Path = _at("sync")
    sync_csv: Path = _at("sync/sync.csv")
    qa_dir: Path = _at("qa")
    qa_csv: Path = _at("qa/qa.csv")

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))
        for f in fields(self):
            if "at" in f.metadata:
                object.__setattr__(self, f.name, self.root / f.metadata["at"])

    def capture_dir(self, capture_id: str) -> Path:
        return self.captures / capture_id


@dataclass(frozen=True)
class SessionCapture:
    """One capture of a session as ``captures()`` finds it."""

    capture_id: str
    state: CaptureState
    dir: Path  # captures/<id> (complete, discarded), abandoned/<id>, or .incoming/<id> (unfinished)
    reason: str = ""  # why it is discarded, unfinished or abandoned

    @property
    def usable(self) -> bool:
        """Whether later stages judge and pack it (only complete captures)."""
        return self.state is CaptureState.COMPLETE


def _record_status(capture_dir: Path) -> str | None:
    """``status`` of a capture.json, read leniently: a stage reports a bad record itself."""
    try:
        doc = json.loads((capture_dir / "capture.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return doc.get("status") if isinstance(doc, dict) and isinstance(doc.get("status"), str) else None


def read_journal_states(root: str | Path) -> dict[str, JournalEntry]:
    """``journal_states`` of the session's journal; an unreadable journal gives no states."""
    try:
        return journal_states(Journal(SessionPaths(Path(root)).journal).read().events)
    except HzsrError:
        return {}


def captures(root: str | Path, states: Iterable[CaptureState] | None = None) -> Iterator[SessionCapture]:
    """Every capture of the session at ``root``, sorted by id, with its state.

    A folder in ``captures/`` is complete, or discarded when its ``capture.json`` or the journal
    says so; the journal adds the unfinished and abandoned ones, and so does a folder in
    ``abandoned/`` the journal does not list. Hidden folders (``.tmp-*``) are never captures.

    Args:
        root: the session folder.
        states: yield only captures in these states (all when None).
    """
    paths = SessionPaths(Path(root))
    want = set(states) if states is not None else set(CaptureState)
    journal = read_journal_states(paths.root)
    found: dict[str, SessionCapture] = {}

    def visible(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if folder.is_dir() else []

    for d in visible(paths.captures):
        entry = journal.get(d.name)
        if _record_status(d) == "discarded" or (entry is not None and entry.state is JournalState.DISCARDED):
            reason = entry.reason if entry is not None and entry.state is JournalState.DISCARDED else ""
            found[d.name] = SessionCapture(d.name, CaptureState.DISCARDED, d, reason or "discarded by the crew")
        else:
            found[d.name] = SessionCapture(d.name, CaptureState.COMPLETE, d)
    for cid, entry in journal.items():
        if cid in found:
            continue
        if entry.state is JournalState.ABANDONED:
            found[cid] = SessionCapture(cid, CaptureState.ABANDONED, paths.abandoned / cid, entry.reason)
        elif entry.state in (JournalState.TRIGGERED, JournalState.INCOMPLETE, JournalState.FAILED):
            found[cid] = SessionCapture(cid, CaptureState.UNFINISHED, paths.incoming / cid,
                                        entry.reason or "triggered but never finished")
        # complete or discarded in the journal but not in captures/: the folder is gone; the
        # stages that check files (session validate) say so.
    for d in visible(paths.abandoned):
        found.setdefault(d.name, SessionCapture(d.name, CaptureState.ABANDONED, d,
                                                "abandoned capture the journal does not list"))
    for cid in sorted(found):
        if found[cid].state in want:
            yield found[cid]


def count_states(caps: Iterable[SessionCapture]) -> dict[str, int]:
    """Captures per state, every state present (for summaries)."""
    out = {s.value: 0 for s in CaptureState}
    for c in caps:
        out[c.state.value] += 1
    return out
