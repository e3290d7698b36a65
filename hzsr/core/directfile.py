"""A write-mostly file for h5py that turns HDF5's many small appends into large direct writes.

Used by ``hzsr dataset pack`` (``h5py.File(DirectAppendFile(path), "w")``: h5py's ``fileobj``
driver); in ``core`` because any code writing big HDF5 files may use it.

Why: HDF5 writes a chunked array one chunk at a time, one ``pwrite`` per 46 KB tile at an odd
offset. Each goes through the page cache: the kernel allocates, copies and dirties 12 pages per
tile, reserves delayed-allocation blocks page by page, and the shard's final fsync writes them all
back: 13 % of a one-core pack's CPU (``perf``, docs/benchmarks.md). Here the appends are gathered
in page-aligned buffers and written in 8 MiB ``O_DIRECT`` writes, which the device reads straight
from the buffer: nothing is copied into or written back from the page cache. The writes run on a
helper thread (it waits on the device, holding no core) while the next buffers fill.

What HDF5 does to a file while it writes a shard, and how each keeps the bytes right:

- **Appends** (every tile, in order) continue the current *run*: gathered, sent a full buffer at a
  time, whole aligned blocks only.
- **A small hole past the end** (HDF5 reserves a 3 KB B-tree node after every 57 tiles and writes
  it when the file closes): the run fills it with zeros, the file's bytes there until written, and
  keeps a copy of the blocks it touches (``kept``).
- **Writes behind the run** (those B-tree nodes, object headers, the superblock): ordinary
  ``pwrite`` through the page cache once no direct write of the same blocks is in flight. A write
  into kept blocks patches the copy and writes the blocks whole, so the kernel need not read them
  back from the device first. Linux keeps direct and cached I/O coherent: a direct write flushes
  and drops the cached pages of its range.
- **Anything else** (a read, a truncation, ``flush``, a jump far past the end) sends every pending
  byte first; a new run starts at the block holding the position, its earlier bytes read back.
  A read past the end gives zeros, as HDF5's own file driver does.

Where ``O_DIRECT`` is refused (tmpfs, macOS, a file system that rejects it at the first write),
the same large writes go through the page cache: slower, never wrong. Durability is the caller's:
``hzsr.core.fileio.commit_file`` fsyncs the finished file as before.
"""

from __future__ import annotations

import errno
import io
import mmap
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

#: Size of one direct write.
RUN_BYTES = 8 << 20
#: Buffers in the ring: one filling, the rest in flight, so a helper thread that waits for a core
#: (the machine is shared) rarely holds up the writer.
BUFFERS = 4
#: Largest hole past the end that a run fills with zeros; a longer jump starts a new run.
MAX_GAP = 1 << 20
#: Alignment of a direct write's offset, length and memory: the page size covers every block device.
ALIGN = max(4096, mmap.PAGESIZE)

_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
_O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)


