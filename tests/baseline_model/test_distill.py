"""Distillation (issue 19): a teacher's output as a second target, and sources rebuilt at other focal ratios."""

import hashlib

import pytest
import torch

from hzsr.baseline_model.checkpoint import read_checkpoint
from hzsr.baseline_model.config import DistillConfig, load_train_config
from hzsr.baseline_model.train import distill_term, rebuild_sources, source_at_ratio, train
from hzsr.core.errors import ConfigError

from .conftest import TINY


def test_missing_or_bad_teacher_is_one_line(tmp_path, tiny_dataset):
    with pytest.raises(ConfigError, match=r"distill\.teacher: no such checkpoint file") as e:
        load_train_config(None, [f"distill.teacher={tmp_path / 'none.pt'}", "distill.weight=1"])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"distill\.weight: must be > 0 with a teacher"):
        load_train_config(None, ["distill.teacher=shipped"])
    with pytest.raises(ConfigError, match=r"distill\.teacher: a distillation weight needs a teacher"):
        load_train_config(None, ["distill.weight=1"])
    with pytest.raises(ConfigError, match=r"distill\.ratio_min: need 1 <= ratio_min <= ratio_max"):
        load_train_config(None, ["distill.ratio_min=3", "distill.ratio_max=2"])
    # A file that exists but is no checkpoint: refused when training starts, before anything is written.
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    cfg = load_train_config(None, TINY + [f"distill.teacher={junk}", "distill.weight=1"])
    with pytest.raises(ConfigError, match=r"distill\.teacher: not a usable teacher") as e:
        train(cfg, tiny_dataset, tmp_path / "run", progress=False)
    assert "\n" not in str(e.value) and "junk.pt" in str(e.value)
    assert not (tmp_path / "run").exists()
    # A teacher whose sha256 is not the one the recipe names.
    cfg = load_train_config(None, TINY + ["distill.teacher=shipped", "distill.weight=1",
                                          "distill.teacher_sha256='" + "0" * 64 + "'"])
    with pytest.raises(ConfigError, match=r"distill\.teacher_sha256: sha256 is [0-9a-f]{64}, the config names"):
        train(cfg, tiny_dataset, tmp_path / "run2", progress=False)


def test_distillation_term_pulls_the_student_to_the_teacher(tiny_dataset, tiny_run, tmp_path):
    """With the recipe's loss weighted to 0, only the teacher's output can move the student: it must."""
    from hzsr.baseline_model.checkpoint import load_model
    from hzsr.baseline_model.patches import PatchDataset

    teacher = tiny_run / "model.pt"
    sha = hashlib.sha256(teacher.read_bytes()).hexdigest()
    base = TINY + ["loss.w_l1=0", "loss.w_lowpass=0", "loss.w_grad=0", "optim.steps=20", "seed=1"]
    plain = train(load_train_config(None, base), tiny_dataset, tmp_path / "plain", progress=False)
    dist = train(load_train_config(None, base + [f"distill.teacher={teacher}", f"distill.teacher_sha256={sha}",
                                                 "distill.weight=1"]),
                 tiny_dataset, tmp_path / "dist", progress=False)
    a = read_checkpoint(plain["model"])["state_dict"]
    b = read_checkpoint(dist["model"])["state_dict"]
    # Without a loss the weights stay at their seeded start; the distillation term alone moved them ...
    assert not all(torch.equal(a[k], b[k]) for k in a)
    # ... towards the teacher, on patches of the data set.
    paths = sorted((tmp_path / "dist" / "cache").rglob("*.npy"))
    ds = PatchDataset(paths, 32, seed=9)
    x = torch.stack([ds[i][0] for i in range(16)])
    t, s0, s1 = (load_model(p).model for p in (teacher, plain["model"], dist["model"]))
    with torch.no_grad():
        yt = t(x)
        assert float((s1(x) - yt).abs().mean()) < 0.8 * float((s0(x) - yt).abs().mean())


