"""Start and stop a private adb server (never the default port 5037).

The binary is the one in the adbutils wheel (platform-tools 36.0.0), unless ``ADBUTILS_ADB_PATH``
names another: the same order adbutils itself uses, except that an older ``adb`` on PATH is not
picked silently.

Every hzsr entry point that talks to adb calls ``use_private_port`` first: adbutils runs a bare
``adb start-server`` whenever it cannot reach its server, and adb reads the port it starts on from
``ANDROID_ADB_SERVER_PORT`` (else 5037). The same call sets ``ADB_MDNS=0``: otherwise the server
binds UDP 5353 on every interface for mDNS discovery (adb 36 honours the variable; checked with
``ss -ulpn``), and the rig needs no discovery.

On a Linux machine without a USB bus (``/dev/bus/usb`` absent: a VM, a container, CI) it also sets
``ADB_LIBUSB=0`` unless the user chose a backend: adb 36's default libusb backend then waits out a
3 s device-scan timeout on every ``start-server`` (3.04 s against 0.04 s with the native
backend, measured here), which every rig bring-up and every test rig paid. The native backend is
adb's long-standing Linux one and still finds a phone plugged in later.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hzsr.core.errors import RigError


def bundled_adb() -> str:
    env = os.environ.get("ADBUTILS_ADB_PATH")
    if env:
        return env
    import adbutils

    path = Path(adbutils.__file__).parent / "binaries" / "adb"
    if not path.exists():
        raise RigError("the adbutils wheel ships no adb binary for this platform; set ADBUTILS_ADB_PATH",
                       field="adb")
    return str(path)


#: Environment for every adb process we start or adbutils starts: no mDNS (UDP 5353, all interfaces).
ADB_ENV = {"ADB_MDNS": "0", "ADB_MDNS_OPENSCREEN": "0"}


def adb_env(environ: Mapping[str, str] | None = None, usb_bus: Path = Path("/dev/bus/usb")) -> dict[str, str]:
    """``ADB_ENV``, plus ``ADB_LIBUSB=0`` where libusb would only wait for a USB bus that is not there.

    Args:
        environ: the environment the adb process inherits (default ``os.environ``); a user's own
            ``ADB_LIBUSB`` is kept.
        usb_bus: where Linux lists USB devices.
    """
    environ = os.environ if environ is None else environ
    env = dict(ADB_ENV)
    if sys.platform.startswith("linux") and "ADB_LIBUSB" not in environ and not usb_bus.exists():
        env["ADB_LIBUSB"] = "0"
    return env


def use_private_port(port: int) -> None:
    """Point adb and adbutils at ``port`` (never 5037) for this process and its children.

    Call before the first adbutils call: adbutils' own fallback ``adb start-server`` then starts
    the server on this port, with mDNS off, instead of on 5037.
    """
    if port == 5037:
        raise RigError("refusing the default adb port 5037; use a private one", field="adb.port")
    os.environ["ANDROID_ADB_SERVER_PORT"] = str(port)
    os.environ.update(adb_env())


def free_port() -> int:
    """A free TCP port on loopback outside 5555-5585, which adb scans for emulators."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 5554 <= port <= 5585 and port != 5037:
            return port


@dataclass
class AdbServer:
    port: int
    adb: str

    @classmethod
    def start(cls, port: int | None = None) -> AdbServer:
        srv = cls(port or free_port(), bundled_adb())
        if srv.port == 5037:
            raise RigError("refusing the default adb port 5037; use a private one", field="port")
        use_private_port(srv.port)
        srv.run("start-server")
        return srv

    def run(self, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
        """``adb -P PORT ARGS`` (never ``-H``: adb refuses to start a server "on a remote host")."""
        env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(self.port), **adb_env()}
        return subprocess.run([self.adb, "-P", str(self.port), *args], capture_output=True, text=True,
                              timeout=timeout, env=env)

    def client(self):
        import adbutils

        return adbutils.AdbClient(host="127.0.0.1", port=self.port)

    def pid(self) -> int | None:
        """PID of the server process (adb forks it as ``adb -L tcp:PORT fork-server server``)."""
        return find_adb_server_pid(self.port)

    def stop(self) -> None:
        """``kill-server``, then SIGKILL if it is still there: never leave a server behind."""
        import signal
        import time

        pid = self.pid()
        try:
            self.run("kill-server", timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for _ in range(50):
            if pid is None or not pid_alive(pid):
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def find_adb_server_pid(port: int) -> int | None:
    """Find the adb server listening on ``port`` by its command line (Linux /proc)."""
    want = f"tcp:{port}"
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "fork-server" in args and want in args:
            return int(entry.name)
    return None
