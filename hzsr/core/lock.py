"""One writer per session folder: an exclusive ``flock`` on ``<session>/.hzsr.lock``.

``capture``, ``capture resume`` and ``capture purge`` hold it for as long as they run; a second
one fails at once with one line naming the holder's PID (written into the file by the holder).
The kernel drops a ``flock`` when its holder dies however it dies (SIGKILL, power cut of the
process), so a stale lock needs no clean-up: the next writer simply gets it, and sees the dead
holder's PID still in the file, which it reports as taken over. The file itself is never
deleted: unlinking it while another process waits on it would let two writers lock two
different files.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from hzsr.core.errors import SessionBusyError

LOCK_NAME = ".hzsr.lock"


class SessionLock:
    """Exclusive lock of a session folder.

    Args:
        session_dir: the folder; created if missing (a new session).
    """

    def __init__(self, session_dir: str | Path):
        self.dir = Path(session_dir)
        self.path = self.dir / LOCK_NAME
        self._fd: int | None = None
        #: PID left in the file by a holder that died without releasing (None: clean hand-over).
        self.took_over_from: int | None = None

    @staticmethod
    def _read_pid(fd: int) -> int | None:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode(errors="replace").strip()
        return int(text) if text.isdigit() else None

    def acquire(self) -> SessionLock:
        """Take the lock or raise ``SessionBusyError`` naming the holder; never blocks."""
        if self._fd is not None:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise SessionBusyError(f"in use by {who} (hzsr capture, resume or purge); wait for it to "
                                   "finish or stop it", file=self.dir) from None
        except BaseException:
            os.close(fd)
            raise
        old = self._read_pid(fd)
        self.took_over_from = old if old and old != os.getpid() else None
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the file (a clean release leaves no PID) and drop the lock."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> SessionLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
