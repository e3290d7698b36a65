"""A trained checkpoint records what it was trained from, so a rerun that differs can be located."""

import copy
import dataclasses
import shutil

import numpy as np
import torch

from hzsr.baseline_model.checkpoint import read_checkpoint
from hzsr.baseline_model.data import cache_name
from hzsr.baseline_model.provenance import compare, data_digest, main
from hzsr.dataset.reader import ShardReader


def _cache_paths(run, ids):
    (key,) = [p for p in (run / "cache").iterdir() if p.is_dir()]
    return [key / cache_name(cid) for cid in ids]


def test_checkpoint_records_its_training_data_and_code(tiny_dataset, tiny_run):
    ids = ShardReader(tiny_dataset).ids("train")
    for name in ("model.pt", "ckpt-last.pt"):
        prov = read_checkpoint(tiny_run / name)["provenance"]
        assert prov["data"]["captures"] == ids
        assert len(prov["data"]["shards_sha256"]) == 64 and len(prov["data"]["inputs_sha256"]) == 64
        assert prov["code"]["torch"] == torch.__version__ and prov["code"]["numpy"] == np.__version__
    # The digest is the data's: recomputed from the data set and the run's cache it is the same.
    reader = ShardReader(tiny_dataset)
    assert data_digest(reader, ids, _cache_paths(tiny_run, ids)) == prov["data"]


class _OnePixelOff:
    """A reader whose first capture's main_T differs by one pixel value: a renderer that moved."""

    def __init__(self, reader, cid):
        self.reader, self.cid = reader, cid

    def read(self, cid):
        s = self.reader.read(cid)
        if cid != self.cid:
            return s
        t = s.main_T.copy()
        t[0, 0, 0] ^= 1
        return dataclasses.replace(s, main_T=t)

    def truth(self, cid):
        return self.reader.truth(cid)


def test_digest_tells_rendered_data_from_aligned_inputs(tiny_dataset, tiny_run, tmp_path):
    reader = ShardReader(tiny_dataset)
    ids = reader.ids("train")
    paths = _cache_paths(tiny_run, ids)
    base = data_digest(reader, ids, paths)

    moved = data_digest(_OnePixelOff(reader, ids[0]), ids, paths)
    assert moved["shards_sha256"] != base["shards_sha256"] and moved["inputs_sha256"] == base["inputs_sha256"]

    copies = []
    for i, p in enumerate(paths):
        q = tmp_path / p.name
        shutil.copy(p, q)
        if i == len(paths) - 1:  # the alignment moved one value of the last capture's inputs
            a = np.load(q)
            a.flat[0] = a.flat[0] + np.float16(1)
            np.save(q, a)
        copies.append(q)
    aligned = data_digest(reader, ids, copies)
    assert aligned["shards_sha256"] == base["shards_sha256"] and aligned["inputs_sha256"] != base["inputs_sha256"]
    # Order matters: the same captures in another order are another run's data.
    assert data_digest(reader, ids[::-1], paths[::-1])["inputs_sha256"] != base["inputs_sha256"]


def test_compare_names_what_differs(tiny_run, capsys):
    a = read_checkpoint(tiny_run / "model.pt")
    n = len(a["state_dict"])
    assert main([str(tiny_run / "model.pt"), str(tiny_run / "model.pt")]) == 0
    out = capsys.readouterr().out
    assert f"tensors equal: {n} of {n}" in out and "aligned inputs: same" in out

    b = copy.deepcopy(a)
    first = sorted(b["state_dict"])[0]
    b["state_dict"][first] = b["state_dict"][first] + 1
    b["provenance"]["data"]["inputs_sha256"] = "0" * 64
    b["provenance"]["code"]["torch"] = "0.0"
    b["pipeline"] = {**a["pipeline"], "flow_alpha": -1.0}
    lines = compare(a, b)
    assert "pipeline config: DIFFERENT in flow_alpha" in lines
    assert f"tensors equal: {n - 1} of {n}" in lines
    assert "rendered/packed data: same" in lines and "aligned inputs: DIFFERENT" in lines
    assert any(line.startswith("code.torch:") for line in lines)

    del b["provenance"]
    assert any("cannot be told apart" in line for line in compare(a, b))
