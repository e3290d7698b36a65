"""Crash safety, resume, corruption, truncation, repair: through the CLI, as users run it."""

import json
import os
import shutil
import subprocess
import sys

import h5py
import pandas as pd
import pytest

from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.dataset.shard import KILL_ENV
from hzsr.dataset.verify import verify_dataset

from .test_checked_reads import _flip_byte_in


def hzsr(*args, env=None):
    e = dict(os.environ)
    e.pop(KILL_ENV, None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "hzsr.cli", *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=300)


def _all_shard_ids(ds):
    ids = []
    for p in sorted((ds / "shards").glob("shard-*.h5")):
        with h5py.File(p, "r") as h5:
            ids += [x.decode() if isinstance(x, bytes) else x for x in h5.attrs["captures"]]
    return ids


def test_kill_mid_shard_then_resume(sessions, tmp_path):
    ds = tmp_path / "ds"
    # Shards of 3: the pack dies right after writing capture 5, the middle of the second shard.
    r = hzsr("dataset", "pack", *sessions, "--out", ds, "--shard-size", "3", "--quiet", env={KILL_ENV: "5"})
    assert r.returncode == -9, r.stderr
    visible = sorted(p.name for p in (ds / "shards").glob("shard-*.h5"))
    assert visible == ["shard-00000.h5"]  # the half-written second shard is not visible
    assert [p.name for p in (ds / "shards").iterdir() if p.name.startswith(".tmp-")]  # only a temp file
    assert not (ds / "manifest.csv").exists()
    with h5py.File(ds / "shards" / "shard-00000.h5", "r") as h5:
        assert len(h5.attrs["captures"]) == 3
    mtime0 = (ds / "shards" / "shard-00000.h5").stat().st_mtime_ns

    r = hzsr("dataset", "pack", *sessions, "--out", ds, "--shard-size", "3", "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    assert (ds / "shards" / "shard-00000.h5").stat().st_mtime_ns == mtime0  # kept, not rewritten
    assert not [p for p in (ds / "shards").iterdir() if p.name.startswith(".tmp-")]
    want = sorted(f"{s.name}/{c.name}" for s in sessions for c in (s / "captures").iterdir())
    ids = _all_shard_ids(ds)
    assert sorted(ids) == want and len(ids) == len(set(ids))  # every capture exactly once
    assert sorted(pd.read_csv(ds / "manifest.csv")["capture_id"]) == want
    v = hzsr("dataset", "verify", ds, "--quiet")
    assert v.returncode == 0, v.stderr
    assert "pass" in v.stdout

    # Idempotent: a third run writes nothing and changes nothing.
    before = {p.name: p.stat().st_mtime_ns for p in (ds / "shards").iterdir()}
    r = hzsr("dataset", "pack", *sessions, "--out", ds, "--shard-size", "3", "--quiet")
    assert r.returncode == 0 and "0 new captures" in r.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (ds / "shards").iterdir()} == before


def test_adding_a_session_appends_shards(sessions, tmp_path):
    ds = tmp_path / "ds"
    pack_dataset(sessions[:1], ds, PackConfig(shard_size="3", progress=False))
    first = sorted(p.name for p in (ds / "shards").glob("*.h5"))
    res = pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False))
    assert res.kept == first and res.new_captures == 3
    assert len(_all_shard_ids(ds)) == len(set(_all_shard_ids(ds))) == 8
    # The shards, not the plan, are the truth: a lost plan changes nothing.
    (ds / "pack-plan.json").unlink()
    res = pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False))
    assert res.new_captures == 0 and res.written == [] and len(_all_shard_ids(ds)) == 8
    assert [e["shard"] for e in json.loads((ds / "pack-plan.json").read_text())["shards"]] == res.kept


@pytest.mark.parametrize("codec", ["none", "blosc-lz4", "lz4", "gzip"])
def test_flipped_byte_named(sessions, tmp_path, codec):
    ds = tmp_path / "ds"
    pack_dataset(sessions, ds, PackConfig(shard_size="3", compression=codec, progress=False))
    shard = ds / "shards" / "shard-00001.h5"
    _flip_byte_in(shard, "sA/c00004", "main_T")
    r = hzsr("dataset", "verify", ds, "--quiet")
    assert r.returncode == 1
    bad = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(bad) == 1, r.stderr
    assert bad[0].startswith("shards/shard-00001.h5: sA/c00004: main_T: "), bad
    assert "Traceback" not in r.stderr


def test_truncated_shard_reported(packed, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(packed, ds)
    p = ds / "shards" / "shard-00001.h5"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    r = hzsr("dataset", "verify", ds, "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "shards/shard-00001.h5: " in r.stderr
    rep = verify_dataset(ds, progress=False)
    assert rep.bad_shards == ["shard-00001.h5"] and rep.shards_ok == 2


def test_repair_quarantines_and_pack_restores(sessions, tmp_path):
    ds = tmp_path / "ds"
    pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False))
    p = ds / "shards" / "shard-00002.h5"
    p.write_bytes(p.read_bytes()[:1000])
    r = hzsr("dataset", "pack", *sessions, "--out", ds, "--shard-size", "3", "--quiet")
    assert r.returncode == 1 and r.stderr.strip() == (
        f"hzsr: error: {p}: shard unreadable; run `hzsr dataset verify --repair` or remove it")
    r = hzsr("dataset", "verify", ds, "--repair", "--quiet")
    assert r.returncode == 1  # data was lost: repair fixed the manifest, not the captures
    assert (ds / "quarantine" / "shard-00002.h5").exists()
    man = pd.read_csv(ds / "manifest.csv")
    assert len(man) == 6 and "shard-00002.h5" not in set(man["shard"])
    assert hzsr("dataset", "verify", ds, "--quiet").returncode == 0  # consistent again
    pack_dataset(sessions, ds, PackConfig(shard_size="3", progress=False))
    assert verify_dataset(ds, progress=False).problems == []
    assert len(pd.read_csv(ds / "manifest.csv")) == 8


def test_manifest_disagreement(packed, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(packed, ds)
    man = pd.read_csv(ds / "manifest.csv")
    man.loc[0, "scene_id"] = "someone-else"
    man = man.drop(index=5)
    man.to_csv(ds / "manifest.csv", index=False)
    r = hzsr("dataset", "verify", ds, "--quiet")
    assert r.returncode == 1
    assert f"{ds}/manifest.csv: sA/c00000: scene_id: manifest says 'someone-else'" in r.stderr
    assert "missing from the manifest" in r.stderr
    r = hzsr("dataset", "verify", ds, "--repair", "--quiet")
    assert r.returncode == 0
    assert hzsr("dataset", "verify", ds, "--quiet").returncode == 0


def test_bad_manifest_one_line(packed, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(packed, ds)
    (ds / "manifest.csv").write_text("capture_id,foo\nx,1\n")
    r = hzsr("dataset", "info", ds)
    assert r.returncode == 1
    assert r.stderr.strip() == f"hzsr: error: {ds}/manifest.csv: shard: missing column"
