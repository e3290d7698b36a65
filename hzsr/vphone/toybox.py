"""The commands of the virtual phone's shell: toybox's, as Android 13-15 ship them, over the phone's storage.

Each command is a method ``(argv, stdin) -> (stdout, stderr, exit status)`` with toybox's common
flags and messages (``ls: /x: No such file or directory``). ``ToyboxCommands`` is mixed into
``shell.VirtualShell``, which supplies ``props``, ``storage``, ``state``, ``commands`` and ``run``.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import posixpath
import re
import shutil
import time
from collections.abc import Callable
from typing import Any

from hzsr.core.errors import ShellNotModelled, StorageError
from hzsr.vphone.storage import PhoneStorage, canonical

Result = tuple[bytes, bytes, int]
Command = Callable[[list[str], bytes], Result]
SH = "/system/bin/sh"

#: mksh's builtins among the commands the model has (``command -v`` names them as themselves).
MKSH_BUILTINS = frozenset({"echo", "test", "[", "true", "false", ":", "pwd", "cd", "exit", "set", "unset", "export",
                           "readonly", "command", "shift"})

#: Commands an Android 13-15 phone has (mksh builtins, toybox applets, framework tools) that the
#: virtual phone does not model: they fail with status 2 and "not modelled", never with "not
#: found" (which would claim the phone lacks them) and never with a made-up answer.
NOT_MODELLED_COMMANDS = frozenset("""
alias bg bind builtin eval exec fc fg getopts hash jobs kill let local print read realpath rename
return times trap type typeset ulimit umask unalias wait whence source .
awk base64 bzcat chcon chgrp chmod chown chroot cksum clear cmp comm cpio crc32 diff dmesg dos2unix
env expand expr fallocate file find flock fmt free fsync getconf getenforce groups gunzip gzip hostname
hwclock iconv ifconfig inotifyd install ionice iorenice killall ln load_policy log logname losetup lsattr
lsmod lsof lspci lsusb microcom mkfifo mknod mkswap mktemp modinfo modprobe more mount mountpoint nc
netcat netstat nice nl nohup nproc nsenter od paste patch pgrep pidof pkill pmap printenv ps pwdx readelf
readlink renice restorecon rtcwake runcon sed sendevent setenforce setsid sha224sum sha384sum sha512sum
split strings stty swapoff swapon sync sysctl tar taskset time timeout top tr traceroute truncate tty
ulimit umount uniq unix2dos unlink unshare uudecode uuencode uuidgen vmstat watch xargs xxd yes zcat
am pm cmd input logcat screencap screenrecord wm svc content monkey bugreport bugreportz ip ping ping6
iptables app_process dalvikvm run-as appops bmgr telecom ime uiautomator service lshal getevent
""".split())


class ShellExit(Exception):
    """``exit N``: ends the line with status N."""

    def __init__(self, code: int):
        self.code = code


class Hangup(Exception):
    """The host closed the command's stream (adbd sends the shell SIGHUP): stop the whole line.

    Not a ``ShellExit``: ``$(...)`` and ``sh -c`` catch ``exit`` but must not catch this.
    """

#: Exit status of a shell killed by SIGHUP (128 + 1), as ``$?`` of a parent would see it.
HANGUP_STATUS = 129


# -- helpers --------------------------------------------------------------------------------
def ok(out: str | bytes = b"") -> Result:
    return (out.encode() if isinstance(out, str) else out), b"", 0


def _err(msg: str, rc: int = 1) -> Result:
    return b"", (msg + "\n").encode(), rc


def _lines(xs: list[str]) -> bytes:
    return "".join(x + "\n" for x in xs).encode()


def _split_opts(argv: list[str], known: str = "") -> tuple[set[str], list[str]]:
    """toybox-style flags: ``-rf`` is ``r`` and ``f``; ``--`` ends them; ``-`` is an operand.

    A flag outside ``known`` (the flags the model implements) is not modelled: ignoring it, or
    reading it as a file name, would be a silently different answer.
    """
    opts: set[str] = set()
    rest: list[str] = []
    it = iter(argv[1:])
    for a in it:
        if a == "--":
            rest.extend(it)
            break
        if a.startswith("-") and len(a) > 1 and not rest:
            bad = sorted(set(a[1:]) - set(known)) if known else []
            if bad:
                raise ShellNotModelled(f"{argv[0]}: option -{''.join(bad)} is not modelled by the virtual phone")
            opts.update(a[1:])
        else:
            rest.append(a)
    return opts, rest


def _mode_string(st: os.stat_result, is_dir: bool) -> str:
    m = st.st_mode
    bits = "".join(c if m & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return ("d" if is_dir else "-") + bits

class ToyboxCommands:
    """The command implementations; see the module docstring."""

    props: dict[str, str]
    storage: PhoneStorage | None
    state: Any
    commands: dict[str, Command]

    # -- files -------------------------------------------------------------------------------
    def _st(self) -> PhoneStorage:
        if self.storage is None:
            raise StorageError(errno.EROFS, "Read-only file system", "/")
        return self.storage

    def _path(self, p: str):
        return self._st().host_path(posixpath.join("/", p))

    def _read_file(self, p: str) -> bytes:
        if p == "/dev/null":
            return b""
        hp = self._path(p)
        if hp.is_dir():
            raise StorageError(errno.EISDIR, "Is a directory", p)
        return hp.read_bytes()

    def _open_for_write(self, p: str, append: bool) -> None:
        if p == "/dev/null":
            return
        hp = self._path(p)
        if hp.is_dir():
            raise StorageError(errno.EISDIR, "Is a directory", p)
        if not hp.parent.is_dir():
            raise StorageError(errno.ENOENT, "No such file or directory", p)
        self._st().check_write(posixpath.join("/", p))
        if self._st().full:
            raise StorageError(errno.ENOSPC, "No space left on device", p)
        with open(hp, "ab" if append else "wb"):
            pass

    def _write_file(self, p: str, data: bytes, append: bool = False) -> None:
        st = self._st()
        st.check_space(len(data))
        with open(self._path(p), "ab" if append else "wb") as f:
            f.write(data)

    def _exists(self, p: str) -> bool:
        try:
            return self._path(p).exists()
        except OSError:
            return False

    # -- commands ----------------------------------------------------------------------------
    def _getprop(self, argv: list[str], stdin: bytes) -> Result:
        if len(argv) > 1:
            default = argv[2] if len(argv) > 2 else ""
            return ok(self.props.get(argv[1], default) + "\n")
        return ok("".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items())))

    def _setprop(self, argv: list[str], stdin: bytes) -> Result:
        if len(argv) != 3:
            return _err("setprop: need 2 arguments")
        key, value = argv[1], argv[2]
        # The shell user may set only debug.* / log.* / persist.log.* style properties; ro.* never changes.
        if key.startswith("ro.") and key in self.props:
            return _err(f"Failed to set property '{key}' to '{value}'.\n"
                        "See dmesg for error reason.")
        if not key.startswith(("debug.", "log.", "persist.log.", "persist.debug.", "ro.")):
            return _err(f"Failed to set property '{key}' to '{value}'.\nSee dmesg for error reason.")
        self.props[key] = value
        return ok()

    def _echo(self, argv: list[str], stdin: bytes) -> Result:
        # mksh's builtin echo: backslash escapes on unless -E (\0nnn octal, \xHH, \c stops).
        args, newline, escapes = argv[1:], True, True
        while args and re.fullmatch(r"-[neE]+", args[0]):
            for ch in args[0][1:]:
                if ch == "n":
                    newline = False
                elif ch == "e":
                    escapes = True
                else:
                    escapes = False
            args = args[1:]
        text = " ".join(args)
        if escapes:
            # mksh drops "\c" and the final newline but prints the rest (toybox's %b stops).
            parts = text.split("\\c")
            text = "".join(_unescape(p, echo=True)[0] for p in parts)
            if len(parts) > 1:
                newline = False
        return ok(text.encode("utf-8", "surrogateescape") + (b"\n" if newline else b""))

    def _printf(self, argv: list[str], stdin: bytes) -> Result:
        """toybox printf: the format is reused until the arguments run out (at least once)."""
        if len(argv) < 2:
            return _err("printf: Needs 1 argument")
        fmt, args = argv[1], argv[2:]
        spec = re.compile(r"%([-+ 0#]*)(\d*)(?:\.(\d*))?([a-zA-Z%])")
        out, err, rc = [], [], 0
        while True:
            consumed = False
            pos = 0
            for m in spec.finditer(fmt):
                text, stop = _unescape(fmt[pos:m.start()])
                out.append(text)
                if stop:
                    return "".join(out).encode("utf-8", "surrogateescape"), _lines(err), rc
                pos = m.end()
                flags, width, prec, conv = m.groups()
                if conv == "%":
                    out.append("%")
                    continue
                if conv not in "sdiouxXcbfeEgG":
                    raise ShellNotModelled(f"printf: %{conv} is not modelled by the virtual phone")
                a = args.pop(0) if args else None
                consumed = consumed or a is not None
                a = a or ""
                if conv == "b":
                    body, stop = _unescape(a, echo=True)
                    out.append(_pad(body[:int(prec)] if prec else body, flags, width))
                    if stop:
                        return "".join(out).encode("utf-8", "surrogateescape"), _lines(err), rc
                    continue
                if conv == "s":
                    out.append(_pad(a[:int(prec)] if prec else a, flags, width))
                    continue
                if conv == "c":
                    out.append(_pad(a[:1] if a else "\0", flags, width))
                    continue
                py_conv = conv.replace("u", "d").replace("i", "d")
                py = f"%{flags}{width}{'.' + prec if prec is not None else ''}{py_conv}"
                try:
                    if conv in "fFeEgG":
                        val: float | int = float(a) if a else 0.0
                    else:
                        val = int(a, 0) if re.fullmatch(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)", a.strip() or "0") else None
                        if val is None:
                            raise ValueError(a)
                except ValueError:
                    err.append(f"printf: invalid number '{a}'")
                    rc, val = 1, 0
                out.append(py % val)
            tail, stop = _unescape(fmt[pos:])
            out.append(tail)
            if stop or not args or not consumed:
                break
        if args:
            err.append("printf: warning: ignoring excess arguments, starting with '" + args[0] + "'")
        return "".join(out).encode("utf-8", "surrogateescape"), _lines(err), rc

    def _date(self, argv: list[str], stdin: bytes) -> Result:
        fmt = next((a[1:] for a in argv[1:] if a.startswith("+")), "%a %b %e %H:%M:%S %Z %Y")
        now = _dt.datetime.now(_dt.timezone.utc)
        fmt = fmt.replace("%N", f"{now.microsecond * 1000:09d}").replace("%Z", "UTC")
        return ok(now.strftime(fmt) + "\n")

    def _cat(self, argv: list[str], stdin: bytes) -> Result:
        _, files = _split_opts(argv, "uvte")
        if not files:
            return ok(stdin)
        out, err, rc = bytearray(), [], 0
        for a in files:
            if a == "-":
                out += stdin
                continue
            try:
                out += self._read_file(a)
            except (OSError, StorageError) as exc:
                err.append(f"cat: {a}: {exc.strerror}")
                rc = 1
        return bytes(out), _lines(err), rc

    def _ls(self, argv: list[str], stdin: bytes) -> Result:
        opts, paths = _split_opts(argv, "lad1ARtrS")
        long, show_all, one_dir = "l" in opts, "a" in opts or "A" in opts, "d" in opts
        out: list[str] = []
        err: list[str] = []
        rc = 0

        def order(p, names: list[str]) -> list[str]:
            names = sorted(names)
            if "S" in opts:  # largest first, ties by name
                names.sort(key=lambda x: -(p / x).lstat().st_size)
            elif "t" in opts:  # newest first
                names.sort(key=lambda x: -(p / x).lstat().st_mtime_ns)
            return names[::-1] if "r" in opts else names

        def listing(p, dev: str, label: str, header: bool) -> None:
            self._st().check_list(dev)
            names = order(p, [x for x in os.listdir(p) if show_all or not x.startswith(".")])
            if "A" not in opts and show_all:
                names = [".", "..", *names]
            if header:
                out.append(f"{label}:")
            if long:  # toybox: 1 KiB blocks of the entries listed
                blocks = sum(-(-(p / x).stat().st_size // 4096) * 4 for x in names if x not in (".", ".."))
                out.append(f"total {blocks}")
            for x in names:
                out.append(self._ls_line(p / x if x not in (".", "..") else p, x, long))
            if "R" in opts:
                for x in names:
                    if x not in (".", "..") and (p / x).is_dir() and not (p / x).is_symlink():
                        out.append("")
                        listing(p / x, posixpath.join(dev, x), posixpath.join(label, x), True)

        args = sorted(paths or ["."])
        files = [a for a in args if not self._is_dir_arg(a) or one_dir]
        dirs = [a for a in args if a not in files]
        multi = len(args) > 1 or "R" in opts
        for a in files:
            try:
                p = self._path(posixpath.normpath(posixpath.join("/", a)))
                if not p.exists():
                    raise StorageError(errno.ENOENT, "No such file or directory", a)
                out.append(self._ls_line(p, a, long))
            except (OSError, StorageError) as exc:
                err.append(f"ls: {a}: {exc.strerror}")
                rc = 1
        for k, a in enumerate(dirs):
            dev = posixpath.normpath(posixpath.join("/", a))
            try:
                if out and (k > 0 or files):
                    out.append("")
                listing(self._path(dev), dev, a, multi)
            except (OSError, StorageError) as exc:
                err.append(f"ls: {a}: {exc.strerror}")
                rc = 1
        return _lines(out), _lines(err), rc

    def _is_dir_arg(self, a: str) -> bool:
        try:
            return self._path(posixpath.normpath(posixpath.join("/", a))).is_dir()
        except (OSError, StorageError):
            return False

    def _ls_line(self, p, name: str, long: bool) -> str:
        if not long:
            return name
        st = p.stat()
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(st.st_mtime))
        return f"{_mode_string(st, p.is_dir())} 1 shell shell {st.st_size} {stamp} {name}"

    def _each_path(self, paths: list[str], op: Callable[[str, str], None],
                   message: Callable[[str, OSError], str]) -> Result:
        """Run ``op(arg, device_path)`` on each path argument, as toybox's file commands do.

        A failure does not stop the others: each ``OSError`` (``StorageError`` included) becomes
        the line ``message(arg, exc)`` on stderr, and the status is 1 if any path failed.
        """
        err, rc = [], 0
        for a in paths:
            try:
                op(a, posixpath.join("/", a))
            except OSError as exc:
                err.append(message(a, exc))
                rc = 1
        return b"", _lines(err), rc

    def _rm(self, argv: list[str], stdin: bytes) -> Result:
        opts, paths = _split_opts(argv, "rRfiv")
        recursive, force = bool(opts & {"r", "R"}), "f" in opts
        if not paths and not force:
            return _err("rm: Needs 1 argument", 1)

        def remove(a: str, dev: str) -> None:
            try:
                self._st().remove(dev, recursive)
            except OSError as exc:
                if not (force and exc.errno == errno.ENOENT):  # -f: a missing path is no error
                    raise

        return self._each_path(paths, remove, lambda a, exc: f"rm: {a}: {exc.strerror}")

    def _mkdir(self, argv: list[str], stdin: bytes) -> Result:
        opts, paths = _split_opts(argv, "pvm")
        parents = "p" in opts
        if not paths:
            return _err("mkdir: Needs 1 argument")

        def mkdir(a: str, dev: str) -> None:
            p = self._path(dev)
            if p.exists():
                if parents and p.is_dir():
                    return
                raise StorageError(errno.EEXIST, "File exists", a)
            self._st().check_write(dev)
            if self._st().full:
                raise StorageError(errno.ENOSPC, "No space left on device", a)
            p.mkdir(parents=parents)

        return self._each_path(paths, mkdir, lambda a, exc: f"mkdir: '{a}': {exc.strerror}")

    def _rmdir(self, argv: list[str], stdin: bytes) -> Result:
        _, paths = _split_opts(argv, "p")

        def rmdir(a: str, dev: str) -> None:
            p = self._path(dev)
            if not p.exists():
                raise StorageError(errno.ENOENT, "No such file or directory", a)
            if not p.is_dir():
                raise StorageError(errno.ENOTDIR, "Not a directory", a)
            self._st().check_write(dev)
            p.rmdir()

        def message(a: str, exc: OSError) -> str:
            # toybox words ENOTEMPTY its own way, whatever the host's strerror says.
            return f"rmdir: {a}: {'Directory not empty' if exc.errno == errno.ENOTEMPTY else exc.strerror}"

        return self._each_path(paths, rmdir, message)

    def _copy_or_move(self, argv: list[str], move: bool) -> Result:
        name = "mv" if move else "cp"
        opts, paths = _split_opts(argv, "rRfpaiv")
        if len(paths) < 2:
            return _err(f"{name}: Needs 2 arguments")
        *srcs, dst = paths
        st = self._st()
        err, rc = [], 0
        try:
            dst_p = self._path(dst)
        except OSError as exc:
            return _err(f"{name}: {dst}: {exc.strerror}")
        if len(srcs) > 1 and not dst_p.is_dir():
            return _err(f"{name}: '{dst}' not directory")
        for s in srcs:
            try:
                sp = self._path(s)
                if not sp.exists():
                    raise StorageError(errno.ENOENT, "No such file or directory", s)
                target_dev = (posixpath.join("/", dst, posixpath.basename(s)) if dst_p.is_dir()
                              else posixpath.join("/", dst))
                st.check_write(target_dev)
                if move:
                    st.check_write(posixpath.join("/", s))
                tp = st.host_path(target_dev)
                if sp.is_dir():
                    if not move and not opts & {"r", "R", "a"}:
                        raise StorageError(errno.EISDIR, "Is a directory", s)
                    if move:
                        os.replace(sp, tp) if not tp.exists() else shutil.move(str(sp), str(tp))
                    else:
                        shutil.copytree(sp, tp, dirs_exist_ok=True)
                else:
                    st.check_space(0 if move else sp.stat().st_size)
                    if move:
                        os.replace(sp, tp)
                    else:
                        shutil.copyfile(sp, tp)
            except (OSError, StorageError) as exc:
                label = "bad" if exc.errno == errno.ENOENT else "'" + s + "'"
                err.append(f"{name}: {label} '{s}': {exc.strerror}" if exc.errno == errno.ENOENT
                           else f"{name}: {label}: {exc.strerror}")
                rc = 1
        return b"", _lines(err), rc

    def _mv(self, argv: list[str], stdin: bytes) -> Result:
        return self._copy_or_move(argv, move=True)

    def _cp(self, argv: list[str], stdin: bytes) -> Result:
        return self._copy_or_move(argv, move=False)

    def _touch(self, argv: list[str], stdin: bytes) -> Result:
        opts, paths = _split_opts(argv, "acm")

        def touch(a: str, dev: str) -> None:
            p = self._path(dev)
            if p.exists():
                if self._st().read_only(dev):
                    raise StorageError(errno.EROFS, "Read-only file system", a)
                os.utime(p)
            elif "c" not in opts:
                self._open_for_write(dev, append=True)
                p.touch()

        return self._each_path(paths, touch, lambda a, exc: f"touch: '{a}': {exc.strerror}")

    def _stat(self, argv: list[str], stdin: bytes) -> Result:
        fmt = None
        args = argv[1:]
        if len(args) >= 2 and args[0] in ("-c", "--format"):
            fmt, args = args[1], args[2:]
        elif args and args[0].startswith("-c"):
            fmt, args = args[0][2:], args[1:]
        out, err, rc = [], [], 0
        for a in args:
            try:
                p = self._path(a)
                st = os.stat(p)
                kind = "directory" if p.is_dir() else "regular file" if st.st_size else "regular empty file"
                vals = {"n": a, "s": str(st.st_size), "Y": str(int(st.st_mtime)), "F": kind,
                        "a": f"{st.st_mode & 0o7777:o}", "A": _mode_string(st, p.is_dir()), "U": "shell",
                        "G": "shell", "u": "2000", "g": "2000", "i": str(st.st_ino), "h": str(st.st_nlink),
                        "b": str(-(-st.st_size // 512)), "B": "512", "%": "%",
                        "y": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(st.st_mtime_ns // 10**9))
                        + f".{st.st_mtime_ns % 10**9:09d} +0000"}
                if fmt is not None:
                    out.append(re.sub(r"%(.)", lambda m, v=vals: v.get(m.group(1), "?"), fmt))
                else:
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(st.st_mtime))
                    out.append(f"  File: {a}\n  Size: {st.st_size}\t Blocks: {vals['b']}\t IO Blocks: 512\t{kind}\n"
                               f"Access: ({vals['a']}/{vals['A']})\tUid: ( 2000/   shell)\tGid: ( 2000/   shell)\n"
                               f"Modify: {stamp}.000000000 +0000")
            except (OSError, StorageError) as exc:
                err.append(f"stat: '{a}': {exc.strerror}")
                rc = 1
        return _lines(out), _lines(err), rc

    def _inputs(self, name: str, files: list[str], stdin: bytes) -> tuple[list[tuple[str, bytes]], list[str]]:
        if not files:
            return [("", stdin)], []
        got, err = [], []
        for a in files:
            try:
                got.append((a, stdin if a == "-" else self._read_file(a)))
            except (OSError, StorageError) as exc:
                err.append(f"{name}: {a}: {exc.strerror}")
        return got, err

    def _wc(self, argv: list[str], stdin: bytes) -> Result:
        opts, files = _split_opts(argv, "lwcm")
        got, err = self._inputs("wc", files, stdin)
        show = [c for c in "lwc" if c in opts] or ["l", "w", "c"]
        out = []
        tot = {"l": 0, "w": 0, "c": 0}
        for name, data in got:
            v = {"l": data.count(b"\n"), "w": len(data.split()), "c": len(data)}
            for k in tot:
                tot[k] += v[k]
            nums = [str(v[c]) for c in show]
            out.append(" ".join(nums) + (f" {name}" if name else ""))
        if len(got) > 1:
            out.append(" ".join(str(tot[c]) for c in show) + " total")
        return _lines(out), _lines(err), 1 if err else 0

    def _count_arg(self, argv: list[str], default: int = 10) -> tuple[int, bool, list[str]]:
        n, from_start, files = default, False, []
        it = iter(argv[1:])
        for a in it:
            if a == "-n":
                a = next(it, str(default))
                from_start = a.startswith("+")
                n = int(a.lstrip("+-"))
            elif re.fullmatch(r"-n[+-]?\d+", a):
                from_start = a[2:].startswith("+")
                n = int(a[2:].lstrip("+-"))
            elif re.fullmatch(r"-\d+", a):
                n = int(a[1:])
            else:
                files.append(a)
        return n, from_start, files

    def _some_lines(self, name: str, argv: list[str], stdin: bytes,
                    pick: Callable[[list[bytes], int, bool], list[bytes]]) -> Result:
        """``head`` and ``tail``: ``pick(lines, n, from_start)`` of each input, in order."""
        try:
            n, from_start, files = self._count_arg(argv)
        except ValueError:
            return _err(f"{name}: bad -n")
        got, err = self._inputs(name, files, stdin)
        out = b"".join(b"".join(pick(data.splitlines(keepends=True), n, from_start)) for _, data in got)
        return out, _lines(err), 1 if err else 0

    def _head(self, argv: list[str], stdin: bytes) -> Result:
        return self._some_lines("head", argv, stdin, lambda lines, n, _: lines[:n])

    def _tail(self, argv: list[str], stdin: bytes) -> Result:
        # -n +N: from line N on; -n N: the last N (none for 0).
        return self._some_lines("tail", argv, stdin, lambda lines, n, from_start: (
            lines[max(n - 1, 0):] if from_start else (lines[-n:] if n else [])))

    def _grep(self, argv: list[str], stdin: bytes) -> Result:
        pats: list[str] = []
        rest_argv = [argv[0]]
        it = iter(argv[1:])
        for a in it:  # -e PATTERN, any number of times
            if a == "-e":
                pats.append(next(it, ""))
            elif a.startswith("-e") and len(a) > 2:
                pats.append(a[2:])
            else:
                rest_argv.append(a)
        opts, rest = _split_opts(rest_argv, "ivcqnFEwlho")
        if not pats:
            if not rest:
                return _err("grep: Needs 1 argument", 2)
            pats, rest = [rest[0]], rest[1:]
        files = rest
        pat = "|".join(f"(?:{re.escape(p) if 'F' in opts else _bre_to_py(p, 'E' in opts)})" for p in pats)
        flags = re.IGNORECASE if "i" in opts else 0
        try:
            rx = re.compile(pat, flags)
        except re.error as exc:
            return _err(f"grep: bad regex '{pats[0]}': {exc}", 2)
        if "w" in opts:
            rx = re.compile(rf"(?<![\w])(?:{pat})(?![\w])", flags)
        got, err = self._inputs("grep", files, stdin)
        out, hits = [], 0
        for name, data in got:
            n_file = 0
            for k, raw in enumerate(data.decode("utf-8", "surrogateescape").splitlines(), 1):
                found = bool(rx.search(raw))
                if found != ("v" in opts):
                    hits += 1
                    n_file += 1
                    if "c" in opts or "q" in opts or "l" in opts:
                        continue
                    prefix = ((f"{name}:" if len(files) > 1 and "h" not in opts else "")
                              + (f"{k}:" if "n" in opts else ""))
                    if "o" in opts and "v" not in opts:
                        out.extend(prefix + m.group(0) for m in rx.finditer(raw) if m.group(0))
                    elif "o" not in opts:
                        out.append(prefix + raw)
            if "c" in opts:
                out.append((f"{name}:" if len(files) > 1 else "") + str(n_file))
            if "l" in opts and n_file:
                out.append(name or "(standard input)")
        if "q" in opts:
            return b"", b"", 0 if hits else 1
        rc = 2 if err else (0 if hits else 1)
        return "".join(x + "\n" for x in out).encode("utf-8", "surrogateescape"), _lines(err), rc

    def _sleep(self, argv: list[str], stdin: bytes) -> Result:
        try:
            secs = sum(float(a.rstrip("s")) for a in argv[1:])
        except ValueError:
            return _err(f"sleep: invalid number '{argv[1] if len(argv) > 1 else ''}'")
        if len(argv) < 2:
            return _err("sleep: Needs 1 argument")
        # Waits on the hang-up event, not a bare sleep: a host that closes the stream ends it.
        if self.hangup_event().wait(secs):
            raise Hangup()
        return ok()

    def _cd(self, argv: list[str], stdin: bytes) -> Result:
        return _err(f"{SH}: cd: the virtual phone's shell stays in / (use absolute paths)", 2)

    def _df(self, argv: list[str], stdin: bytes) -> Result:
        opts, paths = _split_opts(argv, "hk")
        st = self._st()
        total_k = st.capacity_bytes // 1024
        free_k = st.free_bytes() // 1024
        used_k = total_k - free_k
        pct = 100 * used_k // max(total_k, 1)
        human = "h" in opts
        head = ("Filesystem      Size Used Avail Use% Mounted on\n" if human
                else "Filesystem      1K-blocks    Used Available Use% Mounted on\n")

        def row(dev: str, t: int, u: int, f: int, p: int, mnt: str) -> str:
            if human:
                return f"{dev} {_human(t * 1024)} {_human(u * 1024)} {_human(f * 1024)} {p}% {mnt}"
            return f"{dev} {t} {u} {f} {p}% {mnt}"

        rows = [row("/dev/fuse", total_k, used_k, free_k, pct, "/storage/emulated")]
        if not paths or any(canonical(posixpath.join("/", p)).startswith("/system") for p in paths):
            rows.insert(0, row("/dev/block/dm-0", 2097152, 2097152, 0, 100, "/"))
        return ok(head + "\n".join(rows) + "\n")

    def _du(self, argv: list[str], stdin: bytes) -> Result:
        """toybox du: 1 KiB units of 4 KiB blocks; every folder (post-order) unless -s; -h human."""
        opts, paths = _split_opts(argv, "skh")
        out, err, rc = [], [], 0

        def size(p) -> int:
            return -(-p.stat().st_size // 4096) * 4

        def walk(p, label: str) -> int:
            if not p.is_dir():
                return size(p)
            total = 4
            for name in sorted(os.listdir(p)):
                total += walk(p / name, posixpath.join(label, name)) if (p / name).is_dir() else size(p / name)
            if "s" not in opts or label == top:
                out.append(f"{_human(total * 1024) if 'h' in opts else total}\t{label}")
            return total

        for top in paths or ["."]:
            try:
                p = self._path(top)
                if not p.exists():
                    raise StorageError(errno.ENOENT, "No such file or directory", top)
                walk(p, top)
            except (OSError, StorageError) as exc:
                err.append(f"du: {top}: {exc.strerror}")
                rc = 1
        return _lines(out), _lines(err), rc

    # -- text tools (toybox) -------------------------------------------------------------
    def _basename(self, argv: list[str], stdin: bytes) -> Result:
        if len(argv) < 2:
            return _err("basename: Needs 1 argument")
        name = argv[1].rstrip("/").rsplit("/", 1)[-1] or "/"
        if len(argv) > 2 and name.endswith(argv[2]) and name != argv[2]:
            name = name[: -len(argv[2])]
        return ok(name + "\n")

    def _dirname(self, argv: list[str], stdin: bytes) -> Result:
        if len(argv) < 2:
            return _err("dirname: Needs 1 argument")
        return ok("".join((posixpath.dirname(a.rstrip("/")) or ".") + "\n" for a in argv[1:]))

    def _seq(self, argv: list[str], stdin: bytes) -> Result:
        nums = argv[1:]
        if not 1 <= len(nums) <= 3 or not all(re.fullmatch(r"-?\d+", n) for n in nums):
            raise ShellNotModelled("seq: only whole FIRST [INCREMENT] LAST is modelled by the virtual phone")
        v = [int(n) for n in nums]
        first, step, last = (1, 1, v[0]) if len(v) == 1 else (v[0], 1, v[1]) if len(v) == 2 else v
        if step == 0:
            return _err("seq: increment must not be 0")
        return ok("".join(f"{k}\n" for k in range(first, last + (1 if step > 0 else -1), step)))

    def _lines_of(self, name: str, argv: list[str], stdin: bytes, known: str = ""):
        opts, files = _split_opts(argv, known)
        got, err = self._inputs(name, files, stdin)
        lines = [ln for _, data in got for ln in data.decode("utf-8", "surrogateescape").splitlines()]
        return opts, lines, err

    def _text(self, lines: list[str], err: list[str]) -> Result:
        return "".join(x + "\n" for x in lines).encode("utf-8", "surrogateescape"), _lines(err), 1 if err else 0

    def _sort(self, argv: list[str], stdin: bytes) -> Result:
        opts, lines, err = self._lines_of("sort", argv, stdin, "rnu")
        if "n" in opts:
            def key(x: str) -> tuple[float, str]:
                m = re.match(r"\s*-?\d+(\.\d*)?", x)
                return (float(m.group(0)) if m else 0.0, x)
            lines.sort(key=key)
        else:
            lines.sort(key=lambda x: x.encode("utf-8", "surrogateescape"))  # the C locale: bytes
        if "u" in opts:
            lines = [x for k, x in enumerate(lines) if k == 0 or x != lines[k - 1]]
        return self._text(lines[::-1] if "r" in opts else lines, err)

    def _tac(self, argv: list[str], stdin: bytes) -> Result:
        _, lines, err = self._lines_of("tac", argv, stdin)
        return self._text(lines[::-1], err)

    def _rev(self, argv: list[str], stdin: bytes) -> Result:
        _, lines, err = self._lines_of("rev", argv, stdin)
        return self._text([x[::-1] for x in lines], err)

    def _cut(self, argv: list[str], stdin: bytes) -> Result:
        """cut -c LIST or -d D -f LIST (LIST: N, N-M, N-, -M, comma-separated)."""
        args, mode, lst, delim = list(argv[1:]), None, None, "\t"
        files = []
        while args:
            a = args.pop(0)
            if a in ("-c", "-f", "-d") and args:
                v = args.pop(0)
            elif re.fullmatch(r"-[cfd].+", a):
                a, v = a[:2], a[2:]
            elif a.startswith("-") and a != "-":
                raise ShellNotModelled(f"cut: option {a} is not modelled by the virtual phone")
            else:
                files.append(a)
                continue
            if a == "-d":
                delim = v
            else:
                mode, lst = a[1], v
        if mode is None or lst is None or len(delim) != 1:
            return _err("cut: Needs -c or -f LIST (and a one-character -d)")
        ranges = []
        for part in lst.split(","):
            m = re.fullmatch(r"(\d*)-?(\d*)", part)
            if not m or part in ("", "-"):
                return _err(f"cut: bad list '{lst}'")
            lo = int(m.group(1) or 1)
            hi = int(m.group(2)) if m.group(2) else (lo if "-" not in part else 10**9)
            ranges.append((lo, hi))
        _, lines, err = self._lines_of("cut", ["cut", *files], stdin)

        def pick(items: list[str]) -> list[str]:
            return [x for k, x in enumerate(items, 1) if any(lo <= k <= hi for lo, hi in ranges)]

        out = []
        for ln in lines:
            if mode == "c":
                out.append("".join(pick(list(ln))))
            else:
                out.append(delim.join(pick(ln.split(delim))) if delim in ln else ln)
        return self._text(out, err)

    def _tee(self, argv: list[str], stdin: bytes) -> Result:
        opts, files = _split_opts(argv, "a")
        err, rc = [], 0
        for f in files:
            try:
                self._open_for_write(f, append="a" in opts)
                self._write_file(f, stdin, append=True)
            except (OSError, StorageError) as exc:
                err.append(f"tee: {f}: {exc.strerror}")
                rc = 1
        return stdin, _lines(err), rc

    def _hashsum(self, algo, name: str) -> Command:
        def run(argv: list[str], stdin: bytes) -> Result:
            _, files = _split_opts(argv, "bc")
            out, err, rc = [], [], 0
            for a in files or ["-"]:
                try:
                    h = algo()
                    if a == "-":
                        h.update(stdin)
                    else:
                        p = self._path(a)
                        if p.is_dir():
                            raise StorageError(errno.EISDIR, "Is a directory", a)
                        with open(p, "rb") as f:
                            while chunk := f.read(1 << 20):
                                h.update(chunk)
                    out.append(f"{h.hexdigest()}  {a}")
                except (OSError, StorageError) as exc:
                    err.append(f"{name}: {a}: {exc.strerror}")
                    rc = 1
            return _lines(out), _lines(err), rc

        return run

    def _id(self, argv: list[str], stdin: bytes) -> Result:
        if "-u" in argv:
            return ok("2000\n")
        return ok("uid=2000(shell) gid=2000(shell) groups=2000(shell),1004(input),1007(log),1011(adb),"
                   "1015(sdcard_rw),1028(sdcard_r),1078(ext_data_rw),1079(ext_obb_rw),3001(net_bt_admin),"
                   "3002(net_bt),3003(inet),3006(net_bw_stats),3009(readproc),3011(uhid),3012(readtracefs) "
                   "context=u:r:shell:s0\n")

    def _uname(self, argv: list[str], stdin: bytes) -> Result:
        vals = {"s": "Linux", "n": "localhost", "r": "6.1.75-android14-11", "v": "#1 SMP PREEMPT",
                "m": "aarch64", "o": "Toybox"}
        opts, _ = _split_opts(argv)
        if "a" in opts:
            keys = "snrvmo"
        else:
            keys = "".join(k for k in "snrvmo" if k in opts) or "s"
        return ok(" ".join(vals[k] for k in keys) + "\n")

    def _uptime(self, argv: list[str], stdin: bytes) -> Result:
        up = (time.monotonic_ns() - self.state.boot_ns) / 1e9
        return ok(f" {time.strftime('%H:%M:%S', time.gmtime())} up {int(up // 60)} min,  0 users,  "
                   "load average: 0.50, 0.40, 0.30\n")

    def _exit(self, argv: list[str], stdin: bytes) -> Result:
        raise ShellExit(int(argv[1]) & 0xFF if len(argv) > 1 and argv[1].lstrip("-").isdigit() else 0)

    def _sh(self, argv: list[str], stdin: bytes) -> Result:
        if len(argv) >= 3 and argv[1] == "-c":
            r = self.run(argv[2], stdin)
        elif len(argv) == 1:  # a script on stdin
            r = self.run(stdin.decode("utf-8", "surrogateescape"))
        else:
            return _err(f"{SH}: running script files is not modelled by the virtual phone", 2)
        return r.stdout, r.stderr, r.rc

    def _which(self, argv: list[str], stdin: bytes) -> Result:
        found = [f"/system/bin/{a}" for a in argv[1:] if a in self.commands]
        return _lines(found), b"", 0 if len(found) == len(argv[1:]) else 1

    def _command(self, argv: list[str], stdin: bytes) -> Result:
        if argv[1:2] == ["-v"]:
            # mksh: a builtin is named as itself, a program by its path.
            names = argv[2:]
            found = [a if a in MKSH_BUILTINS else f"/system/bin/{a}" for a in names if a in self.commands]
            return _lines(found), b"", 0 if len(found) == len(names) else 1
        if len(argv) > 1:
            fn = self.commands.get(argv[1])
            if fn is None:
                return _err(f"{SH}: {argv[1]}: inaccessible or not found", 127)
            return fn(argv[1:], stdin)
        return ok()

    def _test(self, argv: list[str], stdin: bytes) -> Result:
        args = argv[1:]
        if argv[0] == "[":
            if not args or args[-1] != "]":
                return _err("[: missing ]", 2)
            args = args[:-1]
        neg = False
        if args and args[0] == "!":
            neg, args = True, args[1:]
        try:
            ok = self._test_expr(args)
        except ValueError as exc:
            return _err(f"{argv[0]}: {exc}", 2)
        return b"", b"", 0 if ok != neg else 1

    def _test_expr(self, a: list[str]) -> bool:
        if not a:
            return False
        if len(a) == 1:
            return a[0] != ""
        if len(a) == 2:
            op, x = a
            if op == "-z":
                return x == ""
            if op == "-n":
                return x != ""
            if op in ("-e", "-f", "-d", "-s", "-r", "-w"):
                if not self._exists(x):
                    return False
                p = self._path(x)
                return {"-e": True, "-r": True, "-f": p.is_file(), "-d": p.is_dir(),
                        "-s": p.is_file() and p.stat().st_size > 0,
                        "-w": not self._st().read_only(posixpath.join("/", x))}[op]
            raise ValueError(f"unknown operand {op}")
        if len(a) == 3:
            x, op, y = a
            if op in ("=", "=="):
                return x == y
            if op == "!=":
                return x != y
            ints = {"-eq": int.__eq__, "-ne": int.__ne__, "-lt": int.__lt__, "-le": int.__le__,
                    "-gt": int.__gt__, "-ge": int.__ge__}
            if op in ints:
                return ints[op](int(x), int(y))
        raise ValueError("expression not modelled by the virtual phone")

    def _dumpsys(self, argv: list[str], stdin: bytes) -> Result:
        s = self.state
        if argv[1:2] == ["battery"]:
            return ok(
                "Current Battery Service state:\n"
                f"  AC powered: false\n  USB powered: {str(s.plugged_usb).lower()}\n"
                f"  status: {2 if s.plugged_usb else 3}\n  health: 2\n  present: true\n"
                f"  level: {s.battery_level}\n  scale: 100\n  temperature: {s.battery_temp_dc}\n")
        if argv[1:2] == ["thermalservice"]:
            return ok(f"IsStatusOverride: false\nThermal Status: {s.thermal_status}\n")
        if argv[1:2] == ["power"]:
            return ok("mWakefulness=Awake\nmStayOn=true\n")
        if len(argv) == 1 or argv[1] == "-l":
            return ok("Currently running services:\n  battery\n  media.camera\n  power\n  thermalservice\n")
        if argv[1] == "media.camera":
            return ok("== Service global info: ==\n\nNumber of camera devices: 1\n"
                       "Number of normal camera devices: 1\n")
        return _err(f"Can't find service: {argv[1]}")

    def _settings(self, argv: list[str], stdin: bytes) -> Result:
        if len(argv) == 4 and argv[1] == "get":
            key = f"{argv[2]}/{argv[3]}"
            # What a freshly set-up phone with USB debugging on answers; anything else is null.
            defaults = {"system/screen_off_timeout": str(self.state.screen_off_timeout_ms),
                        "global/stay_on_while_plugged_in": str(self.state.stay_on_while_plugged),
                        "global/adb_enabled": "1", "global/development_settings_enabled": "1",
                        "global/device_provisioned": "1", "secure/user_setup_complete": "1",
                        "global/airplane_mode_on": "0", "global/auto_time": "1", "global/auto_time_zone": "1",
                        "system/screen_brightness_mode": "1", "system/screen_brightness": "102",
                        "system/accelerometer_rotation": "1",
                        "global/package_verifier_enable": "1", "global/verifier_verify_adb_installs": "1",
                        "global/window_animation_scale": "1.0", "global/transition_animation_scale": "1.0",
                        "global/animator_duration_scale": "1.0", "secure/location_mode": "3"}
            return ok(self.state.settings.get(key, defaults.get(key, "null")) + "\n")
        if len(argv) == 5 and argv[1] == "put":
            self.state.settings[f"{argv[2]}/{argv[3]}"] = argv[4]
            return ok()
        return _err("usage: settings get|put NAMESPACE KEY [VALUE]", 255)

_STDIN_READERS = {"cat", "wc", "head", "tail", "sha256sum", "md5sum", "sha1sum", "grep", "sh", "sort", "tac", "rev",
                  "cut", "tee"}


def reads_stdin(argv: list[str]) -> bool:
    """Whether the command would read its standard input (no file operands, or ``-``)."""
    name = argv[0].rsplit("/", 1)[-1]
    if name not in _STDIN_READERS:
        return False
    operands = [a for a in argv[1:] if a == "-" or not a.startswith("-")]
    if name == "sh":
        return "-c" not in argv
    if name == "tee":
        return True
    if name == "cut":
        return _cut_reads_stdin(argv)
    if name == "grep":
        operands = operands[1:] if "-e" not in argv else operands
    if name in ("head", "tail"):
        operands = [a for a in operands if not a.lstrip("+").isdigit()]
    return not operands or "-" in operands


def _human(n: int) -> str:
    """toybox's human_readable: 1023 -> "1023", 1536 -> "1.5K", 32768 -> "32K" (units of 1024)."""
    units = "BKMGTPE"
    k = 0
    v = float(n)
    while v >= 1024 and k < len(units) - 1:
        v /= 1024
        k += 1
    if k == 0:
        return str(n)
    return f"{v:.1f}{units[k]}" if v < 10 and v != int(v) else f"{int(round(v))}{units[k]}"


