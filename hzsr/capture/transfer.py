"""Verified pull: a capture's files from a phone into the session, never trusted until hashes match.

adbutils' sync has no socket timeout, so this speaks the ``sync:`` RECV protocol itself on an
adbutils transport with a deadline. All of one phone's files for a capture go through ONE sync
connection, their RECV requests sent together (adbd answers them in order), and the phone's own
``sha256sum`` of them runs on a second connection at the same time, so it costs no wall time.
The bytes stream into temp files in the destination folder while being hashed; a file is renamed
into place only when its size and sha256 match both the phone's ``sha256sum`` and the agent's
metadata. A mismatch is reported per file (the caller pulls that file again); a dropped link is a
``LINK_ERRORS`` exception (the caller recovers and retries what is left).

The sync connection is closed without adbutils' ``AdbConnection.close``, which sleeps 10 ms after
``shutdown`` on every close (32 % of a capture's host time in issue 19's profile): after ``QUIT``
and the last ``DONE`` nothing is left unread on the socket, so a plain ``close`` sends a clean FIN
that the adb server sees after the ``QUIT``; there is nothing for a sleep to wait for.
"""

from __future__ import annotations

import hashlib
import os
import queue
import shlex
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import adbutils

from hzsr.core.errors import TransferError
from hzsr.core.fileio import apply_umask, fsync_dir


_END_MARK = "hzsr-sha256-end:"


@dataclass
class Pulled:
    path: Path
    size: int
    sha256: str


def phone_sha256(device: adbutils.AdbDevice, paths: list[str], timeout_s: float = 30.0) -> dict[str, str]:
    """The phone's own ``sha256sum`` of ``paths``, in one ``exec:`` call on its own connection.

    Every path is quoted for the phone's shell (``shlex.quote``): a session name is user input
    and may hold spaces, quotes, ``;`` or ``$(...)``. The output is ``HASH  PATH`` per file; the
    path is everything after the two spaces, so spaces in it survive. ``exec:`` (no pty, no
    exit status) rather than adbutils' ``shell2``, which opens two connections and sleeps 10 ms
    closing each; a failed hash shows as a path missing from the output. The command ends with an
    ``echo`` of an end marker: output without it was cut by the link (``ConnectionError``, a
    ``LINK_ERRORS`` the caller recovers from), never mistaken for a failed hash.
    """
    cmd = "sha256sum " + " ".join(shlex.quote(p) for p in paths) + f"; echo {_END_MARK}$?"
    sock = _open_service(device, "exec:" + cmd, timeout_s)
    try:
        buf = bytearray()
        while chunk := sock.recv(65536):
            buf += chunk
    finally:
        _close_quietly(sock)
    text = buf.decode("utf-8", "replace")
    body, mark, _status = text.rpartition(_END_MARK)
    if not mark:
        # exec: has no exit status: only the marker tells a finished sha256sum from a stream the
        # adb server cut (killed, unplugged). A cut is a link error the caller recovers from.
        raise ConnectionError(f"the phone's sha256sum output ended before its end marker ({len(buf)} bytes)")
    text = body
    sums = {}
    for line in text.splitlines():
        digest, sep, name = line.partition("  ")
        if sep and len(digest) == 64:
            sums[name] = digest
    missing = [p for p in paths if p not in sums]
    if missing:
        raise TransferError(f"sha256sum failed on the phone: {text.strip()[:200]}", field=missing[0])
    return sums


@dataclass(frozen=True)
class FileToPull:
    phone_path: str
    dest: Path
    sha256: str  # from the agent's metadata
    size: int  # from the agent's metadata


@dataclass
class PullBatch:
    """What ``pull_verified_many`` did: files verified and in place, and files to pull again."""

    pulled: dict[str, Pulled]  # phone path -> verified file, renamed into place
    failed: dict[str, TransferError]  # phone path -> why it was not accepted (nothing left behind)


@dataclass
class _Part:
    item: FileToPull
    tmp: str
    size: int = 0
    sha256: str = ""
    done: bool = False  # the phone sent DONE for it


def _close_quietly(sock) -> None:
    """Close a socket at once: no ``shutdown`` + 10 ms sleep as ``AdbConnection.close`` does."""
    try:
        sock.close()
    except OSError:
        pass


def _open_service(device: adbutils.AdbDevice, service: str, timeout_s: float):
    """A socket to ``service`` on ``device`` through the adb server, every wait bounded by ``timeout_s``.

    ``host:transport:SERIAL`` (understood by every adb version) instead of adbutils'
    ``open_transport``, which first asks the server its version on a connection of its own and
    closes that one with the 10 ms sleep. adbutils keeps the server's address on the device's
    client only (``_client``).
    """
    c = device._client.make_connection(timeout=timeout_s)
    sock = c.conn
    try:
        sock.settimeout(timeout_s)
        c.send_command(f"host:transport:{device.serial}")
        c.check_okay()
        c.send_command(service)
        c.check_okay()
    except BaseException:
        _close_quietly(sock)
        raise
    return sock


def _writer(parts: list[_Part], chunks: queue.Queue, box: dict[str, BaseException]) -> None:
    """Write and hash the chunks the reader queues, fsync each file at its end (``None``)."""
    try:
        for part in parts:
            h = hashlib.sha256()
            with open(part.tmp, "wb") as f:
                while (chunk := chunks.get()) is not None:
                    if chunk is _STOP:
                        return
                    for piece in chunk:
                        h.update(piece)
                    f.writelines(chunk)
                f.flush()
                os.fsync(f.fileno())
            part.sha256 = h.hexdigest()
    except BaseException as exc:  # re-raised by the reader
        box["error"] = exc
        while chunks.get() is not _STOP:  # drain, so the reader never blocks on a full queue
            pass


