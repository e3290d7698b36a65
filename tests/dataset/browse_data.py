"""One small packed data set with a real sync and QA check, for the gallery's tests (built once)."""

from __future__ import annotations

import shutil
from pathlib import Path

from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.qa.check import run_check
from hzsr.qa.config import QAConfig
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sync.check import run_sync_check

_BUILT: dict[str, Path] = {}


def browse_dataset(tmp_path_factory) -> Path:
    """8 captures of 400x300 (three spoiled by the simulated crew: a refocus, motion blur, a rig bump), sync and
    QA checked, packed 3 per shard. Read-only: copy it (``copy_dataset``) before writing labels."""
    if "ds" not in _BUILT:
        root = tmp_path_factory.mktemp("browse")
        cfg = SimConfig(captures=8, seed=5, size=(400, 300), defects={3: "refocus", 4: "motion_blur", 6: "rig_bump"})
        s = simulate_session(root / "sA", cfg, progress=False)
        run_sync_check(s, plots=False)
        run_check(s, QAConfig(), progress=False)
        pack_dataset([s], root / "ds", PackConfig(shard_size="3", progress=False))
        _BUILT["ds"] = root / "ds"
    return _BUILT["ds"]


def copy_dataset(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
