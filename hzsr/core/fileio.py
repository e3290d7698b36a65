"""Crash-safe file writes, hashing, and reading a file a user named.

A write goes to a temp file in the destination folder, is flushed and fsync'd, then renamed over
the destination, and the folder is fsync'd so the rename itself survives a power cut. A reader
therefore sees either the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hzsr.core.errors import HzsrError

_HASH_CHUNK = 1 << 20


def read_text(path: str | Path, error: type[HzsrError]) -> str:
    """The UTF-8 text of ``path``; anything that keeps it from being read is one ``error``.

    Missing, a folder, no permission, not UTF-8: each raises ``error`` naming the file, marked
    ``unreadable`` (exit 2), so a YAML config and a session's JSON fail with the same words.
    """
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error("file not found", file=path, unreadable=True) from None
    except UnicodeDecodeError as exc:
        raise error(f"not UTF-8 text (byte {exc.start})", file=path, unreadable=True) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", file=path, unreadable=True) from None


def fsync_dir(path: str | Path) -> None:
    """fsync a directory so that renames and creations inside it are durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(tmp: str | Path, path: str | Path) -> None:
    """fsync a finished temp file, rename it over ``path`` and fsync the folder.

    For files written by a library that needs a path (h5py): a crash leaves the old file or the
    new one, never half of one. The caller removes ``tmp`` if writing it failed.
    """
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def current_umask() -> int:
    """The process umask: from /proc (Linux 4.7+), else by setting it and back (racy in threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(fd: int) -> None:
    """Give a file made by ``mkstemp`` (always 0600) the mode ``open`` would: 0666 & ~umask."""
    os.fchmod(fd, 0o666 & ~current_umask())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename, fsync folder).

    The file gets the mode a plain ``open`` would give it (0666 less the umask, normally 0644), so
    colleagues can read a crew member's data set.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        apply_umask(fd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as pretty, key-sorted JSON, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()
