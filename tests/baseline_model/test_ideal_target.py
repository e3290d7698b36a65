"""``data.target: ideal``: training on the simulator's ideal target carried by the shards (pack --truth)."""

import dataclasses
import json

import numpy as np
import pytest

from hzsr.baseline_model.config import load_train_config
from hzsr.baseline_model.data import build_cache, load_stack, prepare_capture, resolve_target
from hzsr.cli import main as hzsr_main
from hzsr.core.errors import ConfigError
from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.dataset.reader import ShardReader

from .conftest import TINY


@pytest.fixture(scope="module")
def truth_dataset(tiny_session, tmp_path_factory):
    """The tiny session packed with its truth and split as ``tiny_dataset`` is (read-only)."""
    out = tmp_path_factory.mktemp("bm_truth") / "ds"
    pack_dataset([tiny_session], out, PackConfig(progress=False, truth=True))
    assert hzsr_main(["dataset", "split", str(out), "--by", "scene", "--ratios", "0.67,0,0.33",
                      "--stratify", "none"]) == 0
    return out


def _corr(a, b, m):
    return float(np.corrcoef(a[m].ravel(), b[m].ravel())[0, 1])


def test_ideal_target_comes_from_ideal_T_and_covers_the_frame(truth_dataset, tmp_path):
    cfg = load_train_config(None, TINY).pipeline
    r = ShardReader(truth_dataset)
    cid = next(c for c in r.ids() if r.meta(c)["has_reference"])
    ideal = load_stack(build_cache(r, [cid], cfg, tmp_path / "c", target="ideal", progress=False)[0])
    main = load_stack(build_cache(r, [cid], cfg, tmp_path / "c", target="main_T", progress=False)[0])
    assert json.loads(next((tmp_path / "c").glob("*-ideal/*.json")).read_text())["target"] == "ideal"
    np.testing.assert_array_equal(ideal[:3], main[:3])  # the same inputs; only the target differs
    both = (ideal[4] > 0.5) & (main[4] > 0.5)
    # The same scene on the same grid: the ideal and the registered main T agree closely...
    assert _corr(ideal[3].astype(np.float32), main[3].astype(np.float32), both) > 0.8
    # ...and the ideal's loss mask is the whole frame it covers, occluded pixels included.
    assert ideal[4].mean() > 0.85 and ideal[4].mean() >= main[4].mean()

    # The target follows ideal_T: invert it and the target inverts, which main T never would.
    sample = r.read(cid)
    t = r.truth(cid)
    flipped = dataclasses.replace(t, arrays={**t.arrays, "ideal_T": 255 - t.arrays["ideal_T"]})
    stack, info = prepare_capture(sample, cfg, flipped)
    assert info["target"] == "ideal"
    assert _corr(stack[3].astype(np.float32), main[3].astype(np.float32), both) < -0.5


def test_target_resolution_and_errors(tiny_dataset, truth_dataset, tmp_path, capsys):
    plain, truth = ShardReader(tiny_dataset), ShardReader(truth_dataset)
    assert resolve_target(plain, plain.ids(), "auto") == "main_T"
    assert resolve_target(truth, truth.ids(), "auto") == "ideal"
    assert resolve_target(truth, truth.ids(), "main_T") == "main_T"
    with pytest.raises(ConfigError, match=r"data\.target: must be one of main_T, ideal, auto; got 'ideally'"):
        load_train_config(None, ["data.target=ideally"])
    # Asking for the ideal target on shards without it: one line naming the shard and the key,
    # before anything is written.
    out = tmp_path / "run"
    rc = hzsr_main(["model", "train", str(tiny_dataset), "--out", str(out), "--quiet",
                    *[a for kv in TINY for a in ("--set", kv)], "--set", "data.target=ideal"])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1, err
    assert "shard-00000.h5" in err and "data.target" in err and "--truth" in err
    assert not (out / "config.yaml").exists()


def test_gradient_loss_sees_detail_and_respects_the_mask():
    import torch

    from hzsr.baseline_model.train import gradient_l1

    tgt = torch.rand(1, 1, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1
    y = tgt.clone()
    y[..., 17:] = 0.5  # wrong only outside the mask (and not next to it)
    assert float(gradient_l1(y, tgt, mask)) == pytest.approx(0.0, abs=1e-7)
    flat = tgt.clone()
    flat[..., :16] = tgt[..., :16].mean()  # right on average, but the detail is gone
    assert float(gradient_l1(flat, tgt, mask)) > 0.2


@pytest.mark.slow
def test_train_on_the_ideal_target(truth_dataset, tmp_path):
    from hzsr.baseline_model.train import train

    s = train(load_train_config(None, [*TINY, "data.target=auto", "loss.w_grad=1.0"]), truth_dataset,
              tmp_path / "run", progress=False)
    assert s["target"] == "ideal" and s["steps"] == 6 and np.isfinite(s["final_loss"])