def test_distill_term_is_l1_plus_gradient_l1():
    y = torch.zeros(1, 1, 8, 8)
    yt = torch.zeros(1, 1, 8, 8)
    yt[..., :, 4:] = 1.0  # a step edge: mean |diff| 0.5, one column of unit x-gradients
    assert float(distill_term(y, yt, 0.0)) == pytest.approx(0.5)
    assert float(distill_term(y, yt, 1.0)) == pytest.approx(0.5 + 8 / (7 * 8 * 2))


def test_sources_are_rebuilt_at_the_ratio_and_only_inside_the_mask():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    scene = torch.rand(1, 1, 64, 64)
    sharp = source_at_ratio(scene, 2.0, 0.6, 0.0, g)
    soft = source_at_ratio(scene, 5.0, 0.6, 0.0, g)
    # A lower focal ratio keeps more of the scene's detail.
    assert float((sharp - scene).abs().mean()) < float((soft - scene).abs().mean())
    x = torch.rand(4, 3, 64, 64)
    mask = torch.ones(4, 1, 64, 64)
    mask[1, :, :, :32] = 0
    cfg = DistillConfig(ratio_min=2.0, ratio_max=3.0, ratio_share=0.5)
    y_tgt = torch.rand(4, 1, 64, 64)
    out = rebuild_sources(x, y_tgt, mask, cfg, seed=0, step=3)
    assert torch.equal(out[2:], x[2:]) and torch.equal(out[:, 1:], x[:, 1:])  # the rest untouched
    assert not torch.equal(out[0, :1], x[0, :1])
    assert torch.equal(out[1, 0, :, :32], x[1, 0, :, :32]) and not torch.equal(out[1, 0, :, 32:], x[1, 0, :, 32:])
    assert torch.equal(out, rebuild_sources(x, y_tgt, mask, cfg, seed=0, step=3))  # resumable


def test_configs_that_would_crash_later_are_refused_at_load():
    """review-today7: a W blur reaching past the patch (reflect padding fails after the cache is
    built) and flow_fusion without the DIS level rule are one-line errors when the config is read."""
    blur_past = r"distill\.ratio_max: a W blur of 1\.0 W px at ratio 16\.0 reaches past"
    with pytest.raises(ConfigError, match=blur_past) as e:
        load_train_config(None, ["data.patch=32", "distill.ratio_min=2", "distill.ratio_max=16",
                                 "distill.ratio_share=0.5", "distill.blur_w_px=1"])
    assert "\n" not in str(e.value)
    load_train_config(None, ["data.patch=96", "distill.ratio_min=2", "distill.ratio_max=5",
                             "distill.ratio_share=0.25"])  # the measured recipe's ranges load
    with pytest.raises(ConfigError, match=r"pipeline\.flow_fusion: 'modes' needs flow_backend 'dis' and flow_level"):
        load_train_config(None, ["pipeline.flow_fusion=modes", "pipeline.flow_level_by_w_px=false"])


def test_resume_accepts_a_run_from_before_new_fields_only_at_their_defaults():
    """A run checkpointed before ``distill``, ``pipeline.flow_fusion`` and ``data.fused_flow`` existed
    trained as their defaults: resuming it with the defaults is the same run; with another value it is not."""
    from hzsr.baseline_model.config import TrainConfig
    from hzsr.baseline_model.train import _with_new_defaults, config_diff
    from hzsr.core.schema import to_plain

    now = to_plain(TrainConfig())
    old = {k: v for k, v in now.items() if k != "distill"}
    old["pipeline"] = {k: v for k, v in now["pipeline"].items() if k != "flow_fusion"}
    old["data"] = {k: v for k, v in now["data"].items() if k != "fused_flow"}
    assert config_diff(old, now)  # what the plain comparison said (every resume of such a run refused)
    assert config_diff(_with_new_defaults(old, now, to_plain(TrainConfig())), now) == []
    changed = to_plain(load_train_config(None, ["pipeline.flow_fusion=modes"]))
    filled = _with_new_defaults(old, changed, to_plain(TrainConfig()))
    assert any("flow_fusion" in d for d in config_diff(filled, changed))
