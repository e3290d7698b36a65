"""Verified pull: one file from a phone into the session, never trusted until its hash matches.

adbutils' sync has no socket timeout, so this speaks the ``sync:`` RECV protocol itself on an
adbutils transport with a deadline. The bytes stream into a temp file in the destination folder
while being hashed; the file is renamed into place only when its size and sha256 match both the
phone's own ``sha256sum`` and the agent's metadata. A mismatch is a ``TransferError`` (the caller
pulls again); a dropped link is a ``LINK_ERRORS`` exception (the caller recovers and retries).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import adbutils

from hzsr.core.errors import TransferError
from hzsr.core.fileio import apply_umask, fsync_dir


@dataclass
class Pulled:
    path: Path
    size: int
    sha256: str


def phone_sha256(device: adbutils.AdbDevice, paths: list[str]) -> dict[str, str]:
    """The phone's own ``sha256sum`` of ``paths``, in one shell call (each call costs ~20 ms).

    Every path is quoted for the phone's shell (``shlex.quote``): a session name is user input
    and may hold spaces, quotes, ``;`` or ``$(...)``. The output is ``HASH  PATH`` per file; the
    path is everything after the two spaces, so spaces in it survive.
    """
    out = device.shell2("sha256sum " + " ".join(shlex.quote(p) for p in paths), timeout=30)
    sums = {}
    for line in out.output.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and len(digest) == 64:
            sums[name] = digest
    missing = [p for p in paths if p not in sums]
    if missing:
        raise TransferError(f"sha256sum failed on the phone: {out.output.strip()[:200]}", field=missing[0])
    return sums


def _read_exact(conn, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-transfer")
        buf += chunk
    return bytes(buf)


def pull_file(device: adbutils.AdbDevice, phone_path: str, dest: Path, timeout_s: float = 30.0) -> Pulled:
    """RECV ``phone_path`` into ``dest`` atomically; every socket wait is bounded by ``timeout_s``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    apply_umask(fd)
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as f, device.open_transport(timeout=timeout_s) as c:
            c.conn.settimeout(timeout_s)
            c.send_command("sync:")
            c.check_okay()
            p = phone_path.encode()
            c.conn.sendall(b"RECV" + struct.pack("<I", len(p)) + p)
            while True:
                head = _read_exact(c.conn, 8)
                rid, n = head[:4], struct.unpack("<I", head[4:])[0]
                if rid == b"DATA":
                    chunk = _read_exact(c.conn, n)
                    h.update(chunk)
                    f.write(chunk)
                    size += n
                elif rid == b"DONE":
                    break
                elif rid == b"FAIL":
                    msg = _read_exact(c.conn, n).decode(errors="replace")
                    raise TransferError(f"phone refused the pull: {msg}", field=phone_path)
                else:
                    raise ConnectionError(f"bad sync reply {rid!r}")
            c.conn.sendall(b"QUIT" + struct.pack("<I", 0))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Pulled(dest, size, h.hexdigest())


def pull_verified(device: adbutils.AdbDevice, phone_path: str, dest: Path, expected_sha256: str,
                  expected_size: int, timeout_s: float = 30.0, on_phone: str | None = None) -> Pulled:
    """Pull and check against the phone's ``sha256sum`` and the agent's metadata.

    ``on_phone`` is the phone's hash if already known (one ``sha256sum`` call serves a whole
    capture). On any mismatch the pulled file is removed and ``TransferError`` raised.
    """
    if on_phone is None:
        on_phone = phone_sha256(device, [phone_path])[phone_path]
    if on_phone != expected_sha256:
        raise TransferError(f"phone's file hashes to {on_phone[:12]}.., its metadata says "
                            f"{expected_sha256[:12]}..", field=phone_path)
    got = pull_file(device, phone_path, dest, timeout_s)
    if got.size != expected_size or got.sha256 != on_phone:
        dest.unlink(missing_ok=True)
        raise TransferError(f"pulled {got.size} bytes hashing to {got.sha256[:12]}.., phone has "
                            f"{expected_size} bytes hashing to {on_phone[:12]}..", field=phone_path)
    return got