_STOP = object()


def _recv_all(device: adbutils.AdbDevice, parts: list[_Part], timeout_s: float) -> TransferError | None:
    """RECV every part's file over one sync connection into its temp file (fsynced).

    The socket is read here while a writer thread writes, hashes and fsyncs, so the host's own
    work overlaps the transfer. Returns the phone's refusal of the first file it refused (the parts
    after it are not pulled: adbd ends the sync service after a FAIL); raises a ``LINK_ERRORS``
    exception on a dropped link.
    """
    sock = _open_service(device, "sync:", timeout_s)
    chunks: queue.Queue = queue.Queue(maxsize=16)  # lists of 64 KiB DATA payloads: <= 16 MiB in flight
    box: dict[str, BaseException] = {}
    writer = threading.Thread(target=_writer, args=(parts, chunks, box), name="pull-writer", daemon=True)
    writer.start()
    refused = None
    rf = sock.makefile("rb", buffering=1 << 20)  # the socket's fd closes when both are closed
    try:

        def read(n: int) -> bytes:
            b = rf.read(n)
            if len(b) < n:
                raise ConnectionError("connection closed mid-transfer")
            return b

        # Pipelined: every request goes out now, the replies come back in order, back to back.
        reqs = bytearray()
        for part in parts:
            p = part.item.phone_path.encode()
            reqs += b"RECV" + struct.pack("<I", len(p)) + p
        sock.sendall(bytes(reqs))
        batch: list[bytes] = []
        for part in parts:
            while True:
                head = read(8)
                rid, n = head[:4], struct.unpack("<I", head[4:])[0]
                if rid == b"DATA":
                    batch.append(read(n))
                    part.size += n
                    if len(batch) >= 16:  # 1 MiB a hand-over: few lock round trips with the writer
                        chunks.put(batch)
                        batch = []
                elif rid == b"DONE":
                    if batch:
                        chunks.put(batch)
                        batch = []
                    chunks.put(None)
                    part.done = True
                    break
                elif rid == b"FAIL":
                    refused = TransferError(f"phone refused the pull: {read(n).decode(errors='replace')}",
                                            field=part.item.phone_path)
                    break
                else:
                    raise ConnectionError(f"bad sync reply {rid!r}")
                if "error" in box:
                    raise box["error"]
            if refused is not None:
                break
        if refused is None:
            sock.sendall(b"QUIT" + struct.pack("<I", 0))
    finally:
        chunks.put(None)  # ends a file the writer is in (a refusal or a link error mid-file)
        chunks.put(_STOP)
        rf.close()
        _close_quietly(sock)
    writer.join()
    if "error" in box:
        raise box["error"]
    return refused


def pull_verified_many(device: adbutils.AdbDevice, items: list[FileToPull], timeout_s: float = 30.0,
                       on_phone: dict[str, str] | None = None) -> PullBatch:
    """Pull ``items`` from one phone and accept each file only if size and hashes all agree.

    One sync connection carries every file; the phone's ``sha256sum`` of all of them runs
    meanwhile on its own connection (unless ``on_phone`` already holds the hashes). Every socket
    wait is bounded by ``timeout_s``. A file is accepted when its pulled size equals the metadata's,
    and its pulled sha256, the phone's and the metadata's are equal; it is then renamed into place
    (one directory fsync per folder). A refused or mismatching file is removed and listed in
    ``failed``; a file after a refusal is listed there too (not tried). A link error removes every
    temp file and propagates.
    """
    parts = []
    for it in items:
        it.dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{it.dest.name}.", suffix=".part", dir=it.dest.parent)
        apply_umask(fd)
        os.close(fd)
        parts.append(_Part(it, tmp))
    box: dict[str, object] = {}
    hasher = None
    if on_phone is None:
        def _hash() -> None:
            try:
                box["sums"] = phone_sha256(device, [it.phone_path for it in items])
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        hasher = threading.Thread(target=_hash, name="phone-sha256", daemon=True)
        hasher.start()
    out = PullBatch({}, {})
    try:
        refused = _recv_all(device, parts, timeout_s)
        if hasher is not None:
            hasher.join()
            if "error" in box:
                raise box["error"]  # type: ignore[misc]
            on_phone = box["sums"]  # type: ignore[assignment]
        assert on_phone is not None
        folders = set()
        for part in parts:
            it = part.item
            if refused is not None and (refused.field == it.phone_path or not part.done):
                out.failed[it.phone_path] = refused if refused.field == it.phone_path else TransferError(
                    "not pulled: an earlier file of the batch was refused", field=it.phone_path)
                continue
            phone = on_phone.get(it.phone_path, "")
            if phone != it.sha256:
                out.failed[it.phone_path] = TransferError(
                    f"phone's file hashes to {phone[:12]}.., its metadata says {it.sha256[:12]}..",
                    field=it.phone_path)
            elif part.size != it.size or part.sha256 != phone:
                out.failed[it.phone_path] = TransferError(
                    f"pulled {part.size} bytes hashing to {part.sha256[:12]}.., phone has {it.size} bytes "
                    f"hashing to {phone[:12]}..", field=it.phone_path)
            else:
                os.replace(part.tmp, it.dest)
                folders.add(it.dest.parent)
                out.pulled[it.phone_path] = Pulled(it.dest, part.size, part.sha256)
        for folder in folders:
            fsync_dir(folder)
    finally:
        if hasher is not None:
            hasher.join()
        for part in parts:
            Path(part.tmp).unlink(missing_ok=True)
    return out
