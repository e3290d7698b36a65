"""The checkpoint shipped in the package: present, small, and enough for ``hzsr model infer``."""

import json

import cv2
import pytest

from hzsr.baseline_model.checkpoint import load_model, shipped_checkpoint_path
from hzsr.baseline_model.config import load_train_config
from hzsr.cli import main


def test_shipped_checkpoint_loads_and_infers_out_of_the_box(tiny_session, tmp_path):
    path = shipped_checkpoint_path()
    if not path.is_file():
        pytest.fail(f"the shipped checkpoint is missing: {path}")
    assert path.stat().st_size < 5 * 2**20
    lc = load_model(None)
    assert lc.path == path
    # It is what configs/shipped.yaml describes (the documented reproduce command).
    cfg = load_train_config(path.parent.parent / "configs" / "shipped.yaml")
    assert lc.raw["unet"]["widths"] == cfg.unet.widths and lc.raw["step"] == cfg.optim.steps, (
        f"shipped.pt ({lc.raw['step']} steps, widths {lc.raw['unet']['widths']}) is not what configs/shipped.yaml "
        f"describes ({cfg.optim.steps} steps, widths {cfg.unet.widths}): retrain it (docs/model.md, Reproduce)")
    d = tiny_session / "captures" / "c00002"
    out = tmp_path / "s.png"
    assert main(["model", "infer", "--source", str(d / "main_W.jpg"), "--ref", str(d / "ref_T.jpg"),
                 "--meta", str(d / "capture.json"), "--out", str(out)]) == 0
    assert cv2.imread(str(out)).shape == (240, 320, 3)
    assert json.loads((tmp_path / "s.png.json").read_text())["checkpoint"] == str(path)
