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

from hzsr.core.errors import ShellArithError, ShellNotModelled, ShellSyntaxError, StorageError
from hzsr.vphone.shell_arith import evaluate
from hzsr.vphone.shell_syntax import (
    Cmd,
    brace_expand,
    end_backquote,
    end_brace,
    end_double,
    end_paren,
    end_single,
    parse,
    unescape_backquote,
)
from hzsr.vphone.storage import PhoneStorage
from hzsr.vphone.toybox import (
    HANGUP_STATUS,
    NOT_MODELLED_COMMANDS,
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
            "command": self._command, "uptime": self._uptime, "basename": self._basename, "dirname": self._dirname,
            "seq": self._seq, "sort": self._sort, "tac": self._tac, "rev": self._rev, "cut": self._cut,
            "tee": self._tee,
            "set": self._set, "unset": self._unset, "export": self._export, "readonly": self._export,
            "shift": self._shift,
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
        # Each run is a process of its own: the outermost starts from the phone's environment,
        # a nested one ($(...), sh -c) from a copy of its parent's, so nothing leaks back.
        saved = (getattr(self._tls, "vars", None), getattr(self._tls, "params", None))
        self._tls.vars = dict(self.env if saved[0] is None else saved[0])
        self._tls.params = list(saved[1] or [])
        try:
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
        finally:
            self._tls.vars, self._tls.params = saved

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
        except FatalExpansion as ex:  # ${V:?msg}, 1/0: mksh reports it and the shell exits
            msg = f"{SH}: {ex}\n".encode()
            o.err += msg
            o.both += msg
            rc = ex.code
        return ShellResult(bytes(o.out), bytes(o.err), rc, bytes(o.both))

    def _pipeline(self, pipe: list[Cmd], rc: int, stdin: bytes | Callable[[], bytes], o: _Out) -> int:
        if pipe[0].negate:
            rest = [Cmd(pipe[0].words, pipe[0].redirs), *pipe[1:]]
            return 0 if self._pipeline(rest, rc, stdin, o) else 1
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
        # The stderr and status of this command's $(...); a nested command keeps its own.
        saved = (getattr(self._tls, "subst_err", None), getattr(self._tls, "subst_rc", None))
        self._tls.subst_err = bytearray()
        self._tls.subst_rc = None
        try:
            return self._simple_in_scope(cmd, rc, stdin)
        finally:
            self._tls.subst_err, self._tls.subst_rc = saved

    def _simple_in_scope(self, cmd: Cmd, rc: int, stdin: bytes | Callable[[], bytes]) -> Result:
        try:
            words = list(cmd.words)
            assigns = []
            while words and _ASSIGN.match(words[0]):
                name, _, value = words.pop(0).partition("=")
                assigns.append((name, self._expand_value(value, rc)))
            argv = [f for w in words for f in self.expand(w, rc)]
            redirs = [(op, self._one_word(t, rc, op) if t else "") for op, t in cmd.redirs]
        except ShellSyntaxError as exc:
            return b"", bytes(self._tls.subst_err) + f"{SH}: {exc}\n".encode(), 2
        pre_err = bytes(self._tls.subst_err)
        if not argv:
            # Assignments alone set the shell's variables; the status is that of the last $(...).
            for name, value in assigns:
                self._tls.vars[name] = value
            if not cmd.redirs:
                return b"", pre_err, self._tls.subst_rc or 0
        out, err, code = self._command_with_redirs(argv, redirs, stdin)
        return out, pre_err + err, code

    def _command_with_redirs(self, argv: list[str], redirs: list[tuple[str, str]],
                             stdin: bytes | Callable[[], bytes]) -> Result:
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
            if fn is None and name in NOT_MODELLED_COMMANDS:
                out, err, code = b"", f"{SH}: {name}: not modelled by the virtual phone\n".encode(), 2
            elif fn is None:
                out, err, code = b"", f"{SH}: {argv[0]}: inaccessible or not found\n".encode(), 127
            else:
                try:
                    out, err, code = fn(argv, stdin)
                except ShellNotModelled as exc:
                    out, err, code = b"", f"{SH}: {exc}\n".encode(), 2
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

    # -- builtins that change the shell's own state -------------------------------------------
    def _set(self, argv: list[str], stdin: bytes) -> Result:
        if argv[1:2] == ["--"]:
            self._tls.params = list(argv[2:])
            return ok()
        raise ShellNotModelled("set: only `set -- ARGS` is modelled by the virtual phone")

    def _unset(self, argv: list[str], stdin: bytes) -> Result:
        for name in argv[1:]:
            if name.startswith("-"):
                raise ShellNotModelled(f"unset: option {name} is not modelled by the virtual phone")
            self._tls.vars.pop(name, None)
        return ok()

    def _export(self, argv: list[str], stdin: bytes) -> Result:
        """``export``/``readonly NAME[=VALUE]``: sets the value (no child process reads the rest)."""
        for a in argv[1:]:
            if a.startswith("-"):
                raise ShellNotModelled(f"{argv[0]}: option {a} is not modelled by the virtual phone")
            name, eq, value = a.partition("=")
            if eq:
                self._tls.vars[name] = value
        return ok()

    def _shift(self, argv: list[str], stdin: bytes) -> Result:
        n = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 1
        if n > len(self._tls.params):
            return b"", f"{SH}: shift: nothing to shift\n".encode(), 1
        self._tls.params = self._tls.params[n:]
        return ok()

    # -- expansion ---------------------------------------------------------------------------
    def _one_word(self, raw: str, rc: int, op: str) -> str:
        fields = self.expand(raw, rc)
        if len(fields) != 1:
            raise ShellSyntaxError(f"{raw}: {'ambiguous redirect' if fields else 'bad redirect'} ({op})")
        return fields[0]

    def _var(self, name: str, rc: int) -> str | None:
        """A parameter's value; None when it is unset."""
        if name == "?":
            return str(rc)
        if name == "$":
            return "4242"
        params: list[str] = self._tls.params
        if name == "#":
            return str(len(params))
        if name in ("@", "*"):
            return " ".join(params)
        if name == "0":
            return SH
        if name.isdigit():
            k = int(name)
            return params[k - 1] if k <= len(params) else None
        if name in ("!", "-"):
            raise ShellNotModelled(f"${name}: not modelled by the virtual phone")
        return self._tls.vars.get(name)

    def _expand_value(self, raw: str, rc: int) -> str:
        """An assignment's value: expanded, not split, not globbed (``V=$(cmd)``, ``V="a b"``)."""
        return "".join(self._expand_word(raw, rc, split=False)[0]) if raw else ""

    def expand(self, raw: str, rc: int) -> list[str]:
        """Brace expansion, then expansion, field splitting, globbing and quote removal."""
        fields: list[str] = []
        for word in brace_expand(raw):
            if word == '"$@"':  # each positional parameter, one field each
                fields.extend(self._tls.params)
                continue
            fields.extend(self._expand_word(word, rc, split=True)[1])
        return fields

    def _expand_word(self, raw: str, rc: int, split: bool) -> tuple[list[str], list[str]]:
        """(the pieces joined, the fields) of one word after brace expansion."""
        fields: list[str] = []
        cur: list[str] = []
        joined: list[str] = []
        globby = False  # an unquoted * or ? was seen
        pattern: list[str] = []  # cur with glob characters left unescaped, for fnmatch
        started = False  # quotes make a field even when empty

        def add(text: str, literal: bool) -> None:
            cur.append(text)
            joined.append(text)
            pattern.append(re.sub(r"([*?\[])", r"[\1]", text) if literal else text)

        def split_in(text: str) -> None:
            nonlocal cur, pattern, started
            if not split:
                add(text, True)
                return
            parts = re.split(r"[ \t\n]+", text)
            for j, part in enumerate(parts):
                if j > 0 and (cur or started):
                    fields.append("".join(cur))
                    cur, pattern, started = [], [], False
                if part:
                    add(part, True)

        i, n = 0, len(raw)
        if raw[:1] == "~" and (n == 1 or raw[1] == "/"):
            add(self._tls.vars.get("HOME", "/"), True)
            started = True
            i = 1
        elif raw[:1] == "~" and re.match(r"~[A-Za-z0-9_.-]+(/|$)", raw):
            raise ShellNotModelled(f"{raw.split('/')[0]}: ~user is not modelled by the virtual phone")
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
                text, i = self._dollar(raw, i, rc)
                split_in(text)
            elif c == "`":
                k = end_backquote(raw, i)
                split_in(self._substitute(unescape_backquote(raw[i + 1:k - 1])))
                i = k
            else:
                if c in "*?[" and raw != "[":
                    globby = True
                add(c, False)
                i += 1
        if cur or started:
            if globby and split:
                matches = self._glob("".join(pattern))
                if matches:
                    fields.extend(matches)
                    return joined, fields
            fields.append("".join(cur))
        return joined, fields

    def _substitute(self, body: str) -> str:
        """``$(body)``: its stdout less trailing newlines; its stderr and status are kept."""
        res = self.run(body)
        self._tls.subst_err += res.stderr
        self._tls.subst_rc = res.rc
        return res.stdout.decode("utf-8", "replace").rstrip("\n")

    def _dollar(self, s: str, i: int, rc: int, dq: bool = False) -> tuple[str, int]:
        """Expand the ``$`` construct at ``s[i]``: (its text, the index after it)."""
        if s.startswith("$((", i):
            k = end_paren(s, i + 2)
            if s[k - 2] == ")" and end_paren(s, i + 3) == k - 1:
                body = self._expand_dq(s[i + 3:k - 2], rc)
                try:
                    return str(evaluate(body, lambda name: self._var(name, rc))), k
                except ShellArithError as exc:
                    raise FatalExpansion(str(exc), 1) from None
        if s.startswith("$(", i):
            k = end_paren(s, i + 2)
            return self._substitute(s[i + 2:k - 1]), k
        if s.startswith("${", i):
            k = end_brace(s, i + 2)
            return self._param(s[i + 2:k - 1], rc), k
        m = re.match(r"[?$#@*!0-9-]|[A-Za-z_][A-Za-z0-9_]*", s[i + 1:])
        if not m:
            return "$", i + 1
        name = m.group(0)
        params = self._tls.params
        if name in ("@", "*") and len(params) > 1 and ((dq and name == "@")
                                                        or (not dq and any(re.search(r"\s", p) for p in params))):
            raise ShellNotModelled(f"this use of ${name} is not modelled by the virtual phone")
        return self._var(name, rc) or "", i + 1 + len(name)

    def _param(self, body: str, rc: int) -> str:
        """``${...}``: the POSIX forms ``-`` ``=`` ``?`` ``+`` (with or without ``:``), ``#``,
        ``%``, ``%%``, ``#``, ``##`` and ``${#V}``; any other form is not modelled."""
        if re.fullmatch(r"#([A-Za-z_][A-Za-z0-9_]*|[0-9#?])", body):
            return str(len(self._var(body[1:], rc) or ""))
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*|[0-9]+|[?$#@*])(?:(:?[-=?+]|##?|%%?)(.*))?", body, re.S)
        if not m:
            raise ShellNotModelled(f"${{{body}}}: this parameter expansion is not modelled by the virtual phone")
        name, op, word = m.group(1), m.group(2), m.group(3) or ""
        value = self._var(name, rc)
        if op is None:
            return value or ""
        if op in ("#", "##", "%", "%%"):
            return _trim(value or "", self._expand_dq(word, rc, pattern=True), op)
        unset = value is None or (op.startswith(":") and value == "")
        kind = op[-1]
        if kind == "-":
            return self._expand_dq(word, rc) if unset else value or ""
        if kind == "+":
            return "" if unset else self._expand_dq(word, rc)
        if kind == "=":
            if unset:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    raise FatalExpansion(f"{name}: cannot assign this way", 1)
                value = self._tls.vars[name] = self._expand_dq(word, rc)
            return value or ""
        if unset:  # "?"
            raise FatalExpansion(f"{name}: {self._expand_dq(word, rc) or 'parameter null or not set'}", 1)
        return value or ""

    def _expand_dq(self, body: str, rc: int, pattern: bool = False) -> str:
        """The inside of double quotes (also the word of ``${V:-word}``): ``$``, backquotes, ``\\``."""
        out, i = [], 0
        while i < len(body):
            c = body[i]
            if c == "\\" and i + 1 < len(body) and body[i + 1] in '$`"\\\n':
                out.append(body[i + 1] if body[i + 1] != "\n" else "")
                i += 2
            elif c == "$":
                text, i = self._dollar(body, i, rc, dq=True)
                out.append(text)
            elif c == "`":
                k = end_backquote(body, i)
                out.append(self._substitute(unescape_backquote(body[i + 1:k - 1])))
                i = k
            elif c in "'\"" and pattern:
                k = end_single(body, i) if c == "'" else end_double(body, i)
                inner = body[i + 1:k - 1] if c == "'" else self._expand_dq(body[i + 1:k - 1], rc)
                out.append(re.sub(r"([*?\[])", r"[\1]", inner))
                i = k
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


_ASSIGN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


class FatalExpansion(Exception):
    """An expansion error that ends the shell (``${V:?}``, a zero divisor), with its status."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _trim(value: str, pat: str, op: str) -> str:
    """``${V#p}`` (shortest prefix), ``##`` (longest), ``%`` (shortest suffix), ``%%`` (longest)."""
    n = len(value)
    if op.startswith("#"):
        cuts = range(0, n + 1) if op == "#" else range(n, -1, -1)
        for k in cuts:
            if fnmatch.fnmatchcase(value[:k], pat):
                return value[k:]
    else:
        cuts = range(n, -1, -1) if op == "%" else range(0, n + 1)
        for k in cuts:
            if fnmatch.fnmatchcase(value[k:], pat):
                return value[:k]
    return value
