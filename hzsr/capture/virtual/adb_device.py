"""The device side of the ADB transport protocol, so the real adb server attaches a virtual phone.

Wire format (AOSP ``adb/protocol.txt``): a 24-byte header of six little-endian u32, ``command,
arg0, arg1, data_length, data_crc32, magic = command ^ 0xffffffff``, then the payload. The server
sends CNXN; a device that answers CNXN with no AUTH goes online. A stream opens with OPEN(local,
0, "service\\0"), is accepted with OKAY(ours, theirs), carries WRTE each acknowledged by OKAY (at
most one unacknowledged WRTE per direction per stream) and ends with CLSE.

Implemented services: ``shell:CMD`` (v1, raw output). The banner advertises only what is
implemented, so adb falls back accordingly.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

A_CNXN = 0x4E584E43
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_WRTE = 0x45545257
A_CLSE = 0x45534C43
A_AUTH = 0x48545541
A_VERSION = 0x01000001
MAX_PAYLOAD = 1024 * 1024
HEADER = struct.Struct("<6I")


class ProtocolError(Exception):
    """The peer broke the ADB protocol; the connection is dropped, the device keeps serving."""


def pack(command: int, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    # The checksum is not checked at A_VERSION 0x01000001, but real devices still send a sum.
    return HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF) + data


@dataclass
class DeviceIdentity:
    serial: str
    props: dict[str, str]
    features: tuple[str, ...] = ()

    def banner(self) -> bytes:
        p = self.props
        head = ";".join(f"{k}={p[k]}" for k in ("ro.product.name", "ro.product.model", "ro.product.device"))
        return f"device::{head};features={','.join(self.features)}".encode()


@dataclass
class _Stream:
    local_id: int
    remote_id: int
    acked: asyncio.Event = field(default_factory=asyncio.Event)


ShellHandler = Callable[[str], tuple[bytes, int]]


class AdbDeviceConnection:
    """One transport connection from the adb server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, identity: DeviceIdentity,
                 shell: ShellHandler):
        self.reader, self.writer = reader, writer
        self.identity = identity
        self.shell = shell
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.peer_max = 4096

    async def run(self) -> None:
        try:
            while True:
                cmd, a0, a1, data = await self._read_packet()
                await self._dispatch(cmd, a0, a1, data)
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError):
            pass
        finally:
            self.writer.close()

    async def _read_packet(self) -> tuple[int, int, int, bytes]:
        cmd, a0, a1, length, _crc, magic = HEADER.unpack(await self.reader.readexactly(HEADER.size))
        if magic != cmd ^ 0xFFFFFFFF:
            raise ProtocolError("bad magic")
        if length > MAX_PAYLOAD:
            raise ProtocolError(f"payload of {length} bytes exceeds max {MAX_PAYLOAD}")
        data = await self.reader.readexactly(length) if length else b""
        return cmd, a0, a1, data

    def _send(self, command: int, a0: int, a1: int, data: bytes = b"") -> None:
        self.writer.write(pack(command, a0, a1, data))

    async def _dispatch(self, cmd: int, a0: int, a1: int, data: bytes) -> None:
        if cmd == A_CNXN:
            self.peer_max = min(a1, MAX_PAYLOAD) or 4096
            self._send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.identity.banner())
        elif cmd == A_OPEN:
            stream = _Stream(self.next_id, a0)
            self.next_id += 1
            self.streams[stream.local_id] = stream
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            asyncio.get_running_loop().create_task(self._serve(stream, service))
        elif cmd == A_OKAY:
            s = self.streams.get(a1)
            if s is not None:
                s.acked.set()
        elif cmd == A_CLSE:
            self.streams.pop(a1, None)
        elif cmd == A_WRTE:
            s = self.streams.get(a1)
            if s is not None:
                self._send(A_OKAY, s.local_id, s.remote_id)
        elif cmd == A_AUTH:
            raise ProtocolError("AUTH is not supported: the virtual phone skips authentication")
        else:
            raise ProtocolError(f"unknown command 0x{cmd:08x}")
        await self.writer.drain()

    async def _write(self, s: _Stream, data: bytes) -> None:
        for i in range(0, len(data), self.peer_max):
            s.acked.clear()
            self._send(A_WRTE, s.local_id, s.remote_id, data[i : i + self.peer_max])
            await self.writer.drain()
            await s.acked.wait()  # one outstanding WRTE per stream

    async def _serve(self, s: _Stream, service: str) -> None:
        # A service we do not implement gets no OKAY, only the CLSE below: adb reports "closed".
        if service.startswith("shell:"):
            self._send(A_OKAY, s.local_id, s.remote_id)
            out, _rc = await asyncio.to_thread(self.shell, service[len("shell:"):])
            if out:
                await self._write(s, out)
        self._send(A_CLSE, s.local_id, s.remote_id)
        self.streams.pop(s.local_id, None)
        await self.writer.drain()


async def serve_device(identity: DeviceIdentity, shell: ShellHandler, port: int = 0,
                       host: str = "127.0.0.1") -> asyncio.Server:
    """Start serving the device protocol on ``host:port`` (0 = any free port)."""

    async def on_conn(reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # else ~40 ms per call
        await AdbDeviceConnection(reader, writer, identity, shell).run()

    return await asyncio.start_server(on_conn, host, port)
