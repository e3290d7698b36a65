"""Training: seeded, resumable, logged, and in step across DistributedDataParallel ranks."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from hzsr.baseline_model.checkpoint import read_checkpoint
from hzsr.baseline_model.config import load_train_config
from hzsr.baseline_model.train import gaussian_kernel, hzsr_loss, train
from hzsr.core.errors import ConfigError

from .conftest import TINY


def _weights(path):
    return read_checkpoint(path)["state_dict"]


def _moved(state) -> bool:
    """Training changed the weights: they differ from the seeded initial ones."""
    from hzsr.baseline_model.unet import FusionUNet

    cfg = load_train_config(None, TINY)
    torch.manual_seed(cfg.seed)
    init = FusionUNet(cfg.unet).state_dict()
    return max(float((state[k] - init[k]).abs().max()) for k in init) > 1e-3


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_run_writes_checkpoints_log_and_summary(tiny_run):
    for name in ("model.pt", "ckpt-last.pt", "log.csv", "summary.json", "config.yaml"):
        assert (tiny_run / name).is_file(), name
    rows = list(csv.DictReader(open(tiny_run / "log.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert all(float(r["patches_per_s"]) > 0 for r in rows)
    s = json.loads((tiny_run / "summary.json").read_text())
    assert s["steps"] == 6 and s["patches_per_s"] > 0
    raw = read_checkpoint(tiny_run / "model.pt")
    assert "optimizer" not in raw and raw["unet"]["widths"] == [4, 4, 8, 8, 8]
    assert raw["pipeline"]["flow_backend"] == "dis"
    assert _moved(raw["state_dict"])


def test_same_config_same_run_and_resume_continues_exactly(tiny_dataset, tiny_run, tmp_path):
    cfg = load_train_config(None, TINY)
    again = tmp_path / "again"
    train(cfg, tiny_dataset, again, progress=False)
    assert _same(_weights(again / "model.pt"), _weights(tiny_run / "model.pt"))

    # Crash right after the step-3 checkpoint, then --resume: the same weights as one 6-step run.
    half = tmp_path / "half"
    _crash_after_checkpoint(cfg, tiny_dataset, half, step=3)
    assert read_checkpoint(half / "ckpt-last.pt")["step"] == 3 and not (half / "model.pt").exists()
    train(cfg, tiny_dataset, half, resume=True, progress=False)
    assert _same(_weights(half / "model.pt"), _weights(tiny_run / "model.pt"))
    rows = list(csv.DictReader(open(half / "log.csv")))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]  # no duplicated rows after a resume


def _crash_after_checkpoint(cfg, data, out, step):
    """Run ``cfg`` but die (as a crash would) right after the step-``step`` checkpoint is written."""
    import hzsr.baseline_model.train as T

    real = T.save_checkpoint

    class Crash(Exception):
        pass

    def save_then_crash(path, payload):
        real(path, payload)
        if payload.get("step") == step and path.name == "ckpt-last.pt":
            raise Crash

    T.save_checkpoint = save_then_crash
    try:
        with pytest.raises(Crash):
            train(cfg, data, out, progress=False)
    finally:
        T.save_checkpoint = real


def test_existing_run_needs_resume_and_resume_needs_a_run(tiny_dataset, tiny_run, tmp_path):
    with pytest.raises(ConfigError, match="--resume"):
        train(load_train_config(None, TINY), tiny_dataset, tiny_run, progress=False)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(load_train_config(None, TINY), tiny_dataset, tmp_path / "new", resume=True, progress=False)


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text("optim:\n  stepz: 3\n")
    with pytest.raises(ConfigError, match=r"optim\.stepz: unknown key"):
        load_train_config(bad)
    with pytest.raises(ConfigError, match="data.patch"):
        load_train_config(None, ["data.patch=30"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_train_config(None, ["optim.steps"])
    cfg = load_train_config(None, ["unet.widths=[4,8,8,16,16]", "pipeline.qa.maps.occlusion_scale=0.5"])
    assert cfg.unet.widths == [4, 8, 8, 16, 16] and cfg.pipeline.qa.maps.occlusion_scale == 0.5


def test_loss_is_masked_and_ties_low_frequencies_to_the_source():
    from hzsr.baseline_model.config import LossConfig

    k1 = gaussian_kernel(2.0)
    y_src = torch.rand(1, 1, 32, 32)
    tgt = torch.rand(1, 1, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1
    y = tgt.clone()
    y[..., 16:] += 0.5  # wrong only where the mask is 0
    _, l1, _ = hzsr_loss(y, tgt, mask, y_src, LossConfig(), k1)
    assert float(l1) == pytest.approx(0.0, abs=1e-7)
    # A brightness offset is invisible to nothing: the low-pass term sees it.
    _, _, lp0 = hzsr_loss(y_src, tgt, mask, y_src, LossConfig(), k1)
    _, _, lp1 = hzsr_loss(y_src + 0.1, tgt, mask, y_src, LossConfig(), k1)
    assert float(lp0) < 1e-6 and float(lp1) == pytest.approx(0.1, rel=1e-3)


def test_ddp_two_processes_stay_in_step(tiny_dataset, tmp_path):
    """torchrun, 2 CPU processes (gloo): each reads its own captures; parameters stay identical."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "hzsr.cli", "model", "train", str(tiny_dataset), "--out", str(out), "--quiet"]
    for s in TINY:
        cmd += ["--set", s]
    # torchrun writes its workers' logs to a fresh tempfile folder (torchelastic_*) that it never
    # removes: give it the test's own TMPDIR, or every `make test` leaves one in /tmp.
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HZSR_DDP_BACKEND": "gloo", "TMPDIR": str(tmp)}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert any(p.name.startswith("torchelastic_") for p in tmp.iterdir())  # it went there, not to /tmp
    s = json.loads((out / "summary.json").read_text())
    assert s["world_size"] == 2
    a, b = s["rank_param_checksums"]
    assert a == b
    ra, rb = (set(x) for x in s["rank_captures"])
    assert ra and rb and not (ra & rb)  # each rank read its own part of the split
    # And they really trained (equal, but not merely by never moving).
    raw = read_checkpoint(out / "model.pt")
    assert raw["step"] == 6 and _moved(raw["state_dict"])


