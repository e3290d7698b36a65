"""``hzsr session validate``: check a session folder against the format, reporting every problem.

Checks: session.json and each capture.json parse and have the right fields and types; every
referenced file exists; its size and sha256 match the record; each JPEG is complete (ends with the
EOI marker) and decodes at its declared size; the journal has no corrupt line but a torn last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hzsr.core.errors import SessionFormatError
from hzsr.core.fileio import sha256_file
from hzsr.core.journal import Journal
from hzsr.core.records import CaptureRecord, SessionRecord, read_json
from hzsr.core.schema import parse_dataclass


@dataclass(frozen=True)
class Finding:
    file: str  # relative to the session folder
    field: str
    message: str
    severity: str = "error"  # error | warning

    def line(self) -> str:
        return f"{self.severity}: {self.file}: {self.field}: {self.message}"


def _load(path: Path, cls, rel: str, out: list[Finding]):
    try:
        data = read_json(path)
    except SessionFormatError as exc:
        out.append(Finding(rel, exc.field or "-", exc.message))
        return None
    obj, problems = parse_dataclass(cls, data)
    out.extend(Finding(rel, p.field or "-", p.message) for p in problems)
    return obj


def check_image(path: Path, width: int, height: int) -> str | None:
    """Why ``path`` is not a complete image of ``width`` x ``height``, or None if it is."""
    import cv2
    import numpy as np

    data = path.read_bytes()
    if path.suffix.lower() in (".jpg", ".jpeg"):
        if not data.startswith(b"\xff\xd8"):
            return "not a JPEG (no SOI marker)"
        if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
            return "truncated JPEG (no EOI marker)"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return "does not decode"
    if (img.shape[1], img.shape[0]) != (width, height):
        return f"decodes at {img.shape[1]}x{img.shape[0]}, declared {width}x{height}"
    return None


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
        res = jr.read()
        for ln in res.bad_lines:
            torn_tail = res.torn_tail(ln)
            out.append(Finding("journal.jsonl", f"line {ln}", "torn last line (crash while writing)"
                               if torn_tail else "unparseable line", "warning" if torn_tail else "error"))

    cap_root = root / "captures"
    if not cap_root.is_dir():
        out.append(Finding("captures", "-", "missing folder"))
        return out
    for cdir in sorted(p for p in cap_root.iterdir() if p.is_dir()):
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
