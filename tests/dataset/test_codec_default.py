"""The default codec changed (issue 19: blosc-lz4 -> none -> blosc-lz4 -> none): shards of either stay readable."""

import h5py
import numpy as np

from hzsr.dataset.codecs import DEFAULT_CODEC
from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.dataset.reader import ShardReader
from hzsr.dataset.shard import decode_jpeg


def test_previous_default_shards_and_default_shards_read_alike(ds_sessions, tmp_path):
    """A data set packed with blosc-lz4 (the previous default), then grown by a pack with today's
    default: every capture reads back as its JPEG decodes, from either kind of shard."""
    first, *rest = ds_sessions
    ds = tmp_path / "ds"
    pack_dataset([first], ds, PackConfig(compression="blosc-lz4", progress=False))
    pack_dataset(ds_sessions, ds, PackConfig(progress=False))  # resumes: only the new captures
    filters = set()
    for p in sorted((ds / "shards").glob("shard-*.h5")):
        with h5py.File(p, "r") as h5:
            filters.add(str(h5.attrs["compression"]))
    assert filters == {"blosc-lz4", DEFAULT_CODEC} and DEFAULT_CODEC == "none"
    reader = ShardReader(ds)
    ids = reader.ids()
    assert len(ids) == sum(len(list((s / "captures").iterdir())) for s in ds_sessions)
    for cid in ids:
        sample = reader.read(cid)
        sid, cap = cid.split("/")
        src = next(s for s in ds_sessions if s.name == sid)
        assert np.array_equal(sample.main_W, decode_jpeg(src / "captures" / cap / "main_W.jpg"))
