"""Fresh pages for every big array: an operating-system cost of packing that is not the pack's own work.

Used by ``hzsr dataset pack``; in ``core`` because any code decoding many big images may use it.

**Fresh pages for every decoded frame.** A 12 MP RGB frame is a 36 MB array. glibc serves
allocations above its mmap threshold (at most 32 MiB when left dynamic) with a fresh ``mmap``
and returns them with ``munmap``, so every decode of a pack faulted in and zeroed 36 MB of new
pages, and gave them back a moment later: 0.1 s of kernel time per 12 MP capture on this VM,
a third of the decode-plus-hash floor itself (``bench/pack.py``, docs/benchmarks.md).
``reuse_freed_buffers`` raises glibc's mmap and trim thresholds, so a freed frame stays in the
heap and the next decode reuses its pages; ``release_freed_buffers`` (``malloc_trim``) hands
the heap back to the system when a shard is done, so a long-lived process keeps no more than
before. Only glibc on Linux is tuned; elsewhere both are no-ops.

Starting the kernel's writeback after each capture (``sync_file_range`` from a thread, so that
the shard's final fsync finds little left) was tried and made no difference (paired, 5 rounds
each, one core); it is not kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
from functools import cache

#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: Largest single allocation kept in the heap rather than mmapped: a 48 MP RGB frame (144 MB) with room.
MMAP_THRESHOLD = 512 << 20
#: Free memory at the heap's top kept for reuse rather than trimmed at once (``release_freed_buffers`` trims).
TRIM_THRESHOLD = 1 << 30

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


def share_one_heap() -> bool:
    """Let every thread allocate from one heap (glibc ``mallopt(M_ARENA_MAX, 1)``); True when set.

    With decode threads a frame is allocated on a pool thread and freed by the writer thread.
    glibc gives each thread its own arena, whose heaps hold at most 64 MiB (one 36 MB frame
    each), so every arena faults in and zeroes its own frames' worth of fresh memory before
    frames are reused. One heap warms up once and hands a freed frame to whichever thread
    decodes next, as ``reuse_freed_buffers`` does for one thread. ``pack --workers 2``, 8 captures,
    4 paired runs: 2-10 % less CPU (median 7 %), half the kernel time, 7-20 % smaller peak RSS;
    6 later pairs of the whole sixth pass against main: median 3.5 % less CPU (docs/benchmarks.md,
    Pack, sixth pass). The cost, one lock for threads that malloc, is small
    for threads that allocate a few large frames.

    Process-wide, for threads that have not allocated yet; not undone. glibc then hands such a
    thread one of the arenas that exist, in turn, rather than a new one: the main heap, or one an
    earlier thread made (importing pandas imports pyarrow, whose ``jemalloc_bg_thd``
    thread takes one). After a ``--workers 2`` pack of 4 captures the process holds 2
    arenas, against 7 without. Call it before starting threads (``pack_dataset`` does, before its
    progress bar's monitor thread). A no-op returning False outside glibc.
    """
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, 1))


def release_freed_buffers() -> None:
    """Return the heap's free memory to the system (glibc ``malloc_trim(0)``); a no-op elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
