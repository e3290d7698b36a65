"""The main phone's depth offset, carried from an earlier session to the capture line's first shots.

``defocused``'s depth figure reads the AF subject's parallax W crop -> main T, on one phone; the
small rotation between that phone's W and T modules adds a constant to it (0.01-0.38 D on the
labelled sessions at 1280x960). ``hzsr qa check`` removes the session's median; the quick check
has only the captures it has seen, none at a session's first shot, and two that may disagree at
its second (issue 18: those were 4 of the 5 captures it left undecided at 1280x960). The rotation
belongs to the phone, not to the session: every session ``qa check`` judges records the offset it
took with the main phone's serial (``summary.json``'s ``depth_offset``), and the quick check of a
later session on the same phone, in the same sessions folder, starts from the latest such record.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hzsr.core.errors import HzsrError
from hzsr.core.records import CaptureRecord

#: ``summary.json``'s key for the record (``depth_offset_record``).
KEY = "depth_offset"


def main_device(capture_dir: str | Path) -> str | None:
    """The serial of the phone that shot main T (``capture.json``'s frame); None: none readable."""
    try:
        rec = CaptureRecord.load(capture_dir)
    except (HzsrError, OSError, ValueError):
        return None
    dev = next((f.device for f in rec.frames if f.slot == "main_T"), None)
    return str(dev) if dev else None


def depth_offset_record(device: str | None, offset_d: float, margin_d: float, captures: int,
                        focus_offsets: dict[str, tuple[float, float, float]] | None = None) -> dict | None:
    """What ``qa check`` writes under ``summary.json``'s ``depth_offset``: the session's offset
    (median departure, D), how far it may lie from the phone's (``capture_qa.median_margin``), the
    captures behind it, the main phone's serial, and per W-crop pairing the session's focus offset
    (``capture_qa.focus_offsets_of``) and its margin, as shares of the analysis width (dx, dy,
    margin): the quick check analyses at another size. None without a serial or a finite offset."""
    if not device or not (math.isfinite(offset_d) and math.isfinite(margin_d)):
        return None
    foc = {k: [round(float(x), 6) for x in v] for k, v in (focus_offsets or {}).items()
           if all(math.isfinite(x) for x in v)}
    return {"main_device": device, "offset_d": round(float(offset_d), 6), "margin_d": round(float(margin_d), 6),
            "captures": int(captures), "focus_offsets_w": foc}


def carried_record(session_dir: str | Path, device: str | None) -> dict | None:
    """The latest record (by ``summary.json``'s modification time) of the phone ``device`` among
    the other sessions in ``session_dir``'s parent folder (``depth_offset_record``); None: none.

    A session's own ``qa/summary.json`` is never read: the capture line runs before ``qa check``
    of its session, and a stale one would carry the session's own figures back into it."""
    if not device:
        return None
    here = Path(session_dir).resolve()
    best: tuple[float, dict] | None = None
    for p in here.parent.glob("*/qa/summary.json"):
        if p.parent.parent.resolve() == here:
            continue
        try:
            rec = json.loads(p.read_text()).get(KEY)
            mtime = p.stat().st_mtime
        except (OSError, ValueError, AttributeError):
            continue  # an unreadable or foreign summary carries nothing
        if not isinstance(rec, dict) or rec.get("main_device") != device:
            continue
        try:
            off, margin = float(rec["offset_d"]), float(rec["margin_d"])
        except (KeyError, TypeError, ValueError):
            continue
        if np.isfinite(off) and np.isfinite(margin) and (best is None or mtime > best[0]):
            best = (mtime, rec)
    return best[1] if best else None


def combine(session: tuple[float, float] | None, carried: tuple[float, float] | None
            ) -> tuple[float, float] | None:
    """The offset and its half-width from the session's captures seen (median, margin) and the
    carried record (offset, margin + drift): where both intervals exist, their intersection (the
    offset lies in both); where they do not meet (the phone changed, or a record of another rig
    under the same serial), the session's own; otherwise whichever exists."""
    if session is None or carried is None:
        return session if carried is None else carried
    lo = max(session[0] - session[1], carried[0] - carried[1])
    hi = min(session[0] + session[1], carried[0] + carried[1])
    if lo > hi:
        return session
    return (lo + hi) / 2, (hi - lo) / 2
