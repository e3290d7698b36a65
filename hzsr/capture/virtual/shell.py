"""A small POSIX-ish shell for the virtual phone: ``;``, ``&&``, ``||`` and ``$?``.

It knows what hosts send a phone: ``getprop``, ``echo``, ``true``/``false``, ``date``, ``cat``,
``ls``, ``rm``, ``mkdir``, ``sha256sum``, ``df``, ``dumpsys battery`` and ``settings get``, plus
adbutils' ``shell2`` wrapper (``CMD; echo X4EXIT:$?``). Commands are functions
``(argv) -> (stdout, stderr, rc)`` over the phone's storage.
"""

from __future__ import annotations

import hashlib
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hzsr.capture.virtual.storage import PhoneStorage, StorageError

Result = tuple[bytes, bytes, int]
Command = Callable[[list[str]], Result]


@dataclass
class ShellResult:
    stdout: bytes
    stderr: bytes
    rc: int
    combined: bytes  # stdout and stderr in the order written, as a v1 (pty) shell shows them

_SPLIT = re.compile(r"""(;|&&|\|\|)(?=(?:[^'"]|'[^']*'|"[^"]*")*$)""")


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


def _ok(out: str | bytes = b"") -> Result:
    return (out.encode() if isinstance(out, str) else out), b"", 0


def _err(msg: str, rc: int = 1) -> Result:
    return b"", (msg + "\n").encode(), rc


