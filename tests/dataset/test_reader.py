"""ShardReader: lazy opening, pickling, forked and spawned workers, splits, errors."""

import multiprocessing as mp
import pickle

import numpy as np
import pytest

from hzsr.core.errors import DatasetError
from hzsr.dataset.reader import ShardReader


def _digest(reader: ShardReader, ids: list[str]) -> list[float]:
    return [float(reader.read_patch(i, "main_W", 5, 7, 32, 32).astype(np.float64).sum()) for i in ids]


def _worker(args):
    reader, ids = args
    return _digest(reader, ids)


def test_lazy_open_and_pickle(packed):
    r = ShardReader(packed)
    assert r._files == {}  # nothing opened by __init__
    ids = r.ids()
    want = _digest(r, ids)
    assert r._files  # opened on first read
    r2 = pickle.loads(pickle.dumps(r))
    assert r2._files == {}
    assert _digest(r2, ids) == want


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_workers(packed, method):
    r = ShardReader(packed)
    ids = r.ids()
    want = _digest(r, ids)  # the parent holds open handles before the workers start
    ctx = mp.get_context(method)
    with ctx.Pool(2) as pool:
        got = pool.map(_worker, [(r, ids[:4]), (r, ids[4:])])
    assert got[0] + got[1] == want


def test_fork_drops_inherited_handles(packed):
    r = ShardReader(packed)
    r.read_patch(r.ids()[0], "main_W", 0, 0, 8, 8)
    parent_handle = next(iter(r._files.values()))
    ctx = mp.get_context("fork")
    q = ctx.Queue()

    def child():
        r.read_patch(r.ids()[0], "main_W", 0, 0, 8, 8)
        q.put(next(iter(r._files.values())) is not parent_handle)

    p = ctx.Process(target=child)
    p.start()
    p.join(30)
    assert q.get(timeout=5) is True


def test_unknown_capture_and_split(packed):
    r = ShardReader(packed)
    with pytest.raises(DatasetError, match="manifest.csv: capture_id: unknown capture 'nope'"):
        r.read("nope")
    with pytest.raises(DatasetError, match="splits.csv"):
        r.ids("train")


def test_missing_manifest(tmp_path):
    with pytest.raises(DatasetError, match="manifest.csv: manifest not found"):
        ShardReader(tmp_path).ids()
