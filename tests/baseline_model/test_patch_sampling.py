"""Patch sampling weighted by scene kind (``data.kind_weights``): drawn in proportion, checked, per capture."""

import numpy as np
import pytest

from hzsr.baseline_model.config import load_train_config
from hzsr.baseline_model.patches import PatchDataset
from hzsr.baseline_model.train import kind_weights
from hzsr.core.errors import ConfigError
from hzsr.dataset.reader import ShardReader


def _stacks(tmp_path, n: int) -> list:
    """``n`` cached 5x32x32 stacks whose source channel holds the capture's index (mask all 1)."""
    paths = []
    for k in range(n):
        a = np.ones((5, 32, 32), np.float16)
        a[0] = k
        p = tmp_path / f"c{k}.npy"
        np.save(p, a)
        paths.append(p)
    return paths


def _drawn(ds: PatchDataset, n: int) -> np.ndarray:
    return np.bincount([int(ds[i][0][0, 0, 0]) for i in range(n)], minlength=len(ds.paths))


def test_weighted_draws_follow_the_weights(tmp_path):
    paths = _stacks(tmp_path, 3)
    counts = _drawn(PatchDataset(paths, 16, seed=0, weights=[1.0, 3.0, 0.0]), 2000)
    assert counts[2] == 0  # weight 0: never drawn
    assert 0.70 < counts[1] / counts.sum() < 0.80, counts  # 3 / 4 expected
    uniform = _drawn(PatchDataset(paths, 16, seed=0), 2000)
    assert all(0.28 < c / 2000 < 0.39 for c in uniform), uniform
    with pytest.raises(ValueError, match="non-negative"):
        PatchDataset(paths, 16, seed=0, weights=[1.0, -1.0, 1.0])


def test_kind_weights_resolve_per_capture_and_are_checked(tiny_dataset):
    with ShardReader(tiny_dataset) as r:
        ids = r.ids()
        kinds = [r.meta(c)["scene_kind"] for c in ids]
        assert kind_weights(r, ids, {}) is None  # empty: uniform, the unweighted stream
        w = kind_weights(r, ids, {kinds[0]: 5.0})
    assert w == [5.0 if k == kinds[0] else 1.0 for k in kinds]
    with pytest.raises(ConfigError, match=r"data\.kind_weights: night: must be in 0 \.\. 100, got -1"):
        load_train_config(None, ["data.kind_weights={night: -1}"])