class VirtualShell:
    def __init__(self, props: dict[str, str], storage: PhoneStorage | None = None,
                 state: DeviceState | None = None):
        self.props = props
        self.storage = storage
        self.state = state or DeviceState()
        self.commands: dict[str, Command] = {
            "getprop": self._getprop,
            "echo": lambda a: _ok(" ".join(a[1:]) + "\n"),
            "true": lambda a: _ok(),
            "false": lambda a: (b"", b"", 1),
            "date": self._date,
            "cat": self._cat,
            "ls": self._ls,
            "rm": self._rm,
            "mkdir": self._mkdir,
            "sha256sum": self._sha256sum,
            "df": self._df,
            "dumpsys": self._dumpsys,
            "settings": self._settings,
        }

    # -- commands ------------------------------------------------------------------------
    def _getprop(self, argv: list[str]) -> Result:
        if len(argv) > 1:
            return _ok(self.props.get(argv[1], "") + "\n")
        return _ok("".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items())))

    def _date(self, argv: list[str]) -> Result:
        if len(argv) > 1 and argv[1] == "+%s":
            return _ok(f"{int(time.time())}\n")
        return _ok(time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()) + "\n")

    def _files(self, argv: list[str]) -> tuple[list[str], list[str]]:
        opts = [a for a in argv[1:] if a.startswith("-") and len(a) > 1]
        return opts, [a for a in argv[1:] if a not in opts]

    def _need_storage(self) -> PhoneStorage:
        if self.storage is None:
            raise StorageError(30, "Read-only file system")
        return self.storage

    def _cat(self, argv: list[str]) -> Result:
        out, err, rc = bytearray(), bytearray(), 0
        for a in self._files(argv)[1]:
            try:
                out += self._need_storage().host_path(a).read_bytes()
            except (OSError, StorageError) as exc:
                err += f"cat: {a}: {exc.strerror}\n".encode()
                rc = 1
        return bytes(out), bytes(err), rc

    def _ls(self, argv: list[str]) -> Result:
        opts, paths = self._files(argv)
        long = any("l" in o for o in opts)
        out, err, rc = [], [], 0
        for a in paths or ["/data/local/tmp"]:
            try:
                p = self._need_storage().host_path(a)
                if not p.exists():
                    raise StorageError(2, "No such file or directory")
                entries = sorted(p.iterdir()) if p.is_dir() else [p]
                for e in entries:
                    name = e.name if p.is_dir() else a
                    if long:
                        st = e.stat()
                        kind = "d" if e.is_dir() else "-"
                        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(st.st_mtime))
                        out.append(f"{kind}rw-rw---- 1 u0_a123 u0_a123 {st.st_size} {stamp} {name}")
                    else:
                        out.append(name)
            except (OSError, StorageError) as exc:
                err.append(f"ls: {a}: {exc.strerror}")
                rc = 1
        return "".join(x + "\n" for x in out).encode(), "".join(x + "\n" for x in err).encode(), rc

    def _rm(self, argv: list[str]) -> Result:
        opts, paths = self._files(argv)
        recursive = any("r" in o or "R" in o for o in opts)
        force = any("f" in o for o in opts)
        err, rc = [], 0
        for a in paths:
            try:
                self._need_storage().remove(a, recursive)
            except (OSError, StorageError) as exc:
                if force and exc.errno == 2:
                    continue
                err.append(f"rm: {a}: {exc.strerror}")
                rc = 1
        return b"", "".join(x + "\n" for x in err).encode(), rc

    def _mkdir(self, argv: list[str]) -> Result:
        opts, paths = self._files(argv)
        parents = any("p" in o for o in opts)
        for a in paths:
            try:
                st = self._need_storage()
                if st.full:
                    raise StorageError(28, "No space left on device")
                st.host_path(a).mkdir(parents=parents, exist_ok=parents)
            except (OSError, StorageError) as exc:
                return _err(f"mkdir: '{a}': {exc.strerror}")
        return _ok()

    def _sha256sum(self, argv: list[str]) -> Result:
        out, err, rc = [], [], 0
        for a in self._files(argv)[1]:
            try:
                h = hashlib.sha256()
                with open(self._need_storage().host_path(a), "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                out.append(f"{h.hexdigest()}  {a}")
            except (OSError, StorageError) as exc:
                err.append(f"sha256sum: {a}: {exc.strerror}")
                rc = 1
        return "".join(x + "\n" for x in out).encode(), "".join(x + "\n" for x in err).encode(), rc

    def _df(self, argv: list[str]) -> Result:
        st = self._need_storage()
        total_k = st.capacity_bytes // 1024
        free_k = st.free_bytes() // 1024
        used_k = total_k - free_k
        pct = 100 * used_k // max(total_k, 1)
        head = "Filesystem      1K-blocks    Used Available Use% Mounted on\n"
        return _ok(head + f"/dev/fuse {total_k} {used_k} {free_k} {pct}% /storage/emulated\n")

    def _dumpsys(self, argv: list[str]) -> Result:
        s = self.state
        if argv[1:2] == ["battery"]:
            return _ok(
                "Current Battery Service state:\n"
                f"  AC powered: false\n  USB powered: {str(s.plugged_usb).lower()}\n"
                f"  status: {2 if s.plugged_usb else 3}\n  health: 2\n  present: true\n"
                f"  level: {s.battery_level}\n  scale: 100\n  temperature: {s.battery_temp_dc}\n")
        if argv[1:2] == ["thermalservice"]:
            return _ok(f"IsStatusOverride: false\nThermal Status: {s.thermal_status}\n")
        if argv[1:2] == ["power"]:
            return _ok("mWakefulness=Awake\nmStayOn=true\n")
        return _err(f"Can't find service: {argv[1] if len(argv) > 1 else ''}")

    def _settings(self, argv: list[str]) -> Result:
        if len(argv) == 4 and argv[1] == "get":
            key = f"{argv[2]}/{argv[3]}"
            defaults = {"system/screen_off_timeout": str(self.state.screen_off_timeout_ms),
                        "global/stay_on_while_plugged_in": str(self.state.stay_on_while_plugged)}
            return _ok(self.state.settings.get(key, defaults.get(key, "null")) + "\n")
        if len(argv) == 5 and argv[1] == "put":
            self.state.settings[f"{argv[2]}/{argv[3]}"] = argv[4]
            return _ok()
        return _err("usage: settings get|put NAMESPACE KEY [VALUE]", 255)

    # -- the interpreter -----------------------------------------------------------------
    def run(self, line: str) -> ShellResult:
        """Run a command line; ``rc`` is the exit status of the last command run."""
        out, err, both = bytearray(), bytearray(), bytearray()
        rc = 0
        op = ";"
        for tok in _SPLIT.split(line):
            if tok in (";", "&&", "||"):
                op = tok
                continue
            if not tok.strip() or (op == "&&" and rc != 0) or (op == "||" and rc == 0):
                continue
            try:
                argv = shlex.split(tok.replace("$?", str(rc)))
            except ValueError as exc:
                o, e, rc = b"", f"sh: syntax error: {exc}\n".encode(), 2
            else:
                fn = self.commands.get(argv[0])
                if fn is None:
                    o, e, rc = b"", f"/system/bin/sh: {argv[0]}: inaccessible or not found\n".encode(), 127
                else:
                    o, e, rc = fn(argv)
            out += o
            err += e
            both += e + o  # a command's errors usually precede its output (it fails early)
        return ShellResult(bytes(out), bytes(err), rc, bytes(both))
