"""``hzsr status PATH``: stages done, stale or unfinished, and the next command, for sessions and data sets."""

from __future__ import annotations

import shutil

from hzsr.cli import main
from hzsr.core.lock import DatasetLock, SessionLock
from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.dataset.status import status


def _states(rep):
    return {s.name: s.state for s in rep.stages}


def test_session_status_walks_the_workflow(sessions, tmp_path):
    sA, sB = sessions  # sA: sync checked, no QA; sB: QA table, no sync
    rep = status(sA)
    assert _states(rep) == {"capture": "done", "sync": "done", "qa": "not run", "pack": "n/a"}
    assert rep.next_command == f"hzsr qa check {sA}"
    rep = status(sB)
    assert _states(rep)["sync"] == "not run" and rep.next_command == f"hzsr sync check {sB}"
    # A capture added after sync check makes sync stale.
    shutil.copytree(sA / "captures" / "c00004", sA / "captures" / "c00009")
    rep = status(sA)
    assert _states(rep)["sync"] == "stale" and "not yet: c00009" in {s.name: s.detail for s in rep.stages}["sync"]
    assert rep.next_command == f"hzsr sync check {sA}"
    # A capture run holds the session.
    with SessionLock(sA):
        rep = status(sA)
        assert _states(rep)["capture"] == "running" and rep.next_command.startswith("wait for pid")


def test_dataset_status_names_what_is_left(sessions, tmp_path, capsys):
    ds = tmp_path / "ds"
    pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False))
    rep = status(ds)
    assert _states(rep) == {"pack": "done", "split": "not run", "results": "done", "verify": "n/a"}
    assert rep.next_command == f"hzsr dataset split {ds}"
    assert main(["dataset", "split", str(ds)]) == 0
    assert status(ds).next_command == f"hzsr model train {ds} --out RUN"
    # QA after the pack: results stale, and re-packing comes first.
    (sessions[0] / "qa").mkdir()
    (sessions[0] / "qa" / "qa.csv").write_text("capture_id,verdict\nc00000,fail\n")
    rep = status(ds)
    assert _states(rep)["results"] == "stale"
    assert rep.next_command.startswith(f"hzsr dataset pack SESSION... --out {ds}")
    with DatasetLock(ds):
        assert _states(status(ds))["pack"] == "running"
    capsys.readouterr()
    assert main(["status", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "results    stale" in out and out.strip().splitlines()[-1].startswith("next: hzsr dataset pack")


def test_status_of_something_else_is_one_line(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main(["status", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == (f"hzsr: error: {tmp_path / 'x'}: neither a session (no session.json) "
                                               "nor a data set (no shards/, manifest.csv)")


def test_subset_status_reads_through_to_its_data_set(sessions, tmp_path):
    ds = tmp_path / "ds"
    pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False))
    assert main(["dataset", "split", str(ds)]) == 0
    assert main(["dataset", "curate", str(ds), "--query", "session_id == 'sA'", "--out", str(tmp_path / "sub")]) == 0
    rep = status(tmp_path / "sub")
    assert rep.kind == "subset"
    assert _states(rep) == {"subset": "done", "split": "done", "results": "done", "verify": "n/a"}
    assert rep.next_command == f"hzsr model train {tmp_path / 'sub'} --out RUN"
