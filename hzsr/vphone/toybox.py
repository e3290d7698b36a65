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

from hzsr.core.errors import StorageError
from hzsr.vphone.storage import PhoneStorage, canonical

Result = tuple[bytes, bytes, int]
Command = Callable[[list[str], bytes], Result]
SH = "/system/bin/sh"


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
    """toybox-style flags: ``-rf`` is ``r`` and ``f``; ``--`` ends them; ``-`` is an operand."""
    opts: set[str] = set()
    rest: list[str] = []
    it = iter(argv[1:])
    for a in it:
        if a == "--":
            rest.extend(it)
            break
        if a.startswith("-") and len(a) > 1 and not rest and (not known or set(a[1:]) <= set(known)):
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
        args, newline, escapes = argv[1:], True, False
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
            text, stop = _unescape(text)
            if stop:
                newline = False
        return ok(text.encode("utf-8", "surrogateescape") + (b"\n" if newline else b""))

    def _printf(self, argv: list[str], stdin: bytes) -> Result:
        if len(argv) < 2:
            return _err("printf: Needs 1 argument")
        fmt, _ = _unescape(argv[1])
        args = argv[2:]
        try:
            conv = re.findall(r"%[-+ 0#]*\d*(?:\.\d+)?([sdifxXoc%])", fmt)
            vals = []
            for ch in (c for c in conv if c != "%"):
                a = args.pop(0) if args else ""
                vals.append(int(a or 0) if ch in "dixXoc" else float(a or 0) if ch == "f" else a)
            return ok(fmt % tuple(vals))
        except (ValueError, TypeError) as exc:
            return _err(f"printf: {exc}")

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
        opts, paths = _split_opts(argv, "lad1AhRtrsSnF")
        long, show_all, one_dir = "l" in opts, "a" in opts or "A" in opts, "d" in opts
        out: list[str] = []
        err: list[str] = []
        rc = 0
        dirs_first = sorted(paths or ["."])
        multi = len(dirs_first) > 1
        for a in dirs_first:
            dev = posixpath.normpath(posixpath.join("/", a))
            try:
                p = self._path(dev)
                if not p.exists():
                    raise StorageError(errno.ENOENT, "No such file or directory", a)
                if p.is_dir() and not one_dir:
                    self._st().check_list(dev)
                    names = sorted(x for x in os.listdir(p) if show_all or not x.startswith("."))
                    if "A" not in opts and show_all:
                        names = [".", "..", *names]
                    if multi:
                        out.append(f"{a}:")
                    if long:  # toybox: 1 KiB blocks of the entries listed
                        blocks = sum(-(-(p / x).stat().st_size // 4096) * 4 for x in names if x not in (".", ".."))
                        out.append(f"total {blocks}")
                    for x in names:
                        out.append(self._ls_line(p / x if x not in (".", "..") else p, x, long))
                    if multi:
                        out.append("")
                else:
                    out.append(self._ls_line(p, a, long))
            except (OSError, StorageError) as exc:
                err.append(f"ls: {a}: {exc.strerror}")
                rc = 1
        if multi and out and out[-1] == "":
            out.pop()
        return _lines(out), _lines(err), rc

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
        opts, rest = _split_opts(argv, "ivcqnFEwlho")
        if not rest:
            return _err("grep: Needs 1 argument", 2)
        pat, files = rest[0], rest[1:]
        flags = re.IGNORECASE if "i" in opts else 0
        try:
            rx = re.compile(re.escape(pat) if "F" in opts else _bre_to_py(pat, "E" in opts), flags)
        except re.error as exc:
            return _err(f"grep: bad regex '{pat}': {exc}", 2)
        got, err = self._inputs("grep", files, stdin)
        out, hits = [], 0
        for name, data in got:
            n_file = 0
            for k, raw in enumerate(data.decode("utf-8", "surrogateescape").splitlines(), 1):
                found = bool(rx.search(raw))
                if "w" in opts:
                    found = bool(re.search(rf"\b(?:{rx.pattern})\b", raw, flags))
                if found != ("v" in opts):
                    hits += 1
                    n_file += 1
                    if "c" in opts or "q" in opts or "l" in opts:
                        continue
                    prefix = ((f"{name}:" if len(files) > 1 and "h" not in opts else "")
                              + (f"{k}:" if "n" in opts else ""))
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
        st = self._st()
        total_k = st.capacity_bytes // 1024
        free_k = st.free_bytes() // 1024
        used_k = total_k - free_k
        pct = 100 * used_k // max(total_k, 1)
        head = "Filesystem      1K-blocks    Used Available Use% Mounted on\n"
        rows = [f"/dev/fuse {total_k} {used_k} {free_k} {pct}% /storage/emulated"]
        _, paths = _split_opts(argv, "hkPa")
        if not paths or any(canonical(posixpath.join("/", p)).startswith("/system") for p in paths):
            rows.insert(0, "/dev/block/dm-0 2097152 2097152 0 100% /")
        return ok(head + "\n".join(rows) + "\n")

    def _du(self, argv: list[str], stdin: bytes) -> Result:
        opts, paths = _split_opts(argv, "skhacx")
        out, err, rc = [], [], 0
        for a in paths or ["."]:
            try:
                p = self._path(a)
                if not p.exists():
                    raise StorageError(errno.ENOENT, "No such file or directory", a)
                files = [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file()]
                kb = sum(-(-f.stat().st_size // 4096) * 4 for f in files) + (0 if p.is_file() else 4)
                out.append(f"{kb}\t{a}")
            except (OSError, StorageError) as exc:
                err.append(f"du: {a}: {exc.strerror}")
                rc = 1
        return _lines(out), _lines(err), rc

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
            return self._which(["which", *argv[2:]], stdin)
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
                        "system/screen_brightness_mode": "1", "system/accelerometer_rotation": "1",
                        "global/package_verifier_enable": "1", "global/verifier_verify_adb_installs": "1",
                        "global/window_animation_scale": "1.0", "global/transition_animation_scale": "1.0",
                        "global/animator_duration_scale": "1.0", "secure/location_mode": "3"}
            return ok(self.state.settings.get(key, defaults.get(key, "null")) + "\n")
        if len(argv) == 5 and argv[1] == "put":
            self.state.settings[f"{argv[2]}/{argv[3]}"] = argv[4]
            return ok()
        return _err("usage: settings get|put NAMESPACE KEY [VALUE]", 255)

_STDIN_READERS = {"cat", "wc", "head", "tail", "sha256sum", "md5sum", "sha1sum", "grep", "sh"}


def reads_stdin(argv: list[str]) -> bool:
    """Whether the command would read its standard input (no file operands, or ``-``)."""
    name = argv[0].rsplit("/", 1)[-1]
    if name not in _STDIN_READERS:
        return False
    operands = [a for a in argv[1:] if a == "-" or not a.startswith("-")]
    if name == "sh":
        return "-c" not in argv
    if name == "grep":
        operands = operands[1:]
    if name in ("head", "tail"):
        operands = [a for a in operands if not a.lstrip("+").isdigit()]
    return not operands or "-" in operands


def _unescape(text: str) -> tuple[str, bool]:
    """``echo -e`` / ``printf`` escapes; returns (text, stop) where ``\\c`` stops all output."""
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
        elif nxt == "0" or nxt in "1234567":
            m = re.match(r"0?[0-7]{1,3}", text[i + 1:])
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
