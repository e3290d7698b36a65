"""The device side of the ADB transport protocol, so the real adb server attaches a virtual phone.

Wire format (AOSP ``adb/protocol.txt``): a 24-byte header of six little-endian u32, ``command,
arg0, arg1, data_length, data_crc32, magic = command ^ 0xffffffff``, then the payload. The server
sends CNXN; a device that answers CNXN with no AUTH goes online. A stream opens with OPEN(local,
0, "service\\0"), is accepted with OKAY(ours, theirs), carries WRTE each acknowledged by OKAY (at
most one unacknowledged WRTE per direction per stream) and ends with CLSE.

Services (each a coroutine over a ``StreamIO``):
- ``shell:CMD`` (raw output) and ``shell,v2[,opts]:CMD`` (packets: id byte 1 stdout, 2 stderr,
  3 exit, then a u32 length);
- ``sync:`` (``file_sync_protocol.h``): STAT, STA2/LST2 (stat_v2), LIST, LIS2 (ls_v2), SEND,
  RECV, QUIT; DATA chunks of at most 64 KiB;
- ``exec:CMD`` (raw: no pty, no exit status, stderr in the same stream, as ``adb exec-out``);
- ``tcp:PORT`` and ``localabstract:NAME``, to sockets the phone registers (the capture agent);
- ``reverse:forward:[norebind:]LOCAL;REMOTE``, ``reverse:killforward:LOCAL``,
  ``reverse:killforward-all`` and ``reverse:list-forward`` (``adb reverse``): the phone listens
  on ``tcp:PORT`` of its loopback (modelled as a host port, ``VirtualPhone.device_port``) and
  opens a stream to the host for each connection, as adbd does.

Sync answers as adbd does when a path is missing, a file, not listable or read-only: LIST/LIS2
of anything opendir() refuses is a bare DONE, STAT of a missing path is all zeros, RECV and SEND
fail with adbd's messages (``open failed: ...``, ``couldn't create file: Read-only file system``).

Stream life as adbd has it: a CLSE from the host is answered with a CLSE (adbd's local socket
closes its peer, which sends one; clients such as adb-shell wait for it); it also hangs up the
command running on that stream (SIGHUP: the line stops at its next command, ``sleep`` at once).
Each shell command runs on a thread of its own, never on the pool the capture agent uses, so no
number of orphaned or slow shells delays an agent reply. Before the host's CNXN the transport is
offline: any other packet is dropped unanswered (adbd's ``handle_packet`` ignores OPEN on an
offline transport); a second CNXN drops every open stream first (adbd's ``handle_offline``), so
phone and server never disagree on which streams exist.

The banner advertises exactly these: ``shell_v2,stat_v2,ls_v2,fixed_push_mkdir``. Not
``sendrecv_v2``: adb 36 switches ``push`` to SND2 when a device advertises it; not ``cmd``: the
phone has no ``cmd`` binary, and adb's ``install`` would call it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import posixpath
import socket
import stat
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hzsr.core.errors import AdbProtocolError, AdbStreamClosed, SyncSendError
from hzsr.vphone.shell import ShellResult
from hzsr.vphone.storage import canonical

if TYPE_CHECKING:
    from hzsr.vphone.shell import VirtualShell
    from hzsr.vphone.storage import PhoneStorage

log = logging.getLogger(__name__)

A_CNXN = 0x4E584E43
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_WRTE = 0x45545257
A_CLSE = 0x45534C43
A_AUTH = 0x48545541
A_STLS = 0x534C5453
A_VERSION = 0x01000001
MAX_PAYLOAD = 1024 * 1024
SYNC_DATA_MAX = 64 * 1024
HEADER = struct.Struct("<6I")
FEATURES = ("shell_v2", "stat_v2", "ls_v2", "fixed_push_mkdir")


def pack(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    # The checksum is not checked at A_VERSION 0x01000001, but real devices still send a sum.
    return HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF) + data


@dataclass
class DeviceIdentity:
    serial: str
    props: dict[str, str]
    features: tuple[str, ...] = FEATURES

    def banner(self) -> bytes:
        p = self.props
        head = ";".join(f"{k}={p[k]}" for k in ("ro.product.name", "ro.product.model", "ro.product.device"))
        return f"device::{head};features={','.join(self.features)}".encode()


@dataclass
class TransferFaults:
    """Faults in the phone's USB link, each one-shot: it fires once, then clears itself."""

    drop_after_bytes: int | None = None  # cut the whole connection once a pull has sent this much
    flip_byte_next_pull: bool = False  # corrupt one byte in flight (the phone's copy stays good)
    # Protocol-event hook for faults elsewhere in the rig: called with "packet" for each ADB
    # packet received and "recv" as each pull starts (VirtualRig kills the adb server on one).
    on_event: Callable[[str], None] | None = None


