"""The virtual phone's shell: a small model of Android's ``/system/bin/sh`` (mksh) and toybox.

What it parses (POSIX ``sh`` rules, as mksh applies them):

- quoting: ``'...'`` (literal), ``"..."`` (``$`` expansions, ``\\`` before ``$ ` " \\``), ``\\x``;
  a quoted argument passes through byte for byte, spaces, ``;``, ``$()`` and non-ASCII included;
- expansions: ``$?``, ``$$``, ``$VAR``/``${VAR}`` (the environment below), ``$(...)`` (command
  substitution; unquoted results are split on whitespace), ``*``/``?`` globs on the phone's files
  (an unmatched glob stays literal, as in mksh);
- lists and pipelines: ``;``, ``&&``, ``||``, ``|``, newlines, ``# comments``;
- redirects: ``> f``, ``>> f``, ``< f``, ``2> f``, ``2>> f``, ``2>&1``, ``>&2``, ``/dev/null``.

Compound commands (``if``, ``while``, ``for``, ``case``, functions, subshells) and background
jobs (``&``) are not modelled: they fail with a message saying so and exit status 2, never with
silently wrong output. A command the phone does not have fails as mksh does:
``/system/bin/sh: NAME: inaccessible or not found``, exit status 127.

Parsing lives in ``shell_syntax.py``, the commands (toybox's, with its messages) in
``toybox.py``; this module expands words and runs lists, pipelines and redirects.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hzsr.core.errors import ShellSyntaxError, StorageError
from hzsr.vphone.shell_syntax import Cmd, end_double, end_paren, end_single, parse
from hzsr.vphone.storage import PhoneStorage
from hzsr.vphone.toybox import (
    HANGUP_STATUS,
    SH,
    Command,
    Hangup,
    Result,
    ShellExit,
    ToyboxCommands,
    ok,
    reads_stdin,
)

__all__ = ["DeviceState", "ShellResult", "VirtualShell"]


@dataclass
class ShellResult:
    stdout: bytes
    stderr: bytes
    rc: int
    combined: bytes  # stdout and stderr in the order written, as a v1 (pty) shell shows them


@dataclass
class DeviceState:
    """What ``dumpsys`` and ``settings`` report; tests and faults change it."""

    battery_level: int = 87
    battery_temp_dc: int = 312  # tenths of a degree C, as dumpsys prints it
    plugged_usb: bool = True
    screen_off_timeout_ms: int = 600000
    stay_on_while_plugged: int = 3
    thermal_status: int = 0  # PowerManager.THERMAL_STATUS_NONE
    settings: dict[str, str] = field(default_factory=dict)
    boot_ns: int = field(default_factory=time.monotonic_ns)  # for uptime


@dataclass
class _Out:
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    both: bytearray = field(default_factory=bytearray)


class VirtualShell(ToyboxCommands):
    """One phone's shell; ``run`` executes a whole command line as ``sh -c`` would."""

    def __init__(self, props: dict[str, str], storage: PhoneStorage | None = None,
                 state: DeviceState | None = None):
        self.props = props
        self.storage = storage
        # Per worker thread: the hang-up event of the line it runs (commands of one phone run
        # at once on their own threads, each cancelled alone when its host stream closes).
        self._tls = threading.local()
        self.state = state or DeviceState()
        self.env = {"HOME": "/", "PATH": "/product/bin:/apex/com.android.runtime/bin:/system/bin:/system/xbin",
                    "USER": "shell", "SHELL": SH, "TMPDIR": "/data/local/tmp", "EXTERNAL_STORAGE": "/sdcard",
                    "ANDROID_DATA": "/data", "ANDROID_ROOT": "/system"}
        self.commands: dict[str, Command] = {
            "getprop": self._getprop, "setprop": self._setprop, "echo": self._echo, "printf": self._printf,
            "true": lambda a, i: ok(), "false": lambda a, i: (b"", b"", 1), ":": lambda a, i: ok(),
            "date": self._date, "cat": self._cat, "ls": self._ls, "rm": self._rm, "mkdir": self._mkdir,
            "rmdir": self._rmdir, "mv": self._mv, "cp": self._cp, "touch": self._touch, "stat": self._stat,
            "wc": self._wc, "head": self._head, "tail": self._tail, "grep": self._grep, "sleep": self._sleep,
            "pwd": lambda a, i: ok("/\n"), "cd": self._cd, "df": self._df, "du": self._du,
            "sha256sum": self._hashsum(hashlib.sha256, "sha256sum"), "md5sum": self._hashsum(hashlib.md5, "md5sum"),
            "sha1sum": self._hashsum(hashlib.sha1, "sha1sum"), "id": self._id,
            "whoami": lambda a, i: ok("shell\n"),
            "uname": self._uname, "dumpsys": self._dumpsys, "settings": self._settings, "test": self._test,
            "[": self._test, "sh": self._sh, "exit": self._exit, "which": self._which,
            "command": self._command, "uptime": self._uptime,
        }

    # -- the interpreter -------------------------------------------------------------------
    def hangup_event(self) -> threading.Event:
        """The event that the host's close of this line's stream sets (a fresh one if none)."""
        ev = getattr(self._tls, "hangup", None)
        if ev is None:
            ev = self._tls.hangup = threading.Event()
        return ev

    def run(self, line: str, stdin: bytes | Callable[[], bytes] = b"",
            hangup: threading.Event | None = None) -> ShellResult:
        """Run a command line; ``rc`` is the exit status of the last pipeline run.

        ``stdin`` is the line's standard input: bytes, or a function that blocks until the host
        has closed it and returns it all; it is called only if a command reads its stdin.
        ``hangup``, set by the ADB service when the host closes the stream, stops the line at
        the next command (or at once in ``sleep``), with status 129 as SIGHUP would.
        """
        if hangup is None:
            return self._run(line, stdin)
        old = getattr(self._tls, "hangup", None)
        self._tls.hangup = hangup
        try:
            return self._run(line, stdin)
        except Hangup:
            msg = b""
            return ShellResult(b"", msg, HANGUP_STATUS, msg)
        finally:
            self._tls.hangup = old

    def _run(self, line: str, stdin: bytes | Callable[[], bytes]) -> ShellResult:
        o = _Out()
        try:
            lists = parse(line)
        except ShellSyntaxError as exc:
            msg = f"{SH}: {exc}\n".encode()
            return ShellResult(b"", msg, 2, msg)
        rc = 0
        try:
            for conn, pipe in lists:
                if self.hangup_event().is_set():
                    raise Hangup()
                if (conn == "&&" and rc != 0) or (conn == "||" and rc == 0):
                    continue
                rc = self._pipeline(pipe, rc, stdin, o)
        except ShellExit as ex:
            rc = ex.code
        return ShellResult(bytes(o.out), bytes(o.err), rc, bytes(o.both))

    def _pipeline(self, pipe: list[Cmd], rc: int, stdin: bytes | Callable[[], bytes], o: _Out) -> int:
        data = stdin
        for k, cmd in enumerate(pipe):
            last = k == len(pipe) - 1
            out, err, rc = self._simple(cmd, rc, data)
            # Without a pty every stage's stderr reaches the terminal; only the last stdout does.
            o.err += err
            o.both += err
            if last:
                o.out += out
                o.both += out
            data = out
        return rc

    def _simple(self, cmd: Cmd, rc: int, stdin: bytes | Callable[[], bytes]) -> Result:
        try:
            argv = [f for w in cmd.words for f in self.expand(w, rc)]
            redirs = [(op, self._one_word(t, rc, op) if t else "") for op, t in cmd.redirs]
        except ShellSyntaxError as exc:
            return b"", f"{SH}: {exc}\n".encode(), 2
        # Redirects are opened left to right before the command runs, as sh does: a file that
        # cannot be created stops the command (``can't create F: Read-only file system``).
        fd1: str | None = None  # None: the stream itself; "&1"/"&2": the other stream; else a file
        fd2: str | None = None
        for op, target in redirs:
            try:
                if op == "<":
                    stdin = self._read_file(target)
                elif op in (">", ">>", "2>", "2>>"):
                    self._open_for_write(target, append=op.endswith(">>"))
                    if op.startswith("2"):
                        fd2 = target
                    else:
                        fd1 = target
                elif op == "2>&1":
                    fd2 = fd1 if fd1 is not None else "&1"
                elif op == ">&2":
                    fd1 = fd2 if fd2 is not None else "&2"
            except (OSError, StorageError) as exc:
                verb = "open" if op == "<" else "create"
                return b"", f"{SH}: can't {verb} {target}: {exc.strerror}\n".encode(), 1
        if callable(stdin):
            stdin = stdin() if argv and reads_stdin(argv) else b""
        if not argv:
            out, err, code = b"", b"", 0
        else:
            name = argv[0][len("/system/bin/"):] if argv[0].startswith("/system/bin/") else argv[0]
            fn = self.commands.get(name)
            if fn is None:
                out, err, code = b"", f"{SH}: {argv[0]}: inaccessible or not found\n".encode(), 127
            else:
                try:
                    out, err, code = fn(argv, stdin)
                except (OSError, StorageError) as exc:
                    out, err, code = b"", f"{name}: {exc.filename or ''}: {exc.strerror}\n".encode(), 1
        res_out, res_err = bytearray(), bytearray()
        for data, dest in ((out, fd1), (err, fd2)):
            if dest is None:
                (res_out if data is out else res_err).extend(data)
            elif dest == "&1":
                res_out += data
            elif dest == "&2":
                res_err += data
            elif dest != "/dev/null" and data:
                try:
                    self._write_file(dest, data, append=True)
                except (OSError, StorageError) as exc:
                    res_err += f"{name}: write error: {exc.strerror}\n".encode()
                    code = code or 1
        return bytes(res_out), bytes(res_err), code

    # -- expansion ---------------------------------------------------------------------------
    def _one_word(self, raw: str, rc: int, op: str) -> str:
        fields = self.expand(raw, rc)
        if len(fields) != 1:
            raise ShellSyntaxError(f"{raw}: {'ambiguous redirect' if fields else 'bad redirect'} ({op})")
        return fields[0]

    def _var(self, name: str, rc: int) -> str:
        if name == "?":
            return str(rc)
        if name == "$":
            return "4242"
        if name == "#":
            return "0"
        return self.env.get(name, "")

    def expand(self, raw: str, rc: int) -> list[str]:
        """Quote removal and expansion of one raw word into zero or more fields."""
        fields: list[str] = []
        cur: list[str] = []
        globby = False  # an unquoted * or ? was seen
        pattern: list[str] = []  # cur with glob characters left unescaped, for fnmatch
        started = False  # quotes make a field even when empty

        def add(text: str, literal: bool) -> None:
            cur.append(text)
            pattern.append(re.sub(r"([*?\[])", r"[\1]", text) if literal else text)

        def split_in(text: str) -> None:
            nonlocal cur, pattern, started
            parts = re.split(r"[ \t\n]+", text)
            for j, part in enumerate(parts):
                if j > 0 and (cur or started):
                    fields.append("".join(cur))
                    cur, pattern, started = [], [], False
                if part:
                    add(part, True)

        i, n = 0, len(raw)
        while i < n:
            c = raw[i]
            if c == "'":
                k = end_single(raw, i)
                add(raw[i + 1:k - 1], True)
                started = True
                i = k
            elif c == '"':
                k = end_double(raw, i)
                add(self._expand_dq(raw[i + 1:k - 1], rc), True)
                started = True
                i = k
            elif c == "\\":
                add(raw[i + 1:i + 2], True)
                started = True
                i += 2
            elif c == "$":
                text, i, subst = self._dollar(raw, i, rc)
                if subst:
                    split_in(text)
                else:
                    split_in(text)
            else:
                if c in "*?[" and raw != "[":
                    globby = True
                add(c, False)
                i += 1
        if cur or started:
            if globby:
                matches = self._glob("".join(pattern))
                if matches:
                    fields.extend(matches)
                    return fields
            fields.append("".join(cur))
        return fields

    def _dollar(self, s: str, i: int, rc: int) -> tuple[str, int, bool]:
        if s.startswith("$(", i):
            k = end_paren(s, i + 2)
            res = self.run(s[i + 2:k - 1])
            return res.stdout.decode("utf-8", "replace").rstrip("\n"), k, True
        if s.startswith("${", i):
            k = s.find("}", i)
            if k < 0:
                raise ShellSyntaxError("${: missing }")
            return self._var(s[i + 2:k], rc), k + 1, False
        m = re.match(r"[?$#]|[A-Za-z_][A-Za-z0-9_]*", s[i + 1:])
        if not m:
            return "$", i + 1, False
        return self._var(m.group(0), rc), i + 1 + len(m.group(0)), False

    def _expand_dq(self, body: str, rc: int) -> str:
        out, i = [], 0
        while i < len(body):
            c = body[i]
            if c == "\\" and i + 1 < len(body) and body[i + 1] in '$`"\\\n':
                out.append(body[i + 1] if body[i + 1] != "\n" else "")
                i += 2
            elif c == "$":
                text, i, _ = self._dollar(body, i, rc)
                out.append(text)
            else:
                out.append(c)
                i += 1
        return "".join(out)

    def _glob(self, pattern: str) -> list[str]:
        if self.storage is None or not pattern.startswith("/"):
            return []
        parts = [p for p in pattern.split("/") if p]
        paths = ["/"]
        for part in parts:
            nxt = []
            for base in paths:
                if any(ch in part for ch in "*?["):
                    try:
                        self.storage.check_list(base)
                        names = sorted(os.listdir(self.storage.host_path(base)))
                    except OSError:
                        continue
                    nxt += [posixpath.join(base, x) for x in names
                            if fnmatch.fnmatchcase(x, part) and (part.startswith(".") or not x.startswith("."))]
                else:
                    name = re.sub(r"\[(.)\]", r"\1", part)
                    cand = posixpath.join(base, name)
                    try:
                        if self.storage.host_path(cand).exists() or cand == "/":
                            nxt.append(cand)
                    except OSError:
                        pass
            paths = nxt
        return paths
