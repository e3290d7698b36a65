"""--workers 2 and a dask LocalCluster give the same manifest and bit-identical arrays as serial."""

import distributed
import h5py
import numpy as np
import pandas as pd
import pytest

from hzsr.dataset.pack import PackConfig, pack_dataset


def _arrays(ds):
    out = {}
    for p in sorted((ds / "shards").glob("shard-*.h5")):
        with h5py.File(p, "r") as h5:
            for cid in h5.attrs["captures"]:
                cid = cid.decode() if isinstance(cid, bytes) else cid
                g = h5["captures"][cid]
                for s in g:
                    if isinstance(g[s], h5py.Dataset):
                        out[(p.name, cid, s)] = (g[s][()], dict(g[s].attrs))
    return out


def _same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k][0], b[k][0]), k
        assert a[k][1].keys() == b[k][1].keys()
        for name in a[k][1]:
            assert np.array_equal(np.asarray(a[k][1][name]), np.asarray(b[k][1][name])), (k, name)


def test_workers_and_localcluster_match_serial(ds_sessions, packed, tmp_path):
    serial_man = pd.read_csv(packed / "manifest.csv")
    serial = _arrays(packed)

    par = tmp_path / "par"
    res = pack_dataset(ds_sessions, par, PackConfig(shard_size="3", workers=2, progress=False))
    assert len(res.written) == 3
    pd.testing.assert_frame_equal(pd.read_csv(par / "manifest.csv"), serial_man)
    _same(_arrays(par), serial)

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        dk = tmp_path / "dask"
        res = pack_dataset(ds_sessions, dk, PackConfig(shard_size="3", scheduler=cluster.scheduler_address,
                                                       progress=False))
    assert res.written == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    pd.testing.assert_frame_equal(pd.read_csv(dk / "manifest.csv"), serial_man)
    _same(_arrays(dk), serial)


def test_unreachable_scheduler(ds_sessions, tmp_path):
    from hzsr.capture.adb_server import free_port
    from hzsr.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--scheduler: cannot reach scheduler"):
        pack_dataset(ds_sessions, tmp_path / "x", PackConfig(scheduler=f"tcp://127.0.0.1:{free_port()}",
                                                              scheduler_timeout_s=1, progress=False))
