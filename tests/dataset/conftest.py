import shutil
from pathlib import Path

import pytest

from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sync.check import run_sync_check


@pytest.fixture(scope="session")
def ds_sessions(tmp_path_factory) -> list[Path]:
    """Two small sessions (sync checked, one with a QA table), made once; copy before changing."""
    root = tmp_path_factory.mktemp("dsess")
    a = simulate_session(root / "sA", SimConfig(captures=5, seed=3, size=(160, 120)), progress=False)
    b = simulate_session(root / "sB", SimConfig(captures=3, seed=4, size=(160, 120), kinds=("night", "landscape")),
                         progress=False)
    run_sync_check(a, plots=False)
    (b / "qa").mkdir()
    (b / "qa" / "qa.csv").write_text(
        "capture_id,verdict,reasons,ncc,flow_epe_px\n"
        "c00000,pass,,0.91,0.8\nc00001,warn,low ncc,0.55,1.9\nc00002,fail,misaligned | blur,0.2,7.5\n")
    return [a, b]


@pytest.fixture
def sessions(ds_sessions, tmp_path) -> list[Path]:
    out = []
    for s in ds_sessions:
        shutil.copytree(s, tmp_path / "in" / s.name)
        out.append(tmp_path / "in" / s.name)
    return out


@pytest.fixture(scope="session")
def packed(ds_sessions, tmp_path_factory) -> Path:
    """A data set packed serially from ds_sessions (read-only for tests)."""
    out = tmp_path_factory.mktemp("packed") / "ds"
    pack_dataset(ds_sessions, out, PackConfig(shard_size="3", progress=False))
    return out
