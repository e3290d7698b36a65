"""A checkpoint with non-finite weights is refused, not inferred to an all-black image (issue 20, item 9)."""

import math

import pytest

from hzsr.baseline_model.checkpoint import load_model, read_checkpoint, save_checkpoint
from hzsr.cli import main
from hzsr.core.errors import ModelError


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_weights_are_a_one_line_error_naming_the_tensor(tiny_run, tiny_session, tmp_path, capsys, value):
    raw = read_checkpoint(tiny_run / "model.pt")
    name = next(k for k, v in raw["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    raw["state_dict"][name] = raw["state_dict"][name].clone()
    raw["state_dict"][name].view(-1)[1] = value
    bad = save_checkpoint(tmp_path / "diverged.pt", {k: v for k, v in raw.items() if k not in ("format", "version")})
    with pytest.raises(ModelError, match="non-finite"):
        load_model(bad)
    cap = tiny_session / "captures" / "c00002"
    rc = main(["model", "infer", str(cap / "main_W.jpg"), "--ref", str(cap / "ref_T.jpg"), "--ckpt", str(bad),
               "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip()
    assert rc == 1  # read and found bad: EXIT_PROBLEMS, like a wrong format field
    assert not (tmp_path / "o.png").exists()
    assert err.count("\n") == 0 and str(bad) in err and f"state_dict.{name}" in err
    # The same checkpoint with the weight restored loads: the refusal is about the value, not the file.
    raw["state_dict"][name].view(-1)[1] = 0.0
    ok = save_checkpoint(tmp_path / "ok.pt", {k: v for k, v in raw.items() if k not in ("format", "version")})
    load_model(ok)
