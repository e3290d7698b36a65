"""``hzsr session validate``: check a session folder against the format, reporting every problem.

Checks: session.json and each capture.json parse and have the right fields, types and ranges;
every referenced file exists; its size and sha256 match the record; each JPEG is complete (ends
with the EOI marker) and decodes at its declared size without a single libjpeg warning (a JPEG cut
short and re-sealed with an EOI decodes, padded with grey, and libjpeg only warns); the journal
has no corrupt line but a torn last one. Captures the journal left unfinished, and captures
``resume`` abandoned, are warnings.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from hzsr.core.errors import SessionFormatError
from hzsr.core.fileio import sha256_file
from hzsr.core.journal import Journal
from hzsr.core.records import CaptureRecord, SessionRecord, read_json
from hzsr.core.schema import parse_dataclass
from hzsr.core.session import CaptureState, SessionPaths, captures


@dataclass(frozen=True)
class Finding:
    file: str  # relative to the session folder
    field: str
    message: str
    severity: str = "error"  # error | warning

    def line(self, root: str | Path | None = None) -> str:
        """``severity: [ROOT/]file: field: message``: the path first, whole, after the severity."""
        path = self.file if root is None or self.file.startswith("/") else f"{str(root).rstrip('/')}/{self.file}"
        return f"{self.severity}: {path}: {self.field}: {self.message}"


def _load(path: Path, cls, rel: str, out: list[Finding]):
    try:
        data = read_json(path)
    except SessionFormatError as exc:
        out.append(Finding(rel, exc.field or "-", exc.message))
        return None
    obj, problems = parse_dataclass(cls, data)
    out.extend(Finding(rel, p.field or "-", p.message) for p in problems)
    return obj


_STDERR_LOCK = threading.Lock()


def _decode_capturing_warnings(data: bytes):
    """``cv2.imdecode`` and whatever libjpeg wrote to stderr meanwhile (its warnings go there).

    OpenCV does not expose libjpeg's warnings, so fd 2 is pointed at a temp file for the call.
    """
    import cv2
    import numpy as np

    with _STDERR_LOCK, tempfile.TemporaryFile() as cap:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(cap.fileno(), 2)
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        cap.seek(0)
        return img, cap.read().decode(errors="replace").strip()


def check_image(path: Path, width: int, height: int) -> str | None:
    """Why ``path`` is not a complete image of ``width`` x ``height``, or None if it is."""
    data = path.read_bytes()
    is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    if is_jpeg:
        if not data.startswith(b"\xff\xd8"):
            return "not a JPEG (no SOI marker)"
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            return "truncated JPEG (no EOI marker)"
    img, warnings = _decode_capturing_warnings(data)
    if img is None:
        return "does not decode"
    if is_jpeg and warnings:
        return f"corrupt JPEG: libjpeg says {warnings.splitlines()[0]!r}"
    if (img.shape[1], img.shape[0]) != (width, height):
        return f"decodes at {img.shape[1]}x{img.shape[0]}, declared {width}x{height}"
    return None


def _unfinished(root: Path) -> list[Finding]:
    """Warnings for the captures not in ``captures/``: abandoned ones, and unfinished ones."""
    out = []
    for cap in captures(root, [CaptureState.ABANDONED, CaptureState.UNFINISHED]):
        if cap.state is CaptureState.ABANDONED:
            listed = cap.reason != "abandoned capture the journal does not list"
            out.append(Finding(f"abandoned/{cap.capture_id}", "-", f"capture abandoned by resume: {cap.reason}"
                               if listed else cap.reason, "warning"))
        else:
            out.append(Finding(f".incoming/{cap.capture_id}", "-", "capture triggered but never finished: run hzsr "
                               "capture resume to finish or retire it", "warning"))
    return out


def validate_session(session_dir: str | Path, *, check_pixels: bool = True) -> list[Finding]:
    """Every problem in the session folder, as findings; an empty list means valid."""
    root = Path(session_dir)
    out: list[Finding] = []
    if not root.is_dir():
        return [Finding(str(root), "-", "not a folder")]
    session = _load(root / "session.json", SessionRecord, "session.json", out)
    serials = {d.serial for d in session.devices} if session else set()

    jr = Journal(root / "journal.jsonl")
    if not jr.path.exists():
        out.append(Finding("journal.jsonl", "-", "missing", "warning"))
    else:
        try:
            res = jr.read()
        except SessionFormatError as exc:
            out.append(Finding("journal.jsonl", "-", exc.message))
        else:
            for ln in res.bad_lines:
                torn_tail = res.torn_tail(ln)
                out.append(Finding("journal.jsonl", f"line {ln}", "torn last line (crash while writing)"
                                   if torn_tail else "unparseable line", "warning" if torn_tail else "error"))
    out.extend(_unfinished(root))

    if not SessionPaths(root).captures.is_dir():
        out.append(Finding("captures", "-", "missing folder"))
        return out
    for kept in captures(root, [CaptureState.COMPLETE, CaptureState.DISCARDED]):
        cdir = kept.dir
        rel = f"captures/{cdir.name}"
        cap = _load(cdir / "capture.json", CaptureRecord, f"{rel}/capture.json", out)
        if cap is None:
            continue
        if cap.capture_id != cdir.name:
            out.append(Finding(f"{rel}/capture.json", "capture_id", f"{cap.capture_id!r} != folder name"))
        for i, fr in enumerate(cap.frames):
            where = f"frames[{i}]"
            if serials and fr.device not in serials:
                out.append(Finding(f"{rel}/capture.json", f"{where}.device", f"unknown serial {fr.device!r}"))
            path = cdir / fr.file
            frel = f"{rel}/{fr.file}"
            if not path.is_file():
                out.append(Finding(frel, f"{where}.file", "missing file"))
                continue
            size = path.stat().st_size
            if size != fr.size_bytes:
                out.append(Finding(frel, f"{where}.size_bytes", f"file has {size} bytes, record says {fr.size_bytes}"))
            if sha256_file(path) != fr.sha256:
                out.append(Finding(frel, f"{where}.sha256", "mismatch: file differs from the phone's copy"))
            if check_pixels:
                why = check_image(path, fr.width, fr.height)
                if why:
                    out.append(Finding(frel, f"{where}.width/height" if "declared" in why else f"{where}.file", why))
    return out