def _aligned_buffer(n: int) -> mmap.mmap:
    """``n`` bytes of page-aligned memory: private, in huge pages where the platform allows.

    ``mmap.mmap(-1, n)`` alone is a shared mapping: on Linux its pages come from shmem, one fault
    of a zeroed 4 KiB page at a time. Filling 32 MiB of it took 33 ms of CPU, 23 ms private, 6 ms
    private in 2 MiB pages (``MADV_HUGEPAGE``; this VM's transparent huge pages are "madvise").
    """
    flags = getattr(mmap, "MAP_PRIVATE", None)
    if flags is None:  # Windows: no flags argument
        return mmap.mmap(-1, n)
    buf = mmap.mmap(-1, n, flags=flags | getattr(mmap, "MAP_ANONYMOUS", 0x20))
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buf.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # a kernel without transparent huge pages: 4 KiB pages, still right
            pass
    return buf


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
        buffers: buffers in the ring (>= 2).
    """

    def __init__(self, path: str | Path, direct: bool = True, run_bytes: int = RUN_BYTES,
                 buffers: int = BUFFERS) -> None:
        super().__init__()
        if run_bytes <= 0 or run_bytes % ALIGN:
            raise ValueError(f"run_bytes must be a positive multiple of {ALIGN}, got {run_bytes}")
        if buffers < 2:
            raise ValueError(f"buffers must be >= 2, got {buffers}")
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o666)
        self._dfd: int | None = None
        if direct and _O_DIRECT:
            try:
                self._dfd = os.open(self.path, os.O_WRONLY | _O_DIRECT | _O_CLOEXEC)
            except OSError:  # tmpfs and others: no direct I/O here
                self._dfd = None
        self._bufs = [_aligned_buffer(run_bytes) for _ in range(buffers)]
        self._views = [memoryview(b) for b in self._bufs]
        self._inflight: list[tuple[Future, int, int] | None] = [None] * buffers  # (write, offset, end)
        self._cur = 0
        self._cap = run_bytes
        self._start: int | None = None  # file offset of the current buffer's first byte (aligned); None: no run
        self._n = 0  # bytes of the run in the current buffer
        self._pos = 0  # the seek position
        self._size = 0  # the file's logical size
        self._holes: set[int] = set()  # blocks of the run with zero-filled holes, to keep when sent
        self._kept: dict[int, bytearray] = {}  # block index -> its bytes as last written
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
        mv = memoryview(data)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        total = len(mv)
        pos = self._pos
        o = self._n
        if self._start is not None and pos == self._start + o and o + total <= self._cap:
            # the common case, a tile appended to the run: one copy, nothing else (runs ~2,300 times per capture)
            self._views[self._cur][o:o + total] = mv
            self._n = o + total
            self._pos = pos = pos + total
            if pos > self._size:
                self._size = pos
            return total
        if not total:
            return 0
        if self._start is not None and pos < self._start:  # behind the run
            k = min(total, self._start - pos)
            self._write_behind(mv[:k], pos)
            mv, pos = mv[k:], pos + k
        if mv:
            if self._start is None:
                self._new_run(pos)
            end = self._start + self._n
            if pos > end:
                if end == self._size and pos - end <= MAX_GAP:  # a hole at the end: zeros until written
                    self._holes.update(range(end // ALIGN, (pos - 1) // ALIGN + 1))
                    self._put(memoryview(bytes(pos - end)), end)
                else:
                    self._new_run(pos)
            self._put(mv, pos)
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
        self._kept.clear()
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
                try:
                    b.close()
                except BufferError:
                    # A slice of the ring still referenced elsewhere (seen once in a dask pack under
                    # load: a frame not yet collected) keeps the mapping exported; every byte is
                    # written and both descriptors are closed, so the memory is left to the GC.
                    pass
            super().close()

    # internals
    def _put(self, mv: memoryview, pos: int) -> None:
        """Copy ``mv`` into the run at file offset ``pos`` (inside the run or at its end), sending full buffers."""
        o = pos - self._start
        while mv:
            if o == self._cap:  # full of whole aligned blocks: write it, gather on in the next buffer
                self._send_full()
                o = 0
            k = min(self._cap - o, len(mv))
            self._views[self._cur][o:o + k] = mv[:k]
            o += k
            self._n = max(self._n, o)
            mv = mv[k:]

    def _new_run(self, pos: int) -> None:
        """Send what is pending and start gathering at ``pos``, from the start of its block."""
        self._drain()
        head = pos % ALIGN
        self._start, self._n = pos - head, 0
        first = self._start // ALIGN
        for b in [b for b in self._kept if b >= first]:  # the run will hold these blocks' bytes now
            del self._kept[b]
        if head:  # this block's bytes before pos, so that the block can be written whole
            mv = self._views[self._cur][:head]
            got = os.preadv(self._fd, [mv], self._start)
            mv[got:] = bytes(head - got)
            self._n = head

    def _keep_holes(self, i: int, offset: int, n: int) -> None:
        """Copy the blocks with holes among the ``n`` bytes of buffer ``i`` about to be written at ``offset``."""
        if not self._holes:
            return
        first, last = offset // ALIGN, (offset + n) // ALIGN  # last: exclusive (n is whole blocks)
        for b in [b for b in self._holes if first <= b < last]:
            o = (b - first) * ALIGN
            self._kept[b] = bytearray(self._views[i][o:o + ALIGN])
            self._holes.discard(b)

    def _send_full(self) -> None:
        """The current buffer is full (whole aligned blocks): write it on the helper thread."""
        i, start = self._cur, self._start
        assert start is not None and self._n == self._cap
        self._keep_holes(i, start, self._cap)
        self._inflight[i] = (self._pool.submit(self._write, i, self._cap, start), start, start + self._cap)
        self._start = start + self._cap
        self._n = 0
        self._cur = (i + 1) % len(self._bufs)
        self._wait(self._cur)  # the oldest write must be done before its buffer is refilled

    def _write(self, i: int, n: int, offset: int) -> None:
        view = self._views[i][:n]
        try:
            if self._dfd is not None:
                try:
                    _pwrite_all(self._dfd, view, offset)
                    with self._lock:
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
            with self._lock:
                self.bytes_buffered += n
        finally:
            view.release()

    def _write_behind(self, mv: memoryview, pos: int) -> None:
        """Bytes wholly before the run's first (aligned) block, through the page cache."""
        end = pos + len(mv)
        for i, job in enumerate(self._inflight):  # a direct write of these blocks finishing later would undo this
            if job is not None and job[1] < end and pos < job[2]:
                self._wait(i)
        first, last = pos // ALIGN, (end - 1) // ALIGN
        blocks = range(first, last + 1)
        if all(b in self._kept for b in blocks):  # patch the copies, write the blocks whole: nothing to read back
            whole = bytearray().join(self._kept[b] for b in blocks)
            whole[pos - first * ALIGN:end - first * ALIGN] = mv
            for k, b in enumerate(blocks):
                self._kept[b] = whole[k * ALIGN:(k + 1) * ALIGN]
            _pwrite_all(self._fd, memoryview(whole), first * ALIGN)
            n = len(whole)
        else:
            _pwrite_all(self._fd, mv, pos)
            n = len(mv)
        with self._lock:
            self.bytes_buffered += n

    def _wait(self, i: int) -> None:
        job = self._inflight[i]
        if job is not None:
            self._inflight[i] = None
            job[0].result()  # a failed write raises here

    def _drain(self) -> None:
        """Write every pending byte, wait for every write in flight, and close the run."""
        for i in range(len(self._inflight)):  # first: one write at a time, in order
            self._wait(i)
        if self._start is not None and self._n:
            aligned = self._n // ALIGN * ALIGN if self._dfd is not None else 0
            if aligned:
                self._keep_holes(self._cur, self._start, aligned)
                self._write(self._cur, aligned, self._start)
            if self._n > aligned:  # the run's partial last block: through the page cache
                _pwrite_all(self._fd, self._views[self._cur][aligned:self._n], self._start + aligned)
                with self._lock:
                    self.bytes_buffered += self._n - aligned
        self._start, self._n = None, 0
        self._holes.clear()  # a partial last block is not kept: a later write there is read back by the kernel
