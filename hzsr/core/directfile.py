"""A write-mostly file for h5py that turns HDF5's many small appends into large direct writes.

Used by ``hzsr dataset pack`` (``h5py.File(DirectAppendFile(path), "w")``: h5py's ``fileobj``
driver); in ``core`` because any code writing big HDF5 files may use it.

Why: HDF5 writes a chunked array one chunk at a time, one ``pwrite`` per 46 KB tile at an odd
offset. Each goes through the page cache: the kernel allocates, copies and dirties 12 pages per
tile, reserves delayed-allocation blocks page by page, and the shard's final fsync writes them all
back. That was 60 ms of CPU per 12 MP capture (perf, docs/benchmarks.md), a quarter of the
decode-plus-hash floor. Here the appends are gathered in a page-aligned buffer and written in
8 MiB ``O_DIRECT`` writes, which the device reads straight from the buffer, so nothing is copied
into or written back from the page cache; the write runs on a helper thread (it waits on the
device, holding no core), so the next chunks are gathered meanwhile.

How the bytes stay right:

- A write that does not continue the current run (HDF5 rewriting metadata further back) first
  sends every pending byte, then starts a new run at the block holding it, that block's earlier
  bytes read back from the file.
- Only whole aligned blocks go by ``O_DIRECT``; the tail of a run is written through the page
  cache by ordinary ``pwrite`` (Linux keeps the two coherent: a direct write flushes and drops the
  cached pages of its range).
- Reads, truncation and ``flush`` send every pending byte first; a read past the end of the file
  gives zeros, as HDF5's own file driver does.
- Where ``O_DIRECT`` is refused (tmpfs, macOS, a file system that rejects it at the first write),
  the same large writes go through the page cache instead: slower, never wrong.

Durability is the caller's: ``hzsr.core.fileio.commit_file`` fsyncs the finished file as before.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

#: Size of one direct write (two such buffers: one being filled, one being written).
RUN_BYTES = 8 << 20
#: Alignment of a direct write's offset, length and memory: the page size covers every block device.
ALIGN = max(4096, mmap.PAGESIZE)

_O_DIRECT: int = getattr(os, "O_DIRECT", 0)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


class DirectAppendFile(io.RawIOBase):
    """A new file (created or truncated) written through large aligned ``O_DIRECT`` writes.

    Args:
        path: the file to create (truncated if it exists); mode 0666 less the umask.
        direct: try ``O_DIRECT`` (False: the same gathering, through the page cache).
        run_bytes: size of one write; a multiple of ``ALIGN``.
    """

    def __init__(self, path: str | Path, direct: bool = True, run_bytes: int = RUN_BYTES) -> None:
        super().__init__()
        if run_bytes <= 0 or run_bytes % ALIGN:
            raise ValueError(f"run_bytes must be a positive multiple of {ALIGN}, got {run_bytes}")
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o666)
        self._dfd: int | None = None
        if direct and _O_DIRECT:
            try:
                self._dfd = os.open(self.path, os.O_WRONLY | _O_DIRECT | getattr(os, "O_CLOEXEC", 0))
            except OSError:  # tmpfs and others: no direct I/O here
                self._dfd = None
        self._bufs = [mmap.mmap(-1, run_bytes), mmap.mmap(-1, run_bytes)]  # page-aligned memory
        self._views = [memoryview(b) for b in self._bufs]
        self._pending: list[Future | None] = [None, None]  # the write still reading each buffer
        self._cur = 0
        self._cap = run_bytes
        self._start = 0  # file offset of the current buffer's first byte (aligned)
        self._n = 0  # bytes of the current run in the buffer
        self._pos = 0  # the seek position
        self._size = 0  # the file's logical size
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="direct-write")
        self._lock = threading.Lock()
        #: Bytes written each way, for the bench and the tests.
        self.bytes_direct = 0
        self.bytes_buffered = 0

    @property
    def direct(self) -> bool:
        """True while writes go by ``O_DIRECT``."""
        return self._dfd is not None

    # io.RawIOBase
    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._pos = offset
        elif whence == io.SEEK_CUR:
            self._pos += offset
        elif whence == io.SEEK_END:
            self._pos = self._size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        return self._pos

    def write(self, data) -> int:  # noqa: ANN001 - any buffer
        mv = memoryview(data).cast("B")
        total = len(mv)
        if not total:
            return 0
        if not (self._n and self._pos == self._start + self._n):
            self._new_run(self._pos)
        while mv:
            room = self._cap - self._n
            if not room:
                self._send_full()
                continue
            k = min(room, len(mv))
            self._views[self._cur][self._n:self._n + k] = mv[:k]
            self._n += k
            mv = mv[k:]
        self._pos += total
        self._size = max(self._size, self._pos)
        return total

    def readinto(self, buf) -> int:  # noqa: ANN001 - any writable buffer
        self._drain()
        mv = memoryview(buf).cast("B")
        got = os.preadv(self._fd, [mv], self._pos) if len(mv) else 0
        mv[got:] = bytes(len(mv) - got)  # past the end: zeros, as HDF5's sec2 driver gives
        self._pos += len(mv)
        return len(mv)

    def truncate(self, size: int | None = None) -> int:
        self._drain()
        size = self._pos if size is None else size
        os.ftruncate(self._fd, size)
        self._size = size
        return size

    def flush(self) -> None:
        if not self.closed:
            self._drain()

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._drain()
        finally:
            self._pool.shutdown(wait=True)
            for fd in (self._dfd, self._fd):
                if fd is not None:
                    os.close(fd)
            self._dfd = None
            for v in self._views:
                v.release()
            for b in self._bufs:
                b.close()
            super().close()

    # internals
    def _new_run(self, pos: int) -> None:
        """Send what is pending and start gathering at ``pos``, from the start of its block."""
        self._drain()
        head = pos % ALIGN if self._dfd is not None else 0
        self._start, self._n = pos - head, 0
        if head:  # this block's bytes before pos, so that the block can be written whole
            mv = self._views[self._cur][:head]
            got = os.preadv(self._fd, [mv], self._start)
            mv[got:] = bytes(head - got)
            self._n = head

    def _send_full(self) -> None:
        """The current buffer is full (whole aligned blocks): write it on the helper thread."""
        i = self._cur
        self._pending[i] = self._pool.submit(self._write, i, self._cap, self._start)
        self._start += self._cap
        self._n = 0
        self._cur = 1 - i
        self._wait(self._cur)  # the other buffer's write must be done before it is refilled

    def _write(self, i: int, n: int, offset: int) -> None:
        view = self._views[i][:n]
        try:
            if self._dfd is not None:
                try:
                    _pwrite_all(self._dfd, view, offset)
                    self.bytes_direct += n
                    return
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    with self._lock:  # accepted at open, refused at write: no direct I/O on this file
                        if self._dfd is not None:
                            os.close(self._dfd)
                            self._dfd = None
            _pwrite_all(self._fd, view, offset)
            self.bytes_buffered += n
        finally:
            view.release()

    def _wait(self, i: int) -> None:
        f = self._pending[i]
        if f is not None:
            self._pending[i] = None
            f.result()  # a failed write raises here

    def _drain(self) -> None:
        """Write every pending byte and wait for both buffers' writes."""
        if self._n:
            aligned = self._n // ALIGN * ALIGN if self._dfd is not None else 0
            if aligned:
                self._wait(self._cur)
                self._write(self._cur, aligned, self._start)
            if self._n > aligned:  # the run's partial last block: through the page cache
                _pwrite_all(self._fd, self._views[self._cur][aligned:self._n], self._start + aligned)
                self.bytes_buffered += self._n - aligned
            self._start += self._n
            self._n = 0
        self._wait(0)
        self._wait(1)
