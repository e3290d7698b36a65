"""Splits: no group in two splits, ratios within one group's size, deterministic, stable, balanced."""

import os
import subprocess
import sys

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hzsr.core.errors import ConfigError
from hzsr.dataset.splits import SplitConfig, assign_splits, parse_ratios

KINDS = ["portrait", "architecture", "landscape", "moving", "night"]


def _manifest(groups: list[tuple[int, int]]) -> pd.DataFrame:
    rows = []
    for g, (size, kind) in enumerate(groups):
        for i in range(size):
            rows.append({"capture_id": f"s/g{g:03d}c{i:02d}", "scene_id": f"{KINDS[kind]}-{g:03d}",
                         "scene_kind": KINDS[kind], "session_id": "s"})
    return pd.DataFrame(rows)


ratio_sets = st.sampled_from([(0.8, 0.1, 0.1), (0.7, 0.15, 0.15), (0.5, 0.5), (0.6, 0.2, 0.2), (1 / 3, 1 / 3, 1 / 3)])


@settings(max_examples=150, deadline=None)
@given(groups=st.lists(st.tuples(st.integers(1, 12), st.integers(0, 4)), min_size=1, max_size=40),
       ratios=ratio_sets, seed=st.integers(0, 2**31))
def test_property_no_leak_and_ratios(groups, ratios, seed):
    man = _manifest(groups)
    names = ("train", "val", "test")[: len(ratios)] if len(ratios) == 3 else ("train", "test")
    sp = assign_splits(man, SplitConfig(ratios=ratios, names=names, seed=seed))
    assert sorted(sp["capture_id"]) == sorted(man["capture_id"])
    assert (sp.groupby("group")["split"].nunique() == 1).all()  # no group in two splits
    largest = max(size for size, _ in groups)
    counts = sp["split"].value_counts()
    for name, r in zip(names, ratios, strict=True):
        assert abs(counts.get(name, 0) - r * len(man)) <= largest + 1e-9, (name, counts.to_dict())


def test_deterministic_and_seeded():
    man = _manifest([(2, i % 5) for i in range(40)])
    a = assign_splits(man, SplitConfig(seed=1))
    b = assign_splits(man.sample(frac=1, random_state=3), SplitConfig(seed=1))
    pd.testing.assert_frame_equal(a, b)
    c = assign_splits(man, SplitConfig(seed=2))
    assert not a["split"].equals(c["split"])


def test_kinds_balanced():
    man = _manifest([(2, i % 5) for i in range(50)])  # 10 scenes of each kind
    sp = assign_splits(man, SplitConfig(ratios=(0.8, 0.1, 0.1)))
    tab = sp.merge(man, on="capture_id").groupby(["scene_kind", "split"])["group"].nunique().unstack(fill_value=0)
    assert (tab["train"] == 8).all() and (tab["val"] == 1).all() and (tab["test"] == 1).all(), tab


def test_stable_when_captures_added():
    man = _manifest([(2, i % 5) for i in range(30)])
    first = assign_splits(man, SplitConfig(seed=5))
    bigger = pd.concat([man, _manifest([(2, i % 5) for i in range(45)]).iloc[60:]], ignore_index=True)
    # plus a new capture of an existing scene
    extra = man.iloc[[0]].assign(capture_id="s/g000c99")
    bigger = pd.concat([bigger, extra], ignore_index=True)
    second = assign_splits(bigger, SplitConfig(seed=5), existing=first)
    merged = first.merge(second, on="capture_id", suffixes=("_a", "_b"))
    assert (merged["split_a"] == merged["split_b"]).all()
    assert second.set_index("capture_id").at["s/g000c99", "split"] == first.set_index("capture_id").at[
        "s/g000c00", "split"]
    fresh = assign_splits(bigger, SplitConfig(seed=5, reassign=True), existing=first)
    assert len(fresh) == len(bigger)


@pytest.mark.parametrize("text", ["0.8,0.1", "a,b", "0.8,0.3,-0.1", "1"])
def test_bad_ratios(text):
    with pytest.raises(ConfigError, match="--ratios"):
        parse_ratios(text)


def test_cli_split(packed, tmp_path):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(packed, ds)
    run = [sys.executable, "-m", "hzsr.cli", "dataset", "split", str(ds)]
    r = subprocess.run([*run, "--ratios", "0.8,0.1,0.2"], capture_output=True, text=True, env=os.environ)
    assert r.returncode == 2 and r.stderr.strip() == (
        "hzsr: error: --ratios: need two or more non-negative ratios summing to 1, got '0.8,0.1,0.2'")
    r = subprocess.run([*run, "--by", "scene", "--ratios", "0.5,0.25,0.25", "--stratify", "kind", "--seed", "3"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sp = pd.read_csv(ds / "splits.csv")
    assert set(sp.columns) == {"capture_id", "split", "group", "stratum"} and len(sp) == 8
    from hzsr.dataset.reader import ShardReader

    rd = ShardReader(ds)
    ids = rd.ids("train") + rd.ids("val") + rd.ids("test")
    assert sorted(ids) == sorted(rd.ids())
