"""Every error class hzsr defines, in two hierarchies, and the table of exit codes.

``HzsrError`` and its subclasses are the host's side: what a user can cause, or what a stage
turns into a row of its report. Each carries the file and the field at fault and renders as one
line, ``<file>: <field>: <message>``; the CLI prints that line and exits with ``exit_code`` (see
``EXIT_CODES``), with no traceback.

``VirtualPhoneError`` and its subclasses are the phone's side: a virtual phone raises them inside
its adbd, shell, storage or capture agent, and turns each into what a real phone would answer (an
agent error reply, an adbd ``FAIL``, a shell message and status, a dropped connection). They never
reach a user as an exception, so they have no exit code; keeping them here keeps every name unique
across the project (the host's ``AgentError`` is a reply the host received, the phone's
``AgentRequestError`` the reply it sends).

Not here, on purpose: exceptions that are control flow inside one module and are not errors at
all, namely the phone shell's ``ShellExit`` (``exit N`` ending a line) and ``rig conformance``'s
``RuleFailed`` / ``RuleSkipped`` (how a rule reports its outcome to the runner, which prints it as
a row).

The exit codes (``EXIT_CODES``, documented as a table in the README, which a test compares with
this one): 0 success; 1 the input was read and is bad, or the work found a failure; 2 the input
could not be read or an option is wrong; 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: What each exit code of ``hzsr`` means; the README's "Exit codes" table is this table.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success: the work is done, or the check ran and found nothing that fails",
    EXIT_PROBLEMS: "the input was read and is bad, or the work found a failure: a check failed "
                   "(`session validate`, `rig doctor`, `rig conformance`, `dataset verify`, "
                   "`model eval --strict`), the rig failed during `capture run`, `capture resume` "
                   "left a capture unfinished, a `demo` step failed, another process is writing the session or "
                   "data set (its lock is held)",
    EXIT_USAGE: "the input could not be read (missing, not a file, not UTF-8, not JSON or YAML, "
                "nested too deep), or an option is wrong (argparse's own usage errors included)",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (128 + SIGINT, as a shell reports it); `capture run` "
                      "says how to resume",
}


# -- the host's side: one line, an exit code --------------------------------------------------
class HzsrError(Exception):
    """Base class of every error hzsr raises on purpose on the host.

    Args:
        message: what is wrong, in the user's terms.
        file: the file at fault, if any.
        field: the dotted field path inside that file (``frames[1].iso``), or the option at fault
            (``--workers``), if any.
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
        """``EXIT_USAGE`` for unreadable input or a wrong option, else ``EXIT_PROBLEMS``.

        The raiser decides, with ``unreadable`` or an option-shaped ``field`` (``--name``): it is
        the one place that knows whether the bytes could be read at all.
        """
        return EXIT_USAGE if self.unreadable or (self.field or "").startswith("--") else EXIT_PROBLEMS

    def one_line(self) -> str:
        """``<file>: <field>: <message>``, leaving out what is not known."""
        parts = [p for p in (self.file, self.field) if p]
        return ": ".join([*parts, self.message])


class ConfigError(HzsrError):
    """A YAML config or CLI option is unknown, missing or of the wrong type."""


class SessionFormatError(HzsrError):
    """A session folder file (session.json, capture.json, journal.jsonl) breaks the format."""


class SessionBusyError(HzsrError):
    """Another process holds the session's lock (``core/lock.py``)."""


class RigError(HzsrError):
    """The rig (adb server, phones, agent) is not in a state to do what was asked."""


class AgentError(RigError):
    """A phone's capture agent answered a request with an error reply.

    Args:
        serial: the phone's serial (the field of the one line).
        code: the reply's error code (``docs/agent-protocol.md``: ``busy``, ``not_found``, ...).
        message: the reply's message.
        reply: the whole reply, for callers that read more of it.
    """

    def __init__(self, serial: str, code: str, message: str, reply: dict[str, Any]):
        super().__init__(f"{code}: {message}", field=serial)
        self.code, self.reply = code, reply


class CaptureError(HzsrError):
    """A capture could not be triggered, completed or verified."""


class CaptureLost(CaptureError):
    """A capture that can never complete: a phone failed it, or has no trace of it."""


class TransferError(CaptureError):
    """The pulled bytes do not match the phone's copy (the caller pulls again)."""


class BoardNotFound(HzsrError):
    """The sync board cannot be read in a frame; ``sync optical`` reports it as that frame's reason."""


class CalibrationError(HzsrError):
    """A sync calibration cannot be made from what was given: too few decoded board captures (exit 1)."""


class DatasetError(HzsrError):
    """A dataset folder, shard or manifest is unreadable or breaks the format."""


class DatasetBusyError(DatasetError):
    """Another process is writing the data set (``core/lock.py:DatasetLock``)."""


class ModelError(HzsrError):
    """A checkpoint, model input or model option is unusable."""


class ImageRefused(HzsrError):
    """An image is not taken in: its header declares too many pixels, or cannot be read
    (``hzsr.core.imageio``: size before decode)."""


class ImageTooLarge(ImageRefused):
    """An image's header declares more pixels than hzsr decodes (``hzsr.core.imageio.MAX_PIXELS``)."""


class DemoStepFailed(HzsrError):
    """A step of ``hzsr demo`` failed; it has already said why on stderr."""


# -- the phone's side: becomes an agent error reply / adbd FAIL / shell message, never an exit code
class VirtualPhoneError(Exception):
    """Base class of the errors a virtual phone raises and answers as a real phone would.

    None of them reaches a user as an exception: each is caught inside the phone and becomes an
    agent error reply, an adbd ``FAIL``, a shell message with its status, or a dropped connection.
    """


class AgentRequestError(VirtualPhoneError):
    """The virtual agent refuses a request; it answers ``{"ok": false, "error": {code, message}}``.

    Args:
        code: the protocol's error code (``bad_request``, ``busy``, ...).
        message: the reply's message.
        **extra: more fields of the reply's error object (``now_ns``, ``free_bytes``, ...).
    """

    def __init__(self, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.code, self.message, self.extra = code, message, extra


class ThreeAError(VirtualPhoneError, ValueError):
    """A ``set_3a`` request the agent refuses (``bad_request``); a ``ValueError``, as a bad value is."""


class StorageError(VirtualPhoneError, OSError):
    """An errno-carrying storage failure, reported to the host as the phone would.

    An ``OSError`` (``StorageError(errno.EACCES, "Permission denied", path)``), so that code
    handling real file-system errors handles the phone's refusals the same way.
    """


class AdbProtocolError(VirtualPhoneError):
    """The peer broke the ADB protocol; the connection is dropped, the device keeps serving."""


class AdbStreamClosed(VirtualPhoneError):
    """The ADB stream a service reads or writes was closed (by the peer, or by a link fault)."""


class SyncSendError(VirtualPhoneError):
    """A ``sync:`` SEND that adbd refuses before any data; the message goes into the ``FAIL`` reply."""


class ShellSyntaxError(VirtualPhoneError):
    """The line cannot be parsed; mksh prints ``/system/bin/sh: <msg>`` and exits 2."""


class ShellNotModelled(ShellSyntaxError):
    """A construct or command the virtual shell does not model: exit 2 and "not modelled", never a
    different answer."""


class ShellArithError(VirtualPhoneError):
    """An error mksh reports for a ``$((...))`` expression (``1/0: zero divisor``): the shell exits 1."""
