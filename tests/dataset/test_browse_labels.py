"""The curation file (``hzsr/dataset/labels.py``) and the verbs that honour it: split, curate, export."""

from __future__ import annotations

import json
import shutil
import threading

import pandas as pd
import pytest

from hzsr.cli import main
from hzsr.core.errors import DatasetError
from hzsr.core.lock import DatasetLock
from hzsr.dataset.labels import LABELS, read_labels, rejected_ids, set_label


@pytest.fixture
def ds(packed, tmp_path):
    return shutil.copytree(packed, tmp_path / "ds")


def _ids(ds):
    return pd.read_csv(ds / "manifest.csv")["capture_id"].tolist()


def test_labels_round_trip_sorted_with_version(ds):
    ids = _ids(ds)
    r1 = set_label(ds, ids[3], "rejected", "  motion blur on the subject ", set(ids), curator="alice")
    r2 = set_label(ds, ids[0], "accepted", "", set(ids), curator="bob")
    df, rev = read_labels(ds)
    assert rev == r2 != r1 != "0"
    assert df["capture_id"].tolist() == [ids[0], ids[3]]  # sorted
    row = df.set_index("capture_id").loc[ids[3]]
    assert (row["label"], row["reason"], row["curator"]) == ("rejected", "motion blur on the subject", "alice")
    assert "schema_version" in (ds / LABELS).read_text().splitlines()[0]
    set_label(ds, ids[3], None, known_ids=set(ids))  # clearing removes the row
    assert rejected_ids(ds) == set()
    assert not list(ds.glob(f".{LABELS}.*"))  # the atomic write left no temp file


@pytest.mark.parametrize("label, reason, field", [
    ("rejected", "", "reason"),
    ("rejected", "two\nlines", "reason"),
    ("rejected", "x" * 201, "reason"),
    ("maybe", "why", "label"),
])
def test_bad_labels_are_one_line_errors_and_write_nothing(ds, label, reason, field):
    ids = _ids(ds)
    with pytest.raises(DatasetError) as e:
        set_label(ds, ids[0], label, reason, set(ids))
    assert e.value.field == field and "\n" not in str(e.value)
    assert not (ds / LABELS).exists()


def test_unknown_capture_refused(ds):
    with pytest.raises(DatasetError, match="unknown capture"):
        set_label(ds, "sZ/c99999", "rejected", "gone", set(_ids(ds)))


def test_label_refused_while_another_process_holds_the_lock(ds):
    """The data set's lock is held elsewhere: the label is refused in one line, the file untouched."""
    ids = _ids(ds)
    set_label(ds, ids[1], "rejected", "first", set(ids))
    before = (ds / LABELS).read_bytes()
    with DatasetLock(ds):  # what dataset pack, split, ingest and verify --repair hold
        with pytest.raises(DatasetError, match="being written by another process"):
            set_label(ds, ids[2], "rejected", "second", set(ids))
    assert (ds / LABELS).read_bytes() == before


def test_concurrent_labels_from_threads_all_land(ds):
    """Eight threads (a server's request threads) label at once: none is lost or refused."""
    ids = _ids(ds)
    errors: list[Exception] = []

    def work(cid):
        try:
            set_label(ds, cid, "rejected", f"reason {cid}", set(ids))
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and rejected_ids(ds) == set(ids)


def test_a_bad_labels_file_is_named(ds):
    (ds / LABELS).write_text("capture_id,label\nsA/c00000,maybe\n")
    with pytest.raises(DatasetError) as e:
        read_labels(ds)
    assert e.value.field == "label" and LABELS in str(e.value) and "row 1" in str(e.value)