def _pad(text: str, flags: str, width: str) -> str:
    w = int(width) if width else 0
    return text.ljust(w) if "-" in flags else text.rjust(w)


def _unescape(text: str, echo: bool = False) -> tuple[str, bool]:
    """``echo`` / ``printf`` escapes; returns (text, stop) where ``\\c`` stops all output.

    Octal is ``\\0nnn`` for echo (and printf's ``%b``), ``\\nnn`` in a printf format.
    """
    out, i = [], 0
    simple = {"n": "\n", "t": "\t", "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "r": "\r", "v": "\v",
              "e": "\x1b"}
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 >= len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "c":
            return "".join(out), True
        if nxt in simple:
            out.append(simple[nxt])
            i += 2
        elif nxt == "0" or (nxt in "1234567" and not echo):
            m = re.match(r"0[0-7]{0,3}" if echo else r"[0-7]{1,3}", text[i + 1:])
            digits = m.group(0) if m else "0"
            out.append(chr(int(digits, 8) & 0xFF))
            i += 1 + len(digits)
        elif nxt == "x":
            m = re.match(r"[0-9a-fA-F]{1,2}", text[i + 2:])
            if m:
                out.append(chr(int(m.group(0), 16)))
                i += 2 + len(m.group(0))
            else:
                out.append("\\x")
                i += 2
        else:
            out.append("\\" + nxt)
            i += 2
    return "".join(out), False


def _bre_to_py(pat: str, extended: bool) -> str:
    """A grep basic regular expression as a Python one (``\\|`` ``\\(`` ``\\)`` ``\\+`` in BRE)."""
    if extended:
        return pat
    out, i = [], 0
    while i < len(pat):
        c = pat[i]
        if c == "\\" and i + 1 < len(pat) and pat[i + 1] in "|()+?{}":
            out.append(pat[i + 1])
            i += 2
        elif c in "|()+?{}":
            out.append("\\" + c)
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _cut_reads_stdin(argv: list[str]) -> bool:
    """cut reads stdin unless a file operand follows its -c/-d/-f values."""
    args, files = list(argv[1:]), []
    while args:
        a = args.pop(0)
        if a in ("-c", "-f", "-d"):
            args[:1] = []
        elif not a.startswith("-") or a == "-":
            files.append(a)
    return not files or "-" in files