def test_resume_with_another_config_is_refused_before_writing(tiny_dataset, tiny_run, tmp_path):
    """The refused --resume names the keys that differ and changes nothing, so the right config still resumes."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    other = load_train_config(None, [*TINY, "optim.steps=8", "data.patch=48"])
    with pytest.raises(ConfigError) as ei:
        train(other, tiny_dataset, run, resume=True, progress=False)
    msg = ei.value.one_line()
    assert "2 key(s)" in msg and "optim.steps: run 6, now 8" in msg and "data.patch: run 32, now 48" in msg, msg
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    # The run's own config still resumes (the run is finished: nothing left to do, nothing broken).
    s = train(load_train_config(None, TINY), tiny_dataset, run, resume=True, progress=False)
    assert s["steps"] == 6 and s["steps_this_call"] == 0


def test_resume_of_a_run_from_before_the_flow_fusion_default(tiny_dataset, tiny_run, tmp_path):
    """A run checkpointed under flow_fusion "none" (the default before 2026-12-08) resumes under
    today's default: without data.fused_flow the field is inference only. With it, it is refused."""
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    raw = torch.load(run / "ckpt-last.pt", weights_only=True)
    raw["train"]["pipeline"]["flow_fusion"] = "none"
    torch.save(raw, run / "ckpt-last.pt")
    s = train(load_train_config(None, TINY), tiny_dataset, run, resume=True, progress=False)
    assert s["steps"] == 6 and s["steps_this_call"] == 0
    raw["train"]["data"]["fused_flow"] = True  # a run that trained on the fused flow: the value counts
    torch.save(raw, run / "ckpt-last.pt")
    with pytest.raises(ConfigError, match=r"1 key\(s\): pipeline\.flow_fusion: run 'none', now 'modes_pruned2_ma"):
        train(load_train_config(None, [*TINY, "data.fused_flow=true"]), tiny_dataset, run, resume=True,
              progress=False)
    # A run that trains on the fused flow records what "auto" runs, so a later default cannot change
    # its flows silently: one stored as "auto" (before that was recorded) is refused too.
    raw["train"]["pipeline"]["flow_fusion"] = "auto"
    torch.save(raw, run / "ckpt-last.pt")
    with pytest.raises(ConfigError, match=r"pipeline\.flow_fusion: run 'auto', now 'modes_pruned2_matched'"):
        train(load_train_config(None, [*TINY, "data.fused_flow=true"]), tiny_dataset, run, resume=True,
              progress=False)


def test_failed_first_run_blocks_nothing(tiny_dataset, tmp_path, monkeypatch):
    import hzsr.baseline_model.train as T

    run = tmp_path / "run"
    # Fails before the data is found: nothing is written at all.
    bad = load_train_config(None, [*TINY, "data.split=nosuchsplit"])
    with pytest.raises(Exception, match="nosuchsplit"):
        train(bad, tiny_dataset, run, progress=False)
    assert not run.exists()
    # Fails in the first step, after config.yaml and the cache: that blocks neither a fresh run nor
    # says anything but the truth to --resume.
    def boom(*a, **k):
        raise RuntimeError("out of memory in the first step")

    monkeypatch.setattr(T, "hzsr_loss", boom)
    with pytest.raises(RuntimeError, match="first step"):
        train(load_train_config(None, TINY), tiny_dataset, run, progress=False)
    monkeypatch.undo()
    assert (run / "config.yaml").is_file() and not (run / "ckpt-last.pt").exists()
    with pytest.raises(ConfigError, match="stopped before its first checkpoint; start it again without --resume"):
        train(load_train_config(None, TINY), tiny_dataset, run, resume=True, progress=False)
    s = train(load_train_config(None, TINY), tiny_dataset, run, progress=False)
    assert s["steps"] == 6 and (run / "model.pt").is_file()


@pytest.mark.parametrize("override, message", [
    ("optim.steps=-5", "optim.steps: must be in 1 .. 100_000_000, got -5"),
    ("threads=100000", "threads: must be in 0 .. 256, got 100000"),
    ("data.workers=-1", "data.workers: must be in 0 .. 64, got -1"),
    ("optim.lr=0", "optim.lr: must be > 0 and <= 1, got 0"),
    ("data.min_valid=1.5", "data.min_valid: must be in 0 .. 1, got 1.5"),
    ("pipeline.halo=-1", "pipeline.halo: must be in 0 .. 1024, got -1"),
])
def test_config_values_are_range_checked(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_train_config(None, [override])


def test_cache_files_follow_the_umask(tiny_run):
    files = [p for p in (tiny_run / "cache").rglob("*.npy")]
    assert files
    old = os.umask(0)
    os.umask(old)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~old for p in files), [oct(p.stat().st_mode) for p in files]