SocketHandler = Callable[["StreamIO"], Awaitable[None]]


@dataclass
class _Listener:
    remote: str
    server: asyncio.Server
    host_port: int
    conn: AdbDeviceConnection


class ReverseForwards:
    """The phone's ``adb reverse`` listeners: device ``tcp:PORT`` -> a stream opened to the host.

    The phone's loopback is modelled by host ports: an app on the phone connecting to
    ``localhost:PORT`` is a host client connecting to ``host_port(PORT)``.
    """

    def __init__(self) -> None:
        self.listeners: dict[str, _Listener] = {}

    def listing(self) -> list[tuple[str, str]]:
        return [(k, v.remote) for k, v in self.listeners.items()]

    def host_port(self, device_port: int) -> int | None:
        lst = self.listeners.get(f"tcp:{device_port}")
        return None if lst is None else lst.host_port

    async def add(self, local: str, remote: str, norebind: bool, conn: AdbDeviceConnection) -> int:
        if not local.startswith("tcp:") or not local[4:].isdigit():
            raise ValueError(f"cannot bind listener: the virtual phone models only tcp:PORT, not '{local}'")
        if not remote.startswith(("tcp:", "localabstract:", "localfilesystem:", "localreserved:", "dev:")):
            raise ValueError(f"unknown socket specification '{remote}'")
        if local in self.listeners:
            if norebind:
                raise ValueError("cannot rebind existing socket")
            self.listeners[local].remote = remote
            self.listeners[local].conn = conn
            return int(local[4:])

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            lst = self.listeners.get(key)
            stream = None if lst is None else await lst.conn.open_to_host(lst.remote)
            if stream is None:
                writer.close()
                return
            await _pump(reader, writer, stream)

        server = await asyncio.start_server(on_client, "127.0.0.1", 0)
        host_port = server.sockets[0].getsockname()[1]
        key = local if local != "tcp:0" else f"tcp:{host_port}"
        self.listeners[key] = _Listener(remote, server, host_port, conn)
        return int(key[4:])

    async def remove(self, local: str) -> bool:
        lst = self.listeners.pop(local, None)
        if lst is None:
            return False
        lst.server.close()
        return True

    async def remove_all(self) -> None:
        for k in list(self.listeners):
            await self.remove(k)

    def drop_connection(self, conn: AdbDeviceConnection) -> None:
        """adbd removes a transport's reverse forwards when that transport goes away."""
        for k, v in list(self.listeners.items()):
            if v.conn is conn:
                v.server.close()
                del self.listeners[k]


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: StreamIO) -> None:
    """Copy bytes both ways between a phone-side socket and an ADB stream until either closes."""

    async def up() -> None:
        try:
            while data := await reader.read(65536):
                await stream.write(data)
        except (AdbStreamClosed, ConnectionError):
            pass
        await stream.close()

    async def down() -> None:
        try:
            while data := await stream.read_some():
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    await asyncio.gather(up(), down())


