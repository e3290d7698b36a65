"""One writer per data set: a second pack waits or is refused; two packs at once lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hzsr.core.errors import DatasetBusyError, SessionBusyError
from hzsr.core.lock import DATASET_LOCK_NAME, DatasetLock, SessionLock
from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.dataset.verify import verify_dataset


def _hzsr(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hzsr.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _opened(pid: int, path: Path) -> bool:
    """``pid`` has ``path`` open (it is waiting on the lock): an event, not a timer."""
    try:
        return any(os.path.realpath(f"/proc/{pid}/fd/{fd}") == str(path.resolve())
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False


def test_second_writer_refused_with_holder_pid(sessions, tmp_path):
    out = tmp_path / "ds"
    with DatasetLock(out):
        with pytest.raises(DatasetBusyError, match=f"in use by pid {os.getpid()}"):
            pack_dataset(sessions[:1], out, PackConfig(progress=False))
        p = _hzsr("dataset", "pack", str(sessions[0]), "--out", str(out), "--quiet")
        _, err = p.communicate(timeout=120)
    assert p.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "in use by pid" in lines[0] and str(out) in lines[0], err
    assert not (out / "shards").exists()  # refused before it wrote anything
    # The holder gone, the same pack runs.
    res = pack_dataset(sessions[:1], out, PackConfig(progress=False))
    assert res.captures == 5


def test_two_packs_at_once_lose_no_capture(sessions, tmp_path):
    """Both packs start while the lock is held, so both wait on it; released, both finish, every capture kept."""
    out = tmp_path / "ds"
    lock = DatasetLock(out).acquire()
    procs = [_hzsr("dataset", "pack", str(s), "--out", str(out), "--shard-size", "2", "--wait", "300", "--quiet")
             for s in sessions]
    lock_path = out / DATASET_LOCK_NAME
    deadline = time.monotonic() + 120
    while not all(_opened(p.pid, lock_path) for p in procs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.05)
    lock.release()
    for p in procs:
        o, e = p.communicate(timeout=300)
        assert p.returncode == 0, e
    rep = verify_dataset(out, progress=False)
    assert rep.problems == [] and rep.captures_ok == 8
    shards = sorted(p.name for p in (out / "shards").glob("shard-*.h5"))
    assert len(shards) == 5  # 3 + 2 shards of at most 2 captures, none overwritten


def test_pack_refuses_a_session_being_captured(sessions, tmp_path):
    with SessionLock(sessions[0]):
        with pytest.raises(SessionBusyError, match="still being written"):
            pack_dataset(sessions, tmp_path / "ds", PackConfig(progress=False))
    assert not (tmp_path / "ds" / "shards").exists()


def test_lock_file_symlink_is_not_followed(sessions, tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (out / DATASET_LOCK_NAME).symlink_to(victim)
    with pytest.raises(DatasetBusyError, match="symbolic link"):
        pack_dataset(sessions[:1], out, PackConfig(progress=False))
    assert victim.read_text() == "keep me\n"


def test_missing_session_leaves_no_dataset_folder(tmp_path):
    from hzsr.core.errors import DatasetError

    with pytest.raises(DatasetError, match="session folder not found"):
        pack_dataset([tmp_path / "nope"], tmp_path / "ds", PackConfig(progress=False))
    assert not (tmp_path / "ds").exists()


def test_wait_gives_up_with_the_time_waited(sessions, tmp_path):
    out = tmp_path / "ds"
    with DatasetLock(out):
        with pytest.raises(DatasetBusyError, match=r"in use by pid \d+ .*\(waited 0.3 s\)"):
            pack_dataset(sessions[:1], out, PackConfig(wait_s=0.3, progress=False))
    from hzsr.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--wait: must be in 0 .. 86400 seconds, got -1"):
        pack_dataset(sessions[:1], out, PackConfig(wait_s=-1, progress=False))
