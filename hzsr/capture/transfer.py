"""Verified pull: a capture's files from a phone into the session, never trusted until hashes match.

adbutils' sync has no socket timeout, so this speaks the ``sync:`` RECV protocol itself on an
adbutils transport with a deadline. All of one phone's files for a capture go through ONE sync
connection, their RECV requests sent together (adbd answers them in order). The bytes stream into
temp files in the destination folder while being hashed; a file is renamed into place only when
its size and sha256 match the agent's metadata, the hash the phone took of the frame as it wrote
it (DESIGN.md: "each frame's sha256 matches the phone's"). The phone's ``sha256sum`` of the stored
file is asked only when they disagree, to tell a bad copy on the phone from a bad transfer: on a
good pull it would cost the phone a second read and hash of every file and the host a connection,
and prove nothing more (issue 19). A mismatch is reported per file (the caller pulls that file
again); a dropped link is a ``LINK_ERRORS`` exception (the caller recovers and retries what is
left).

The sync connection is closed without adbutils' ``AdbConnection.close``, which sleeps 10 ms after
``shutdown`` on every close (32 % of a capture's host time in issue 19's profile): after ``QUIT``
and the last ``DONE`` nothing is left unread on the socket, so a plain ``close`` sends a clean FIN
that the adb server sees after the ``QUIT``; there is nothing for a sleep to wait for.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import struct
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import adbutils

from hzsr.core.errors import CaptureError, TransferError
from hzsr.core.fileio import apply_umask, fsync_dir

_END_MARK = "hzsr-sha256-end:"
#: adb's ``SYNC_DATA_MAX`` (file_sync_protocol.h): no DATA payload or FAIL message is longer. A
#: longer length is a broken or hostile peer, refused before anything is allocated for it.
SYNC_DATA_MAX = 64 * 1024
#: How far past its metadata's size a file's stream may run before the pull is given up as a broken
#: link: the bytes past the size are hashed (the file is wrong, and the phone's ``sha256sum`` says
#: whose fault) but never written, so a peer that streams without end fills neither disk nor time.
OVERRUN_MAX = 1 << 20


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


def _read_into(sock, view: memoryview, n: int) -> None:
    """Fill ``view[:n]`` from ``sock``; a close before ``n`` bytes is a dropped link."""
    got = 0
    while got < n:
        k = sock.recv_into(view[got:n], n - got)
        if not k:
            raise ConnectionError("connection closed mid-transfer")
        got += k


def host_disk_error(exc: OSError, path: str | Path) -> CaptureError:
    """A failed write, fsync or rename on the host as the crew's error, not the link's.

    ``OSError`` is also what a dropped socket raises (``LINK_ERRORS``), which the capture answers by
    restarting the adb server and retrying with backoff; a full or failing host disk is not mended
    that way. It stops the capture at once, incomplete, its message naming the file; ``capture
    resume`` pulls it again once there is room.
    """
    return CaptureError(f"cannot write the pulled file on this computer: {exc.strerror or exc}", file=path,
                        field="host disk")


@contextmanager
def _on_host(path: str | Path) -> Iterator[None]:
    """File work on the host inside: an ``OSError`` comes out as ``host_disk_error``."""
    try:
        yield
    except OSError as exc:
        raise host_disk_error(exc, path) from exc


def _write_all(f, view: memoryview) -> None:
    """``view`` into the unbuffered file ``f``, every byte: a short write (a file-size limit, a full
    disk) is retried, and raises when the next write fails, never a silently truncated file."""
    with _on_host(f.name):
        while view:
            view = view[f.write(view):]


def _fsync_close(f) -> None:
    try:
        with _on_host(f.name):
            os.fsync(f.fileno())
    finally:
        f.close()


def _recv_all(device: adbutils.AdbDevice, parts: list[_Part], timeout_s: float) -> TransferError | None:
    """RECV every part's file over one sync connection into its temp file (fsynced), hashing as it goes.

    Each DATA payload is received into one reused buffer, hashed and written from it (no copy in
    Python; hashlib and ``write`` release the GIL), as the adb binary's own loop does. A finished
    file is fsynced on a thread of its own while the next one streams. Nothing past the metadata's
    size is written (``OVERRUN_MAX``). Returns the phone's refusal of the first file it refused
    (the parts after it are not pulled: adbd ends the sync service after a FAIL); raises a
    ``LINK_ERRORS`` exception on a dropped link.
    """
    sock = _open_service(device, "sync:", timeout_s)
    head = memoryview(bytearray(8))
    buf = memoryview(bytearray(SYNC_DATA_MAX))
    fsyncs = ThreadPoolExecutor(1, thread_name_prefix="pull-fsync")
    synced = []
    refused = None
    try:
        # Pipelined: every request goes out now, the replies come back in order, back to back.
        reqs = bytearray()
        for part in parts:
            p = part.item.phone_path.encode()
            reqs += b"RECV" + struct.pack("<I", len(p)) + p
        sock.sendall(bytes(reqs))
        for part in parts:
            h = hashlib.sha256()
            with _on_host(part.tmp):
                f = open(part.tmp, "wb", buffering=0)
            try:
                while True:
                    _read_into(sock, head, 8)
                    rid, n = head[:4].tobytes(), struct.unpack_from("<I", head, 4)[0]
                    if n > SYNC_DATA_MAX and rid in (b"DATA", b"FAIL"):
                        raise ConnectionError(f"sync {rid.decode()} of {n} bytes (adb sends at most {SYNC_DATA_MAX})")
                    if rid == b"DATA":
                        _read_into(sock, buf, n)
                        h.update(buf[:n])
                        room = part.item.size - part.size
                        _write_all(f, buf[:n] if n <= room else buf[:max(room, 0)])
                        part.size += n
                        if part.size > part.item.size + OVERRUN_MAX:
                            raise ConnectionError(f"{part.item.phone_path}: the phone sent over {part.size} bytes, "
                                                  f"its metadata says {part.item.size}")
                    elif rid == b"DONE":
                        part.done = True
                        break
                    elif rid == b"FAIL":
                        why = memoryview(bytearray(n))
                        _read_into(sock, why, n)
                        said = " ".join(why.tobytes().decode(errors="replace").split())  # one line, for the journal
                        refused = TransferError(f"phone refused the pull: {said[:200]}", field=part.item.phone_path)
                        break
                    else:
                        raise ConnectionError(f"bad sync reply {rid!r}")
            except BaseException:
                f.close()
                raise
            part.sha256 = h.hexdigest()
            synced.append(fsyncs.submit(_fsync_close, f))
            if refused is not None:
                break
        if refused is None:
            sock.sendall(b"QUIT" + struct.pack("<I", 0))
    finally:
        _close_quietly(sock)
        fsyncs.shutdown(wait=True)
    for done in synced:
        done.result()  # an fsync that failed (disk full, I/O error) fails the pull
    return refused


def pull_verified_many(device: adbutils.AdbDevice, items: list[FileToPull], timeout_s: float = 30.0) -> PullBatch:
    """Pull ``items`` from one phone and accept each file only if its bytes are the ones the phone captured.

    One sync connection carries every file; every socket wait is bounded by ``timeout_s``. A file
    is accepted when its pulled size and sha256 equal the agent's metadata, which the phone
    computed from the frame as it wrote it; it is then renamed into place (one directory fsync
    per folder). Only for a file that disagrees is the phone asked for its own ``sha256sum``, to
    say which side is wrong: the phone's stored file (its hash is not the metadata's) or the
    transfer (the phone's file is right, the pulled bytes are not): the reason in ``failed`` says
    which. Either way the file is removed and listed in ``failed``; a file after a refusal is listed
    there too (not tried). A link error removes every temp file and propagates; so does a failed
    write, fsync or rename on the host, as a ``CaptureError`` (``host_disk_error``), never as a link
    error.
    """
    parts: list[_Part] = []
    out = PullBatch({}, {})
    try:
        for it in items:
            with _on_host(it.dest):
                it.dest.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{it.dest.name}.", suffix=".part", dir=it.dest.parent)
            parts.append(_Part(it, tmp))  # removed in the finally below, whatever happens next
            try:
                apply_umask(fd)
            finally:
                os.close(fd)
        refused = _recv_all(device, parts, timeout_s)
        landed = [part for part in parts if refused is None or (part.done and refused.field != part.item.phone_path)]
        wrong = [part for part in landed if (part.size, part.sha256) != (part.item.size, part.item.sha256)]
        on_phone = phone_sha256(device, [part.item.phone_path for part in wrong], timeout_s) if wrong else {}
        folders = set()
        for part in parts:
            it = part.item
            if part not in landed:
                assert refused is not None
                out.failed[it.phone_path] = refused if refused.field == it.phone_path else TransferError(
                    "not pulled: an earlier file of the batch was refused", field=it.phone_path)
            elif part in wrong:
                phone = on_phone[it.phone_path]
                if phone != it.sha256:  # the phone's copy is bad: the crew's to look at, not the link's
                    why = f"phone's file hashes to {phone[:12]}.., its metadata says {it.sha256[:12]}.."
                else:
                    why = (f"pulled {part.size} bytes hashing to {part.sha256[:12]}.., phone has {it.size} bytes "
                           f"hashing to {phone[:12]}..")
                out.failed[it.phone_path] = TransferError(why, field=it.phone_path)
            else:
                with _on_host(it.dest):
                    os.replace(part.tmp, it.dest)
                folders.add(it.dest.parent)
                out.pulled[it.phone_path] = Pulled(it.dest, part.size, part.sha256)
        for folder in folders:
            with _on_host(folder):
                fsync_dir(folder)
    finally:
        for part in parts:
            Path(part.tmp).unlink(missing_ok=True)
    return out