@dataclass
class DeviceBackend:
    """What one virtual phone offers its ADB connections."""

    identity: DeviceIdentity
    shell: VirtualShell
    storage: PhoneStorage
    sockets: dict[str, SocketHandler] = field(default_factory=dict)  # "localabstract:NAME", "tcp:PORT"
    faults: TransferFaults = field(default_factory=TransferFaults)
    reverse: ReverseForwards = field(default_factory=ReverseForwards)


class StreamIO:
    """One ADB stream, seen by a service as a byte pipe with flow control."""

    def __init__(self, conn: AdbDeviceConnection, local_id: int, remote_id: int):
        self.conn = conn
        self.local_id = local_id
        self.remote_id = remote_id
        self._buf = bytearray()
        self._data = asyncio.Event()
        self._acked = asyncio.Event()
        self.opened = asyncio.Event()  # for streams the phone opens (reverse): the host's OKAY
        self.closed = False
        # Set when the host closes the stream or the transport drops: the command on it hangs up.
        self.hangup = threading.Event()

    def feed(self, data: bytes) -> None:
        self._buf += data
        self._data.set()

    def remote_closed(self) -> None:
        self.closed = True
        self.hangup.set()
        self._data.set()
        self._acked.set()
        self.opened.set()

    def acked(self) -> None:
        self._acked.set()

    async def read_exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if self.closed:
                raise AdbStreamClosed()
            self._data.clear()
            await self._data.wait()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def read_some(self) -> bytes:
        while not self._buf:
            if self.closed:
                return b""
            self._data.clear()
            await self._data.wait()
        out = bytes(self._buf)
        self._buf.clear()
        return out

    async def write(self, data: bytes) -> None:
        step = self.conn.peer_max
        for i in range(0, len(data), step):
            if self.closed:
                raise AdbStreamClosed()
            self._acked.clear()
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i : i + step])
            await self.conn.drain()
            await self._acked.wait()  # one outstanding WRTE per stream

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
            await self.conn.drain()
        self.conn.streams.pop(self.local_id, None)


