"""Export to Hugging Face ``datasets``: the images bit-identical, the metadata complete."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hzsr.cli import main
from hzsr.dataset.reader import ShardReader

datasets = pytest.importorskip("datasets")


def test_hf_export_round_trip(packed, tmp_path, capsys):
    out = tmp_path / "hf"
    assert main(["dataset", "export", str(packed), "--format", "hf", "--out", str(out), "--quiet"]) == 0
    ds = datasets.load_from_disk(str(out))
    r = ShardReader(packed)
    assert len(ds) == len(r.ids()) == 8
    by_id = {row["capture_id"]: row for row in ds}
    for cid in r.ids():
        s, row = r.read(cid), by_id[cid]
        assert np.array_equal(np.asarray(row["main_W"]), s.main_W)
        assert np.array_equal(np.asarray(row["main_T"]), s.main_T)
        assert (row["ref_T"] is None) == (s.ref_T is None)
        if s.ref_T is not None:
            assert np.array_equal(np.asarray(row["ref_T"]), s.ref_T)
        meta = json.loads(row["meta_json"])
        assert meta["frames"]["main_T"]["sha256"] == s.meta["frames"]["main_T"]["sha256"]
        assert row["scene_kind"] == s.meta["scene_kind"]
    qa = json.loads(by_id["sB/c00002"]["manifest_json"])
    assert qa["qa_verdict"] == "fail" and by_id["sB/c00002"]["verdict"] == "fail"
    assert main(["dataset", "export", str(packed), "--format", "hf", "--out", str(out)]) == 2  # never overwrites
