"""One writer per folder: an exclusive ``flock`` on a lock file inside it.

``SessionLock`` (``<session>/.hzsr.lock``): ``capture``, ``capture resume`` and ``capture purge``
hold it for as long as they run, and ``dataset pack`` holds it while it reads a session, so a
capture still being written is never packed. ``DatasetLock`` (``<dataset>/.hzsr-dataset.lock``):
``dataset pack``, ``verify --repair``, ``split`` and ``ingest`` hold it, so two packs into one
data set never plan the same shard names (which lost captures).

A second writer fails at once with one line naming the holder's PID (written into the file by
the holder), or, given ``wait_s``, waits up to that long for the holder to finish. The kernel
drops a ``flock`` when its holder dies however it dies (SIGKILL, power cut of the process), so a
stale lock needs no clean-up: the next writer simply gets it, and sees the dead holder's PID
still in the file, which it reports as taken over. The file itself is never deleted: unlinking
it while another process waits on it would let two writers lock two different files.

The lock file is opened with ``O_NOFOLLOW``: a lock file that is a symbolic link (planted to make
hzsr write through it into another file) is refused, never followed.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

from hzsr.core.errors import DatasetBusyError, HzsrError, SessionBusyError

LOCK_NAME = ".hzsr.lock"
DATASET_LOCK_NAME = ".hzsr-dataset.lock"
_POLL_S = 0.05


class FolderLock:
    """Exclusive lock of a folder, through the file ``name`` inside it.

    Args:
        folder: the folder; created if missing (a new session or data set).
        name: the lock file's name.
        error: the ``HzsrError`` class raised when another process holds the lock.
        holders: who may hold it, for the error line ("hzsr capture, resume or purge").
    """

    def __init__(self, folder: str | Path, name: str = LOCK_NAME, error: type[HzsrError] = SessionBusyError,
                 holders: str = "hzsr capture, resume or purge"):
        self.dir = Path(folder)
        self.path = self.dir / name
        self.error = error
        self.holders = holders
        self._fd: int | None = None
        #: PID left in the file by a holder that died without releasing (None: clean hand-over).
        self.took_over_from: int | None = None

    @staticmethod
    def _read_pid(fd: int) -> int | None:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 64).decode(errors="replace").strip()
        return int(text) if text.isdigit() else None

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a symlink
                raise self.error("is a symbolic link; refusing to write through it (remove it)",
                                 file=self.path, unreadable=True) from None
            raise

    def acquire(self, wait_s: float = 0.0) -> FolderLock:
        """Take the lock, waiting up to ``wait_s`` seconds for a holder; else raise ``self.error``.

        Args:
            wait_s: 0 (the default) fails at once when the lock is held.
        """
        if self._fd is not None:
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = self._open()
        deadline = time.monotonic() + max(0.0, wait_s)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = self._read_pid(fd)
                        who = f"pid {holder}" if holder else "another process"
                        waited = f" (waited {wait_s:g} s)" if wait_s > 0 else ""
                        raise self.error(f"in use by {who} ({self.holders}){waited}; wait for it to finish "
                                         "or stop it", file=self.dir) from None
                    time.sleep(_POLL_S)
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

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class SessionLock(FolderLock):
    """Exclusive lock of a session folder (``<session>/.hzsr.lock``).

    Args:
        session_dir: the folder; created if missing (a new session).
    """

    def __init__(self, session_dir: str | Path):
        super().__init__(session_dir, LOCK_NAME, SessionBusyError, "hzsr capture, resume or purge")


class DatasetLock(FolderLock):
    """Exclusive lock of a data set folder (``<dataset>/.hzsr-dataset.lock``).

    Args:
        dataset_dir: the folder; created if missing (a new data set).
    """

    def __init__(self, dataset_dir: str | Path):
        super().__init__(dataset_dir, DATASET_LOCK_NAME, DatasetBusyError,
                         "another hzsr dataset pack, verify --repair, split, ingest or a browse label")
