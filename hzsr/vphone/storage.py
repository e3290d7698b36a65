"""A phone's storage: device paths mapped onto one host folder, with nothing able to escape it.

A device path is normalised as POSIX (``/sdcard/../../etc/passwd`` becomes ``/etc/passwd``) and
then placed under the root, so ``..`` can never climb out. Symlinks are resolved and checked too,
in case one is planted inside the root.

The access rules are those the adb ``shell`` user (uid 2000) meets on an Android 13-15 user
build, modelled in software because the host folder may belong to root:

- ``/``, ``/system``, ``/vendor``, ``/product``, ``/system_ext`` and ``/odm`` are read-only
  mounts (dm-verity): every write fails with ``EROFS`` (``Read-only file system``);
- ``/data``, ``/data/local`` and ``/data/data`` may be crossed but not listed (``EACCES``), and
  nothing may be created in them; ``/data/local/tmp`` is the shell user's own;
- everything else (``/sdcard``, ``/storage/emulated/0``) is readable and writable.

``/storage/emulated/0`` and ``/storage/self/primary`` are the same folder as ``/sdcard``.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path

from hzsr.core.agent_protocol import AGENT_FILES
from hzsr.core.errors import StorageError

#: Read-only mounts of a user build.
READ_ONLY = ("/system", "/vendor", "/product", "/system_ext", "/odm")
#: Folders the shell user may traverse but neither list nor write into.
NO_LIST = ("/data", "/data/local", "/data/data", "/data/misc")
#: Aliases of the primary shared storage, longest first.
ALIASES = (("/storage/emulated/0", "/sdcard"), ("/storage/self/primary", "/sdcard"))


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def canonical(device_path: str) -> str:
    """The normalised absolute device path, aliases resolved (``/storage/emulated/0/x`` -> ``/sdcard/x``)."""
    if not device_path.startswith("/"):
        device_path = "/data/local/tmp/" + device_path  # adbd's sync cwd for relative names
    p = posixpath.normpath(device_path)
    p = "/" + p.lstrip("/")  # normpath keeps a leading "//"
    for alias, real in ALIASES:
        if _under(p, alias):
            return real + p[len(alias):]
    return p


#: /proc/cpuinfo of an 8-core arm64 phone (the fields `getprop`-less scripts read).
CPUINFO = "".join(
    f"processor\t: {k}\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp "
    f"asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: "
    f"0x{1 if k < 4 else 3}\nCPU part\t: 0x{'d05' if k < 4 else 'd41'}\nCPU revision\t: 0\n\n" for k in range(8)
) + "Hardware\t: Virtual HZSR phone\n"
PROC_VERSION = "Linux version 6.1.75-android14-11 (build-user@build-host) (Android clang 17.0.2) #1 SMP PREEMPT\n"


@dataclass
class PhoneStorage:
    root: Path
    capacity_bytes: int = 64 * 1024**3
    full: bool = False  # fault: every write fails with ENOSPC
    build_prop: str = ""  # text of /system/build.prop

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        for d in ("sdcard/Download", "sdcard/DCIM", canonical(AGENT_FILES).lstrip("/"),
                  "data/local/tmp", "data/data", "data/misc", "system/bin", "vendor/etc", "product/etc",
                  "proc", "dev"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for name in ("sh", "toybox", "getprop", "settings", "dumpsys"):
            f = self.root / "system/bin" / name
            if not f.exists():
                f.write_bytes(b"\x7fELF")
        (self.root / "system/build.prop").write_text(self.build_prop)
        # What scripts probe on any phone: /dev/null (writes to it vanish in the shell), the
        # kernel's CPU and version text, and /storage, under which emulated/0 is /sdcard.
        for d in ("storage/emulated", "storage/self"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        for name, text in (("dev/null", ""), ("proc/cpuinfo", CPUINFO), ("proc/version", PROC_VERSION)):
            f = self.root / name
            if not f.exists() or f.read_text() != text:
                f.write_text(text)

    def host_path(self, device_path: str) -> Path:
        """The host path behind ``device_path``; raises EACCES if it would leave the root."""
        norm = canonical(device_path).lstrip("/")
        p = (self.root / norm) if norm else self.root
        real = Path(os.path.realpath(p))
        if real != self.root and self.root not in real.parents:
            raise StorageError(errno.EACCES, "Permission denied", device_path)
        return p

    # -- the shell user's access rules -------------------------------------------------
    def real_device_path(self, device_path: str) -> str:
        """``device_path`` with the folder symlinks above it resolved (a pushed link may point anywhere)."""
        host = self.host_path(device_path)
        real = Path(os.path.realpath(host.parent)) / host.name
        return "/" + str(real.relative_to(self.root)) if real != self.root else "/"

    def check_write(self, device_path: str) -> None:
        """Raise as the phone would if the shell user may not create, change or remove ``device_path``.

        The rules apply to where the path really leads: a write through a link into ``/system``
        is refused as a write to ``/system`` is.
        """
        real = self.real_device_path(device_path)
        if real != canonical(device_path):
            self.check_write(real)
        p = canonical(device_path)
        parent = posixpath.dirname(p)
        if p == "/" or parent == "/" or any(_under(p, m) for m in READ_ONLY):
            raise StorageError(errno.EROFS, "Read-only file system", device_path)
        if p in NO_LIST or parent in NO_LIST:
            raise StorageError(errno.EACCES, "Permission denied", device_path)
        if _under(p, "/data") and not _under(p, "/data/local/tmp"):
            raise StorageError(errno.EACCES, "Permission denied", device_path)
        if _under(p, "/proc") or _under(p, "/dev"):
            raise StorageError(errno.EACCES, "Permission denied", device_path)

    def check_list(self, device_path: str) -> None:
        """Raise EACCES for a folder the shell user may not list."""
        p = canonical(device_path)
        if p in NO_LIST or (_under(p, "/data/data") and p != "/data/data"):
            raise StorageError(errno.EACCES, "Permission denied", device_path)

    def check_read(self, device_path: str) -> None:
        """Raise EACCES for a file in another app's or the system's private data."""
        p = canonical(device_path)
        if _under(p, "/data") and not _under(p, "/data/local/tmp") and p not in NO_LIST:
            raise StorageError(errno.EACCES, "Permission denied", device_path)

    def read_only(self, device_path: str) -> bool:
        p = canonical(device_path)
        return p == "/" or any(_under(p, m) for m in READ_ONLY)

    # -- space ---------------------------------------------------------------------------
    def used_bytes(self) -> int:
        return sum(f.stat().st_size for f in (self.root / "sdcard").rglob("*") if f.is_file())

    def free_bytes(self) -> int:
        return 0 if self.full else max(self.capacity_bytes - self.used_bytes(), 0)

    def check_space(self, n: int) -> None:
        if self.full or n > self.free_bytes():
            raise StorageError(errno.ENOSPC, "No space left on device")

    def write_atomic(self, device_path: str, data: bytes) -> None:
        """Write via a temp name and rename, as the agent does for its ``done`` marker."""
        self.check_write(device_path)
        self.check_space(len(data))
        p = self.host_path(device_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)

    def remove(self, device_path: str, recursive: bool = False) -> None:
        p = self.host_path(device_path)
        if p == self.root:
            raise StorageError(errno.EACCES, "Permission denied", device_path)
        if not (p.exists() or p.is_symlink()):
            raise StorageError(errno.ENOENT, "No such file or directory", device_path)
        self.check_write(device_path)
        if p.is_dir() and not p.is_symlink():
            if not recursive:
                raise StorageError(errno.EISDIR, "Is a directory", device_path)
            shutil.rmtree(p)
        else:
            p.unlink()
