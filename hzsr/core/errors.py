"""The typed error hierarchy.

Every error a user can cause carries the file and the field at fault, and renders as one line:
``<file>: <field>: <message>``. The CLI prints that line and exits non-zero, with no traceback:
``exit_code`` is 2 when the input could not be read (missing, not a file, not UTF-8, not YAML or
JSON, nested too deep) or an option is wrong (the field is ``--name``), 1 when it was read and is
bad (the README's rule).
"""

from __future__ import annotations

from pathlib import Path


class HzsrError(Exception):
    """Base class of every error hzsr raises on purpose.

    Args:
        message: what is wrong, in the user's terms.
        file: the file at fault, if any.
        field: the dotted field path inside that file (``frames[1].iso``), if any.
        unreadable: the input could not be read at all (exit 2), rather than read and found bad.
    """

    def __init__(self, message: str, *, file: str | Path | None = None, field: str | None = None,
                 unreadable: bool = False):
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        self.unreadable = unreadable
        super().__init__(self.one_line())

    @property
    def exit_code(self) -> int:
        """2: unreadable input or a wrong option; 1: input read and found bad."""
        return 2 if self.unreadable or (self.field or "").startswith("--") else 1

    def one_line(self) -> str:
        parts = [p for p in (self.file, self.field) if p]
        return ": ".join([*parts, self.message])


class ConfigError(HzsrError):
    """A YAML config or CLI option is unknown, missing or of the wrong type."""


class SessionFormatError(HzsrError):
    """A session folder file (session.json, capture.json, journal.jsonl) breaks the format."""


class RigError(HzsrError):
    """The rig (adb server, phones, agent) is not in a state to do what was asked."""


class CaptureError(HzsrError):
    """A capture could not be triggered, completed or verified."""