def test_split_curate_and_export_leave_rejected_captures_out(ds, tmp_path, capsys):
    ids = _ids(ds)
    assert main(["dataset", "split", str(ds), "--seed", "1"]) == 0
    assert set(pd.read_csv(ds / "splits.csv")["capture_id"]) == set(ids)
    rej = {ids[2], ids[6]}
    for cid in rej:
        set_label(ds, cid, "rejected", "misaligned", set(ids))
    capsys.readouterr()
    assert main(["dataset", "split", str(ds), "--seed", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rejected"] == 2
    assert set(pd.read_csv(ds / "splits.csv")["capture_id"]) == set(ids) - rej

    assert main(["dataset", "curate", str(ds), "--query", "verdict != 'zzz'", "--out", str(tmp_path / "sub"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["selected"], out["rejected"], out["total"]) == (len(ids) - 2, 2, len(ids))
    assert set(pd.read_csv(tmp_path / "sub" / "manifest.csv")["capture_id"]) == set(ids) - rej

    assert main(["dataset", "export", str(ds), "--out", str(tmp_path / "exp"), "--quiet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["captures"], out["rejected"]) == (len(ids) - 2, 2)
    names = {ln.split()[0] for ln in (tmp_path / "exp" / "meta_info.txt").read_text().splitlines()}
    assert names == {c.replace("/", "__") + ".png" for c in set(ids) - rej}


def test_blocked_near_pairs_match_the_full_matrix():
    """The gallery clusters 10,000 captures with ``near_pairs`` (blocks of rows); same answer as
    ``hamming_matrix``, whatever the block size."""
    import numpy as np

    from hzsr.dataset.phash import hamming_matrix, near_pairs

    rng = np.random.default_rng(0)
    base = [int(x) for x in rng.integers(0, 2**63, 40)]
    hashes = []
    for k in range(300):
        h = base[k % 40]
        for _ in range(int(rng.integers(0, 8))):
            h ^= 1 << int(rng.integers(0, 64))
        hashes.append(f"{h:016x}")
    d = hamming_matrix(hashes)
    np.fill_diagonal(d, 99)
    want = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(d <= 6, 1)), strict=True)}
    for block in (1, 7, 512):
        i, j, nearest = near_pairs(hashes, 6, block=block)
        assert set(zip(i.tolist(), j.tolist(), strict=True)) == want and len(i) == len(want)
        assert np.array_equal(nearest, d.min(1))
    assert np.isnan(near_pairs(hashes[:1], 6)[2]).all()


def test_near_duplicates_equal_single_link_on_the_full_matrix():
    """``curate.near_duplicates`` (identical hashes merged first, then blocked pairs) gives what
    single-link clustering of the full distance matrix gives: same first member, same nearest."""
    import numpy as np

    from hzsr.dataset.curate import near_duplicates
    from hzsr.dataset.phash import hamming_matrix

    rng = np.random.default_rng(1)
    base = [int(x) for x in rng.integers(0, 2**63, 30)]
    hashes = [f"{base[int(rng.integers(0, 30))] ^ (1 << int(rng.integers(0, 64))) * int(rng.integers(0, 2)):016x}"
              for _ in range(200)] + [f"{base[0]:016x}"] * 5
    ids = [f"c{k:04d}" for k in range(len(hashes))]
    d = hamming_matrix(hashes).astype(float)
    np.fill_diagonal(d, np.inf)
    label = list(range(len(ids)))  # brute-force single link: merge until nothing changes
    changed = True
    while changed:
        changed = False
        for i, j in zip(*np.nonzero(d <= 6), strict=True):
            if label[i] != label[j]:
                label[i] = label[j] = min(label[i], label[j])
                changed = True
    want = [ids[min(k for k in range(len(ids)) if label[k] == label[i])] if d[i].min() <= 6 else None
            for i in range(len(ids))]
    flag, nearest = near_duplicates(ids, hashes, 6)
    assert flag == want and nearest == d.min(1).tolist()


def test_labels_made_on_a_subset_are_the_data_sets(ds, tmp_path):
    """Browsing a curated subset writes beside the shards, so `split` of the data set honours it."""
    from hzsr.browse.gallery import Gallery

    assert main(["dataset", "curate", str(ds), "--query", "session_id == 'sB'", "--out", str(tmp_path / "sub")]) == 0
    g = Gallery(tmp_path / "sub")
    sub_ids = g.snapshot()[0]["capture_id"].tolist()
    g.label(sub_ids[0], "rejected", "out of focus")
    assert not (tmp_path / "sub" / LABELS).exists() and rejected_ids(ds) == {sub_ids[0]}
    with pytest.raises(DatasetError, match="unknown capture"):  # not in the subset
        g.label("sA/c00000", "rejected", "x")


def test_browse_a_missing_folder_is_one_line_exit_2(tmp_path, capsys):
    assert main(["dataset", "browse", str(tmp_path / "nope"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest not found" in err[0]