class _StdinPipe:
    """A command's standard input, fed by the stream while the shell runs in a worker thread.

    ``read`` blocks (in the worker) until the host closes stdin: shell v2's close-stdin packet
    (id 4), or the end of a raw stream. Only commands that read stdin call it.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.done = threading.Event()

    def read(self) -> bytes:
        self.done.wait()
        out = bytes(self.buf)
        self.buf.clear()
        return out

    async def collect_v2(self, s: StreamIO) -> None:
        try:
            while True:
                head = await s.read_exactly(5)
                data = await s.read_exactly(struct.unpack("<I", head[1:])[0])
                if head[0] == 0:  # kIdStdin
                    self.buf += data
                elif head[0] == 4:  # kIdCloseStdin
                    break
        except AdbStreamClosed:
            pass
        finally:
            self.done.set()

    async def collect_raw(self, s: StreamIO) -> None:
        try:
            while data := await s.read_some():
                self.buf += data
        finally:
            self.done.set()


class AdbDeviceConnection:
    """One transport connection from the adb server."""

    _count = 0

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, backend: DeviceBackend):
        self.reader, self.writer = reader, writer
        self.backend = backend
        self.streams: dict[int, StreamIO] = {}
        self.next_id = 1
        self.peer_max = 4096
        self.tasks: set[asyncio.Task] = set()
        self.online = False  # until the host's CNXN is answered: every other packet is dropped
        AdbDeviceConnection._count += 1
        self.conn_id = AdbDeviceConnection._count

    async def run(self) -> None:
        try:
            while True:
                cmd, a0, a1, data = await self._read_packet()
                await self._dispatch(cmd, a0, a1, data)
        except (asyncio.IncompleteReadError, ConnectionError, AdbProtocolError):
            pass
        finally:
            self.abort()

    def _drop_streams(self) -> None:
        """End every stream without a CLSE (the host has dropped them too) and its command."""
        for s in list(self.streams.values()):
            s.remote_closed()
        self.streams.clear()
        for t in list(self.tasks):
            t.cancel()

    def abort(self) -> None:
        """Drop the connection at once, as an unplugged cable does."""
        self._drop_streams()
        self.backend.reverse.drop_connection(self)
        self.writer.transport.abort()

    async def _read_packet(self) -> tuple[int, int, int, bytes]:
        cmd, a0, a1, length, _crc, magic = HEADER.unpack(await self.reader.readexactly(HEADER.size))
        if magic != cmd ^ 0xFFFFFFFF:
            raise AdbProtocolError("bad magic")
        if length > MAX_PAYLOAD:
            raise AdbProtocolError(f"payload of {length} bytes exceeds max {MAX_PAYLOAD}")
        data = await self.reader.readexactly(length) if length else b""
        return cmd, a0, a1, data

    def send(self, command: int, a0: int, a1: int, data: bytes = b"") -> None:
        if not self.writer.is_closing():
            self.writer.write(pack(command, a0, a1, data))

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except ConnectionError:
            pass

    async def _dispatch(self, cmd: int, a0: int, a1: int, data: bytes) -> None:
        if self.backend.faults.on_event is not None:
            self.backend.faults.on_event("packet")
        if cmd == A_CNXN:
            if self.online:
                # adbd's handle_offline: a new handshake ends every stream of the old one.
                self._drop_streams()
            self.peer_max = min(a1, MAX_PAYLOAD) or 4096
            self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.backend.identity.banner())
            self.online = True
        elif cmd in (A_AUTH, A_STLS):
            raise AdbProtocolError("AUTH/TLS are not supported: the virtual phone skips authentication")
        elif not self.online:
            pass  # adbd drops OPEN, WRTE, OKAY and CLSE of a transport that is not online
        elif cmd == A_OPEN:
            stream = StreamIO(self, self.next_id, a0)
            self.next_id += 1
            self.streams[stream.local_id] = stream
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            task = asyncio.get_running_loop().create_task(self._serve(stream, service))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif cmd == A_OKAY:
            s = self.streams.get(a1)
            if s is not None:
                if s.remote_id == 0:  # the host accepted a stream the phone opened
                    s.remote_id = a0
                    s.opened.set()
                else:
                    s.acked()
        elif cmd == A_CLSE:
            s = self.streams.pop(a1, None)
            if s is not None:
                if not s.closed:
                    # The echo adbd sends: its socket closes, and so tells the host it is gone.
                    self.send(A_CLSE, s.local_id, s.remote_id)
                s.remote_closed()
        elif cmd == A_WRTE:
            s = self.streams.get(a1)
            if s is not None:
                s.feed(data)
                self.send(A_OKAY, s.local_id, s.remote_id)
        else:
            raise AdbProtocolError(f"unknown command 0x{cmd:08x}")
        await self.drain()

    async def _serve(self, s: StreamIO, service: str) -> None:
        handler = self._route(service)
        if handler is None:
            # Refused: no OKAY, and CLSE with local-id 0, which is how the protocol says "OPEN
            # failed" (a non-zero id would leave the server waiting for an OKAY).
            s.closed = True
            self.streams.pop(s.local_id, None)
            self.send(A_CLSE, 0, s.remote_id)
            await self.drain()
            return
        self.send(A_OKAY, s.local_id, s.remote_id)
        try:
            await handler(s)
        except AdbStreamClosed:
            pass
        finally:
            await s.close()

    def _route(self, service: str) -> SocketHandler | None:
        b = self.backend
        if service.startswith("shell:"):
            cmd = service[len("shell:"):]
            return lambda s: self._shell_v1(s, cmd)
        if service.startswith("shell,") and ":" in service:
            cmd = service.split(":", 1)[1]
            return lambda s: self._shell_v2(s, cmd)
        if service == "sync:":
            return self._sync
        if service.startswith("exec:"):
            cmd = service[len("exec:"):]
            return lambda s: self._exec(s, cmd, hangup_on_close=False)
        if service in ("root:", "unroot:"):
            # adbd of a user build (ro.debuggable=0): it answers, closes, and stays unprivileged.
            msg = (b"adbd cannot run as root in production builds\n" if service == "root:"
                   else b"adbd not running as root\n")
            return lambda s: s.write(msg)
        if service.startswith("reverse:"):
            req = service[len("reverse:"):]
            return lambda s: self._reverse(s, req)
        if service.startswith(("tcp:", "localabstract:")):
            if service.startswith("tcp:") and service.count(":") > 1:
                service = "tcp:" + service.rsplit(":", 1)[1]  # tcp:HOST:PORT -> tcp:PORT
            return b.sockets.get(service)
        return None

    # -- shell ---------------------------------------------------------------------------
    async def _shell_v1(self, s: StreamIO, cmd: str) -> None:
        if not cmd.strip():
            await s.write(b"interactive shells are not supported by the virtual phone\n")
            return
        await self._exec(s, cmd)

    async def _run_shell(self, s: StreamIO, cmd: str, collect: Callable[[_StdinPipe], Awaitable[None]],
                         hangup_on_close: bool = True) -> ShellResult:
        """Run ``cmd`` in the phone's shell on a thread of its own, its stdin pumped by ``collect``.

        A thread per command, not a pool: a pool shared with the agent let six orphaned
        ``sleep 12`` delay a ``time`` reply by 11.5 s. The stream's hang-up event stops the
        command when the host closes the stream (``shell``: adbd sends SIGHUP) or this task is
        cancelled (transport gone). ``exec`` (``hangup_on_close`` False) is a bare pipe in adbd:
        the host's close is the end of stdin (``adb exec-in``), and the command runs on.
        """
        hangup = s.hangup if hangup_on_close else threading.Event()
        stdin = _StdinPipe()
        loop = asyncio.get_running_loop()
        task = loop.create_task(collect(stdin))
        done: asyncio.Future = loop.create_future()

        def settle(fn: Callable, value: object) -> None:
            if not done.done():
                fn(value)

        def work() -> None:
            try:
                res = self.backend.shell.run(cmd, stdin.read, hangup=hangup)
            except Exception as exc:
                # A bug of the model must never read as a command with empty output and no
                # error: say so on stderr with status 255, and log it.
                log.exception("vphone shell: %r failed", cmd[:200])
                msg = f"/system/bin/sh: virtual phone internal error: {type(exc).__name__}: {exc}\n".encode()
                res = ShellResult(b"", msg, 255, msg)
            fn = done.set_result
            try:
                loop.call_soon_threadsafe(settle, fn, res)
            except RuntimeError:
                pass  # the phone stopped (its loop is closed): nobody waits for the result

        threading.Thread(target=work, name=f"vphone-shell-{self.conn_id}-{s.local_id}", daemon=True).start()
        try:
            return await done
        finally:
            hangup.set()  # a no-op once the command ended; on cancellation, it stops it
            stdin.done.set()
            task.cancel()

    async def _exec(self, s: StreamIO, cmd: str, hangup_on_close: bool = True) -> None:
        # Raw services: stdin is whatever the host writes until it closes the stream (exec-in).
        res = await self._run_shell(s, cmd, lambda pipe: pipe.collect_raw(s), hangup_on_close)
        if res.combined and not s.closed:
            await s.write(res.combined)

    # -- reverse -------------------------------------------------------------------------
    async def _reverse(self, s: StreamIO, req: str) -> None:
        rev = self.backend.reverse
        ok = b"OKAY"

        def fail(msg: str) -> bytes:
            m = msg.encode()
            return b"FAIL" + f"{len(m):04x}".encode() + m

        if req == "list-forward":
            # adbd names the transport the forward belongs to; over TCP that is "host-N".
            # Unlike the other requests, the device sends no OKAY before the listing.
            text = "".join(f"host-{self.conn_id} {local} {remote}\n" for local, remote in rev.listing())
            await s.write(f"{len(text.encode()):04x}".encode() + text.encode())
        elif req == "killforward-all":
            await rev.remove_all()
            await s.write(ok)
        elif req.startswith("killforward:"):
            local = req[len("killforward:"):]
            await s.write(ok if await rev.remove(local) else fail(f"listener '{local}' not found"))
        elif req.startswith("forward:"):
            spec = req[len("forward:"):]
            norebind = spec.startswith("norebind:")
            if norebind:
                spec = spec[len("norebind:"):]
            local, _, remote = spec.partition(";")
            try:
                port = await rev.add(local, remote, norebind, self)
            except ValueError as exc:
                await s.write(fail(str(exc)))
                return
            reply = ok
            if local == "tcp:0":
                reply += f"{len(str(port)):04x}{port}".encode()
            await s.write(reply)
        else:
            await s.write(fail(f"unsupported reverse request '{req}'"))

    async def open_to_host(self, service: str) -> StreamIO | None:
        """Open a stream from the phone to the host (``OPEN(local, 0, service)``); None if refused."""
        stream = StreamIO(self, self.next_id, 0)
        self.next_id += 1
        self.streams[stream.local_id] = stream
        self.send(A_OPEN, stream.local_id, 0, service.encode() + b"\0")
        await self.drain()
        await stream.opened.wait()
        if stream.closed:
            self.streams.pop(stream.local_id, None)
            return None
        return stream

    async def _shell_v2(self, s: StreamIO, cmd: str) -> None:
        if not cmd.strip():
            msg = b"interactive shells are not supported by the virtual phone\n"
            await s.write(b"\x02" + struct.pack("<I", len(msg)) + msg + b"\x03" + struct.pack("<I", 1) + b"\x01")
            return
        res = await self._run_shell(s, cmd, lambda pipe: pipe.collect_v2(s))
        out, err, rc = res.stdout, res.stderr, res.rc
        packet = b""
        if out:
            packet += b"\x01" + struct.pack("<I", len(out)) + out
        if err:
            packet += b"\x02" + struct.pack("<I", len(err)) + err
        packet += b"\x03" + struct.pack("<I", 1) + bytes([rc & 0xFF])
        await s.write(packet)

    # -- sync ----------------------------------------------------------------------------
    async def _sync(self, s: StreamIO) -> None:
        while True:
            try:
                head = await s.read_exactly(8)
            except AdbStreamClosed:
                return
            rid, length = head[:4], struct.unpack("<I", head[4:])[0]
            if rid == b"QUIT":
                return
            if length > 1024:
                await self._sync_fail(s, "path too long")
                return
            path = (await s.read_exactly(length)).decode("utf-8", "replace")
            if rid == b"STAT":
                await s.write(b"STAT" + self._stat_v1(path))
            elif rid in (b"STA2", b"LST2"):
                await s.write(rid + self._stat_v2(path, follow=rid == b"STA2"))
            elif rid in (b"LIST", b"LIS2"):
                await self._sync_list(s, path, v2=rid == b"LIS2")
            elif rid == b"RECV":
                await self._sync_recv(s, path)
            elif rid == b"SEND":
                await self._sync_send(s, path)
            else:
                await self._sync_fail(s, f"unknown sync request {rid!r}")
                return

    async def _sync_fail(self, s: StreamIO, msg: str) -> None:
        m = msg.encode()
        await s.write(b"FAIL" + struct.pack("<I", len(m)) + m)

    def _lstat(self, path: str, follow: bool = True) -> os.stat_result | int:
        try:
            p = self.backend.storage.host_path(path)
            return os.stat(p) if follow else os.lstat(p)
        except OSError as exc:
            return exc.errno or errno.EIO

    def _stat_v1(self, path: str) -> bytes:
        st = self._lstat(path)
        if isinstance(st, int):
            return struct.pack("<III", 0, 0, 0)
        return struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))

    @staticmethod
    def _v2_fields(st: os.stat_result | int) -> bytes:
        if isinstance(st, int):
            return struct.pack("<IQQIIIIQqqq", st, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return struct.pack("<IQQIIIIQqqq", 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink, 10123, 1023,
                           st.st_size, int(st.st_atime), int(st.st_mtime), int(st.st_ctime))

    def _stat_v2(self, path: str, follow: bool) -> bytes:
        return self._v2_fields(self._lstat(path, follow))

    async def _sync_list(self, s: StreamIO, path: str, v2: bool) -> None:
        # adbd: opendir() failing (missing, a file, EACCES) sends DONE and nothing else.
        storage = self.backend.storage
        entries: list[tuple[str, os.stat_result]] = []
        try:
            d = storage.host_path(path)
            storage.check_list(path)
            if d.is_dir():
                names = sorted(os.listdir(d))
                entries = [(".", os.lstat(d)), ("..", os.lstat(d.parent if d != storage.root else d))]
                for name in names:
                    try:
                        entries.append((name, os.lstat(d / name)))
                    except OSError:
                        continue  # removed while listing
        except OSError:
            entries = []
        buf = bytearray()
        for name, st in entries:
            nb = name.encode()
            if v2:
                buf += b"DNT2" + self._v2_fields(st) + struct.pack("<I", len(nb)) + nb
            else:
                buf += b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime),
                                             len(nb)) + nb
        buf += b"DONE" + bytes(72 if v2 else 16)
        await s.write(bytes(buf))

    async def _sync_recv(self, s: StreamIO, path: str) -> None:
        faults = self.backend.faults
        try:
            p = self.backend.storage.host_path(path)
            self.backend.storage.check_read(path)
            if p.is_dir():
                # open(O_RDONLY) of a folder succeeds on Linux; the first read() fails.
                await self._sync_fail(s, "read failed: Is a directory")
                return
            f = open(p, "rb")
        except OSError as exc:
            await self._sync_fail(s, f"open failed: {exc.strerror}")
            return
        if faults.on_event is not None:
            faults.on_event("recv")
        sent = 0
        batch = bytearray()
        # DATA records are packed into WRTEs of up to the peer's max payload: one OKAY round trip
        # per megabyte instead of one per 64 KiB, as adbd does.
        limit = max(self.peer_max - 8, SYNC_DATA_MAX + 8)
        with f:
            while chunk := f.read(SYNC_DATA_MAX):
                if faults.flip_byte_next_pull:
                    faults.flip_byte_next_pull = False
                    mid = len(chunk) // 2
                    chunk = chunk[:mid] + bytes([chunk[mid] ^ 0x10]) + chunk[mid + 1 :]
                if faults.drop_after_bytes is not None and sent + len(chunk) > faults.drop_after_bytes:
                    cut = max(faults.drop_after_bytes - sent, 0)
                    faults.drop_after_bytes = None
                    await s.write(bytes(batch) + b"DATA" + struct.pack("<I", len(chunk)) + chunk[:cut])
                    self.abort()
                    raise AdbStreamClosed()
                record = b"DATA" + struct.pack("<I", len(chunk)) + chunk
                if len(batch) + len(record) > limit:
                    await s.write(bytes(batch))
                    batch.clear()
                batch += record
                sent += len(chunk)
        await s.write(bytes(batch) + b"DONE" + struct.pack("<I", 0))

    def _make_link(self, path: str, data: bytes) -> None:
        """A symlink at device ``path`` to the target in ``data``, kept inside the phone's storage.

        The host link points at the host path of the target's canonical device path, relative to
        the link's folder, so neither an absolute nor a ``..`` target can reach outside the storage.
        """
        storage = self.backend.storage
        target = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if not target:
            raise OSError(errno.EINVAL, "Invalid argument")
        dev_target = canonical(posixpath.join(posixpath.dirname(canonical(path)), target))
        p = storage.host_path(path)
        host_target = storage.root / dev_target.lstrip("/")
        if p.is_symlink() or p.exists():
            if p.is_dir() and not p.is_symlink():
                raise OSError(errno.EISDIR, "Is a directory")
            p.unlink()
        os.symlink(os.path.relpath(host_target, p.parent), p)

    async def _sync_send(self, s: StreamIO, spec: str) -> None:
        path, _, mode_s = spec.rpartition(",")
        if not path:
            path, mode_s = spec, "33188"
        storage = self.backend.storage
        error = None
        f = tmp = None
        try:
            p = storage.host_path(path)
            if not p.parent.is_dir():
                try:  # fixed_push_mkdir: adbd creates the parents first
                    storage.check_write(posixpath.dirname(path))
                    p.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise SyncSendError(f"secure_mkdirs failed: {exc.strerror}") from None
            if p.is_dir():
                raise OSError(errno.EISDIR, "Is a directory")
            storage.check_write(path)
            tmp = p.with_name(f".{p.name}.adb-send")
            f = open(tmp, "wb")
        except SyncSendError as exc:
            error = str(exc)
        except OSError as exc:
            error = f"couldn't create file: {exc.strerror}"
        written = 0
        mtime = None
        link_data = b""
        while True:
            rid = await s.read_exactly(4)
            n = struct.unpack("<I", await s.read_exactly(4))[0]
            if rid == b"DATA":
                if n > SYNC_DATA_MAX:
                    error = error or "DATA chunk too large"
                    break
                data = await s.read_exactly(n)
                if mode_s.isdigit() and stat.S_ISLNK(int(mode_s)):
                    link_data += data
                if f is not None and error is None:
                    written += n
                    if storage.full or written > storage.free_bytes():
                        error = "No space left on device"
                    else:
                        f.write(data)
            elif rid == b"DONE":
                mtime = n
                break
            else:
                error = error or f"unexpected sync id {rid!r}"
                break
        link = mode_s.isdigit() and stat.S_ISLNK(int(mode_s))
        if f is not None:
            f.close()
            if error is None and link:
                # adbd's handle_send_link: the data is the link's target (NUL-terminated).
                tmp.unlink(missing_ok=True)
                try:
                    self._make_link(path, link_data)
                except OSError as exc:
                    error = f"symlink failed: {exc.strerror}"
            elif error is None:
                os.replace(tmp, p)
                try:
                    os.chmod(p, int(mode_s) & 0o777 if mode_s.isdigit() else 0o644)
                    if mtime:
                        os.utime(p, (time.time(), mtime))
                except OSError:
                    pass
            else:
                tmp.unlink(missing_ok=True)
        if error:
            await self._sync_fail(s, error)
        else:
            await s.write(b"OKAY" + struct.pack("<I", 0))


async def serve_device(backend: DeviceBackend, port: int = 0, host: str = "127.0.0.1") -> asyncio.Server:
    """Start serving the device protocol on ``host:port`` (0 = any free port)."""
    conns: set[AdbDeviceConnection] = set()

    async def on_conn(reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else ~40 ms per call
        conn = AdbDeviceConnection(reader, writer, backend)
        conns.add(conn)
        try:
            await conn.run()
        finally:
            conns.discard(conn)

    server = await asyncio.start_server(on_conn, host, port)
    server.hzsr_connections = conns  # type: ignore[attr-defined]
    return server


__all__ = ["DeviceBackend", "DeviceIdentity", "ReverseForwards", "StreamIO", "TransferFaults", "serve_device", "stat"]
