import shutil
from pathlib import Path

import pytest

from hzsr.sim.simsession import SimConfig, simulate_session


@pytest.fixture(scope="session")
def sim_session_template(tmp_path_factory) -> Path:
    """One small rendered session (with truth), made once; tests copy it before changing it."""
    root = tmp_path_factory.mktemp("template")
    return simulate_session(root / "sess", SimConfig(captures=4, seed=7, size=(320, 240), truth=True),
                            progress=False)


@pytest.fixture
def sim_session(sim_session_template, tmp_path) -> Path:
    dst = tmp_path / "sess"
    shutil.copytree(sim_session_template, dst)
    shutil.copytree(sim_session_template.parent / "sess.truth", tmp_path / "sess.truth")
    return dst
