"""A phone's storage: device paths mapped onto one host folder, with nothing able to escape it.

A device path is normalised as POSIX (``/sdcard/../../etc/passwd`` becomes ``/etc/passwd``) and
then placed under the root, so ``..`` can never climb out. Symlinks are resolved and checked too,
in case one is planted inside the root.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path

from hzsr.capture.protocol import AGENT_FILES


class StorageError(OSError):
    """An errno-carrying failure, reported to the host as the phone would."""


@dataclass
class PhoneStorage:
    root: Path
    capacity_bytes: int = 64 * 1024**3
    full: bool = False  # fault: every write fails with ENOSPC

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        for d in ("sdcard/Download", AGENT_FILES.lstrip("/"), "data/local/tmp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)

    def host_path(self, device_path: str) -> Path:
        """The host path behind ``device_path``; raises EACCES if it would leave the root."""
        if not device_path.startswith("/"):
            device_path = "/data/local/tmp/" + device_path  # adbd's cwd for shell commands
        norm = posixpath.normpath(device_path).lstrip("/")
        p = (self.root / norm) if norm not in ("", ".") else self.root
        real = Path(os.path.realpath(p))
        if real != self.root and self.root not in real.parents:
            raise StorageError(13, "Permission denied", device_path)
        return p

    def used_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())

    def free_bytes(self) -> int:
        return 0 if self.full else max(self.capacity_bytes - self.used_bytes(), 0)

    def check_space(self, n: int) -> None:
        if self.full or n > self.free_bytes():
            raise StorageError(28, "No space left on device")

    def write_atomic(self, device_path: str, data: bytes) -> None:
        """Write via a temp name and rename, as the agent does for its ``done`` marker."""
        self.check_space(len(data))
        p = self.host_path(device_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)

    def remove(self, device_path: str, recursive: bool = False) -> None:
        p = self.host_path(device_path)
        if p == self.root:
            raise StorageError(13, "Permission denied", device_path)
        if p.is_dir() and not p.is_symlink():
            if not recursive:
                raise StorageError(21, "Is a directory", device_path)
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            raise StorageError(2, "No such file or directory", device_path)
