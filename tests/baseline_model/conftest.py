"""Fixtures: one tiny simulated data set (packed, split by scene) and one tiny trained run, made once."""

from pathlib import Path

import pytest

pytest.importorskip("torch")

from hzsr.baseline_model.config import load_train_config  # noqa: E402
from hzsr.cli import main as hzsr_main  # noqa: E402
from hzsr.dataset.pack import PackConfig, pack_dataset  # noqa: E402
from hzsr.sim.simsession import SimConfig, simulate_session  # noqa: E402

#: A UNet and patch small enough for a few CPU steps in a second or two.
TINY = ["unet.widths=[4,4,8,8,8]", "data.patch=32", "data.batch_size=4", "optim.steps=6", "log_every=2",
        "ckpt_every=3", "threads=1"]


@pytest.fixture(scope="session")
def tiny_session(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bm_sess")
    return simulate_session(root / "sess", SimConfig(captures=6, seed=5, size=(320, 240), truth=True,
                                                     kinds=("architecture", "landscape", "moving")), progress=False)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_session, tmp_path_factory) -> Path:
    """6 captures of 3 scenes; split by scene: 2 scenes train, 1 test (read-only for tests)."""
    out = tmp_path_factory.mktemp("bm_ds") / "ds"
    pack_dataset([tiny_session], out, PackConfig(progress=False))
    rc = hzsr_main(["dataset", "split", str(out), "--by", "scene", "--ratios", "0.67,0,0.33", "--stratify", "none"])
    assert rc == 0
    return out


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory) -> Path:
    """A 6-step training run on the tiny data set (read-only for tests)."""
    from hzsr.baseline_model.train import train

    out = tmp_path_factory.mktemp("bm_run") / "run"
    train(load_train_config(None, TINY), tiny_dataset, out, progress=False)
    return out
