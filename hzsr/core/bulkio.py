"""Two operating-system costs of writing big files that are not the writer's own work, and how they are avoided.

Used by ``hzsr dataset pack``; in ``core`` because any writer of big files may use it.

1. **Fresh pages for every decoded frame.** A 12 MP RGB frame is a 36 MB array. glibc serves
   allocations above its mmap threshold (at most 32 MiB when left dynamic) with a fresh ``mmap``
   and returns them with ``munmap``, so every decode of a pack faulted in and zeroed 36 MB of new
   pages, and gave them back a moment later: 0.1 s of kernel time per 12 MP capture on this VM,
   a third of the decode-plus-hash floor itself (``bench/pack.py``, docs/benchmarks.md).
   ``reuse_freed_buffers`` raises glibc's mmap and trim thresholds, so a freed frame stays in the
   heap and the next decode reuses its pages; ``release_freed_buffers`` (``malloc_trim``) hands
   the heap back to the system when a shard is done, so a long-lived process keeps no more than
   before. Only glibc on Linux is tuned; elsewhere both are no-ops.
2. **One long fsync at the end of a file.** A 1 GiB shard's pages used to sit dirty until the
   commit's fsync, which then waited for all of them. ``Writeback.kick`` asks the kernel to start
   writing what is already written (``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which does not
   wait for the disk) after each capture, so the disk works while the next capture decodes and
   the final fsync (still done: it is what makes
   the file durable) finds little left.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from functools import cache

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Largest single allocation kept in the heap rather than mmapped: a 48 MP RGB frame (144 MB) with room.
MMAP_THRESHOLD = 512 << 20
#: Free memory at the heap's top kept for reuse rather than trimmed at once (``release_freed_buffers`` trims).
TRIM_THRESHOLD = 1 << 30
_SYNC_FILE_RANGE_WRITE = 2

_lock = threading.Lock()
_tuned = False


@cache
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    if not all(hasattr(libc, f) for f in ("mallopt", "malloc_trim", "gnu_get_libc_version")):
        return None  # not glibc (musl has no mallopt thresholds)
    libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return libc


def reuse_freed_buffers() -> bool:
    """Keep freed large buffers in this process's heap for reuse (glibc ``mallopt``); True when set.

    Process-wide and idempotent. Memory is not lost: ``release_freed_buffers`` trims the heap.
    """
    global _tuned
    libc = _libc()
    if libc is None:
        return False
    with _lock:
        if not _tuned:
            _tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        return _tuned


def release_freed_buffers() -> None:
    """Return the heap's free memory to the system (glibc ``malloc_trim(0)``); a no-op elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class Writeback:
    """Start the kernel's write-out of a file's dirty pages, from a thread of its own.

    ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` waits for nothing on the disk, but it does block
    while the device's request queue is full: 25-40 ms per 108 MB capture on this VM. Called
    from the writer it stalled the pack; here a daemon thread calls it whenever ``kick`` asks,
    so the writer goes on at once. Use as a context manager, inside the file's own: the thread
    is joined before the file (and its descriptor) closes.

    Args:
        fd: an open descriptor of the file (``h5py.File.id.get_vfd_handle()``); it is not closed.
            None (another HDF5 driver) or a libc without ``sync_file_range``: kicking does nothing.
    """

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        libc = _libc() if fd is not None else None
        self._sfr = getattr(libc, "sync_file_range", None)
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Writeback:
        if self._sfr is not None:
            self._thread = threading.Thread(target=self._run, name="writeback", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def kick(self) -> None:
        """Ask for every dirty page of the file to be queued for writing; returns at once."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop or self._sfr is None:
                return
            # An error (a filesystem without it) turns kicking off: durability never rests on
            # it, the final fsync does.
            if self._sfr(self.fd, 0, 0, _SYNC_FILE_RANGE_WRITE) != 0:
                self._sfr = None
