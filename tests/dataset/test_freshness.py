"""Fresh verdicts: info flags results that changed after packing; re-pack refreshes them, pixels untouched."""

from __future__ import annotations

import h5py
import pandas as pd

from hzsr.dataset.info import dataset_info, format_info
from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.dataset.reader import ShardReader
from hzsr.dataset.verify import verify_dataset


def _pixels(ds):
    """Each capture's arrays as stored (sha256 attribute and the raw chunk bytes' identity)."""
    out = {}
    for p in sorted((ds / "shards").glob("shard-*.h5")):
        with h5py.File(p, "r") as h5:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    out[name] = (obj.attrs["array_sha256"], obj.id.read_direct_chunk((0, 0, 0))[1])
            h5["captures"].visititems(visit)
    return out


def test_qa_after_pack_is_flagged_then_refreshed(sessions, tmp_path):
    ds = tmp_path / "ds"
    sA = sessions[0]  # sync checked, no QA yet
    pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False))
    info = dataset_info(ds)
    assert info["freshness"]["checked"] == 8 and info["freshness"]["stale"] == []
    assert "results_sha256" in pd.read_csv(ds / "manifest.csv").columns
    before = _pixels(ds)

    # QA runs after the pack (here: its table appears), and one sync verdict changes.
    (sA / "qa").mkdir()
    (sA / "qa" / "qa.csv").write_text("capture_id,verdict,reasons,ncc,flow_epe_px\n"
                                      "c00001,fail,blur,0.3,6.0\nc00003,pass,,0.9,0.5\n")
    info = dataset_info(ds)
    stale = {s["capture_id"]: s["changed"] for s in info["freshness"]["stale"]}
    assert stale == {"sA/c00001": ["qa"], "sA/c00003": ["qa"]}, stale
    text = "\n".join(format_info(info))
    assert "2 of 8 captures stale" in text and "stale: sA/c00001: qa changed" in text

    res = pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False))
    assert res.new_captures == 0 and sorted(res.refreshed) == ["sA/c00001", "sA/c00003"]
    assert dataset_info(ds)["freshness"]["stale"] == []
    man = pd.read_csv(ds / "manifest.csv").set_index("capture_id")
    assert man.at["sA/c00001", "verdict"] == "fail" and man.at["sA/c00001", "qa_reasons"] == "blur"
    assert ShardReader(ds).meta("sA/c00003")["qa"]["verdict"] == "pass"
    assert _pixels(ds) == before  # the stored chunks are the same bytes: nothing re-encoded
    assert verify_dataset(ds, progress=False).problems == []
    # A second re-pack has nothing to refresh.
    assert pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False)).refreshed == {}


def test_filter_does_not_keep_stale_results(sessions, tmp_path):
    """A capture --filter would now drop is still refreshed: it stays in the data set, so its verdict must be true."""
    ds = tmp_path / "ds"
    pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False))
    sB = sessions[1]
    (sB / "qa" / "qa.csv").write_text("capture_id,verdict,reasons,ncc,flow_epe_px\n"
                                      "c00000,fail,blur,0.2,9.0\nc00001,warn,low ncc,0.55,1.9\n"
                                      "c00002,fail,misaligned | blur,0.2,7.5\n")
    res = pack_dataset(sessions, ds, PackConfig(shard_size="3", filter="verdict != 'fail'", progress=False))
    assert list(res.refreshed) == ["sB/c00000"]
    man = pd.read_csv(ds / "manifest.csv").set_index("capture_id")
    assert man.at["sB/c00000", "verdict"] == "fail"


def test_manifest_from_before_results_sha256(sessions, tmp_path):
    """An older manifest (no results_sha256) verifies with a warning; info says freshness is unknown; repair adds it."""
    ds = tmp_path / "ds"
    pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False))
    man = pd.read_csv(ds / "manifest.csv", dtype=str)
    man.drop(columns=["results_sha256"]).to_csv(ds / "manifest.csv", index=False)
    rep = verify_dataset(ds, progress=False)
    assert rep.problems == [] and any("results_sha256 missing" in w for w in rep.warnings), rep.warnings
    assert "unknown" in "\n".join(format_info(dataset_info(ds)))
    verify_dataset(ds, repair=True, progress=False)
    assert "results_sha256" in pd.read_csv(ds / "manifest.csv").columns
    assert dataset_info(ds)["freshness"]["stale"] == []
