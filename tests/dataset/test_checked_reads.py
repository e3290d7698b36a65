"""Checked reads: a damaged shard is an error naming shard and capture, never pixels (schema 1 and 2)."""

from __future__ import annotations

import h5py
import pytest

import hzsr.dataset.shard as shard_mod
from hzsr.core.errors import DatasetError
from hzsr.dataset.codecs import _codec_kwargs
from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.dataset.reader import ShardReader

CID, SLOT = "sA/c00004", "main_T"


def _flip_byte_in(path, capture_id, slot, chunk=1):
    with h5py.File(path, "r") as h5:
        info = h5["captures"][capture_id][slot].id.get_chunk_info(chunk)
    off = info.byte_offset + info.size // 2
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 0x5A]))


def _pack(sessions, out, monkeypatch=None, schema1=False):
    if schema1:  # what hzsr wrote before Fletcher-32: no per-chunk checksum, schema_version 1
        monkeypatch.setattr(shard_mod, "filter_kwargs", _codec_kwargs)
        monkeypatch.setattr(shard_mod, "SCHEMA_VERSION", 1)
    # "none": no decoder can notice the flipped byte, only the check can.
    pack_dataset(sessions, out, PackConfig(shard_size="3", compression="none", progress=False))
    if schema1:
        monkeypatch.undo()
    return out / "shards" / "shard-00001.h5"


@pytest.mark.parametrize("schema1", [False, True], ids=["schema2-fletcher32", "schema1-sha256"])
def test_damaged_pixels_never_read(sessions, tmp_path, monkeypatch, schema1):
    ds = tmp_path / "ds"
    shard = _pack(sessions, ds, monkeypatch, schema1)
    with h5py.File(shard, "r") as h5:
        assert h5.attrs["schema_version"] == (1 if schema1 else 2)
        assert h5["captures"][CID][SLOT].fletcher32 is not schema1
    r = ShardReader(ds)
    good = r.read("sA/c00003")  # an intact capture of the same shard reads
    assert good.main_T is not None
    _flip_byte_in(shard, CID, SLOT)
    for read in (lambda rd: rd.read(CID), lambda rd: rd.read_patch(CID, SLOT, 0, 100, 16, 16)):
        with pytest.raises(DatasetError) as ei:
            read(ShardReader(ds))
        line = ei.value.one_line()
        assert "\n" not in line
        assert line.startswith(f"{shard}: {CID}: {SLOT}: "), line
        assert "dataset verify" in line
    # A patch away from the damaged chunk: schema 2 checks per chunk, so it reads; schema 1 checks the frame.
    rd = ShardReader(ds)
    if schema1:
        with pytest.raises(DatasetError, match="sha256"):
            rd.read_patch(CID, SLOT, 0, 0, 16, 16)
    else:
        assert rd.read_patch(CID, SLOT, 0, 0, 16, 16).shape == (16, 16, 3)


def test_newer_schema_refused_in_one_line(sessions, tmp_path):
    ds = tmp_path / "ds"
    shard = _pack(sessions[:1], ds)
    with h5py.File(ds / "shards" / "shard-00000.h5", "r+") as h5:
        h5.attrs["schema_version"] = 3
    from hzsr.dataset.pack import build_manifest

    with pytest.raises(DatasetError, match=r"schema_version: unsupported schema 3; this hzsr reads 1, 2"):
        build_manifest(ds)
    assert shard.exists()


def test_export_and_train_stop_on_damage(sessions, tmp_path, capsys):
    from hzsr.cli import main

    ds = tmp_path / "ds"
    shard = _pack(sessions, ds)
    _flip_byte_in(shard, CID, SLOT)
    capsys.readouterr()
    assert main(["dataset", "export", str(ds), "--out", str(tmp_path / "exp"), "--quiet"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"shard-00001.h5: {CID}: {SLOT}: cannot read pixels" in lines[0], lines

    pytest.importorskip("torch")
    from hzsr.baseline_model.config import load_train_config
    from hzsr.baseline_model.train import train

    assert main(["dataset", "split", str(ds), "--ratios", "1,0,0"]) == 0
    cfg = load_train_config(None, ["optim.steps=2", "data.batch_size=2", "data.patch=32"])
    with pytest.raises(DatasetError, match=f"shard-00001.h5: {CID}: {SLOT}: cannot read pixels"):
        train(cfg, ds, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model.pt").exists()
