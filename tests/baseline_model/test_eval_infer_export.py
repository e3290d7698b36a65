"""eval, infer and export through the CLI, the shipped checkpoint, and bad input."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from hzsr.baseline_model.checkpoint import load_model
from hzsr.cli import main
from hzsr.core.errors import ModelError


def test_eval_writes_metrics_and_a_table(tiny_run, tiny_dataset, tmp_path, capsys):
    out = tmp_path / "ev"
    assert main(["model", "eval", str(tiny_dataset), "--ckpt", str(tiny_run / "model.pt"),
                 "--split", "test", "--out", str(out), "--quiet"]) == 0
    df = pd.read_csv(out / "metrics.csv")
    splits = pd.read_csv(tiny_dataset / "splits.csv")
    held_out = set(splits.loc[splits["split"] == "test", "capture_id"])
    assert len(df) == 2 and set(df["capture_id"]) == held_out  # the held-out scene only
    (kind,) = set(df["scene_kind"])
    for m in ("bicubic", "warped_ref", "fusion", "full"):
        assert df[f"psnr_{m}"].between(10, 60).all() and df[f"ssim_{m}"].between(0, 1).all()
    if kind in ("architecture", "landscape"):
        # On a static scene the warped reference carries T's detail: it beats the bicubic W crop.
        assert (df["psnr_warped_ref"] > df["psnr_bicubic"] + 1).all()
    else:
        # A moving subject is where the reference lies: the maps keep the output above it.
        assert (df["psnr_full"] > df["psnr_warped_ref"] + 1).all()
    md = (out / "metrics.md").read_text()
    assert f"| {kind} | 2 |" in md and "full - bicubic" in md
    printed = capsys.readouterr().out
    assert "pass" in printed or "fail" in printed


def _capture_files(session, cid="c00002"):
    d = session / "captures" / cid
    return d / "main_W.jpg", d / "ref_T.jpg", d / "capture.json"


def test_infer_full_resolution_with_maps_and_timings(tiny_run, tiny_session, tmp_path, capsys):
    src, ref, meta = _capture_files(tiny_session)
    out = tmp_path / "out.png"
    assert main(["model", "infer", str(src), "--ckpt", str(tiny_run / "model.pt"), "--ref", str(ref),
                 "--meta", str(meta), "--zoom", "3", "--out", str(out), "--save-maps", str(tmp_path / "maps"),
                 "--tile", "64"]) == 0
    img = cv2.imread(str(out))
    assert img.shape == (240, 320, 3)  # W's full resolution
    info = json.loads((tmp_path / "out.png.json").read_text())
    assert info["zoom"] == 3 and info["used_reference"] and info["tiles"] == 4 * 5
    for stage in ("decode", "coarse_align", "dense_flow", "maps", "fusion", "fusion_colour", "fusion_unet",
                  "fusion_blend", "uncrop", "encode", "total"):
        assert info["timings_s"][stage] >= 0
    assert not info["warnings"]
    from hzsr.baseline_model.config import PipelineConfig

    cfg, level = PipelineConfig(), info["flow"]["level"]  # the tiny run keeps the level-2 defaults
    assert level >= 0 and info["flow"]["blur_grid_px"] == (cfg.flow_blur_px if level >= cfg.blend_maps_level else 0.0)
    for name in ("occlusion", "defocus", "uncertainty", "reject", "blend", "warped_ref", "fusion", "final"):
        assert (tmp_path / "maps" / f"{name}.png").is_file()
    assert "coarse_align" in capsys.readouterr().out


def test_infer_without_meta_warns_about_af_roi(tiny_run, tiny_session, tmp_path):
    src, ref, _ = _capture_files(tiny_session)
    out = tmp_path / "o.png"
    assert main(["model", "infer", str(src), "--ckpt", str(tiny_run / "model.pt"), "--ref", str(ref),
                 "--out", str(out)]) == 0
    warnings = json.loads((tmp_path / "o.png.json").read_text())["warnings"]
    assert any("AF ROI" in w and "centre" in w for w in warnings)


def test_unreadable_inputs_are_one_line_errors(tiny_session, tmp_path, capsys):
    src, ref, meta = _capture_files(tiny_session)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert main(["model", "infer", str(src), "--ckpt", str(bad), "--ref", str(ref),
                 "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(bad) in err and "checkpoint" in err
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing.pt")
    broken = tmp_path / "b.jpg"
    broken.write_bytes(b"\xff\xd8garbage")
    assert main(["model", "infer", str(broken), "--ref", str(ref), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "b.jpg" in err and "SOURCE" in err


def test_export_onnx_matches_torch(tiny_run, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "unet.onnx"
    assert main(["model", "export", "--ckpt", str(tiny_run / "model.pt"), "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert out.is_file() and res["max_abs_diff"] <= 1e-4
    # The comparison is real: a perturbed model would not pass it.
    import onnxruntime as ort
    import torch

    m = load_model(tiny_run / "model.pt").model
    with torch.no_grad():
        m.head.bias += 0.01
    x = np.random.default_rng(0).random((1, 3, 48, 80), dtype=np.float32)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(got - m(torch.from_numpy(x)).detach().numpy()).max() > 1e-3


def test_model_cli_without_torch_is_one_line(tmp_path):
    """``hzsr model ...`` with torch missing: one line naming the extra, exit 2."""
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    env = {**os.environ, "PYTHONPATH": f"{block}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run([sys.executable, "-m", "hzsr.cli", "model", "export", "--out", str(tmp_path / "x.onnx")],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "hzsr[train]" in r.stderr


def test_thread_policy_precedence_and_bad_values(monkeypatch):
    from hzsr.baseline_model import threads
    from hzsr.core.errors import ConfigError

    for k in ("HZSR_TORCH_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(k, raising=False)
    cores = threads.usable_cores()
    pol = threads.choose(None, sample_s=0.02)
    assert pol.source == "measured" and 1 <= pol.threads <= cores and 0 <= pol.free_cores <= cores + 1e-6
    monkeypatch.setenv("HZSR_TORCH_THREADS", "3")
    assert (threads.choose(None).threads, threads.choose(None).source) == (3, "HZSR_TORCH_THREADS")
    assert (threads.choose("5").threads, threads.choose("5").source) == (5, "--threads")  # the flag wins
    monkeypatch.setenv("HZSR_TORCH_THREADS", "auto")
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert threads.choose(None).source == "OMP_NUM_THREADS"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")  # torchrun's OMP_NUM_THREADS=1 is not the user's choice
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * cores))
    pol = threads.choose(None, sample_s=0.02)
    assert pol.source == "measured" and pol.threads == 1 and pol.local_ranks == 2 * cores
    with pytest.raises(ConfigError, match="--threads"):
        threads.choose("zero")
    with pytest.raises(ConfigError, match="--threads"):
        threads.choose("0")


def test_thread_policy_is_set_before_torch_loads():
    """A fresh process: passive waiting and the chosen count reach torch's OpenMP."""
    code = ("from hzsr.baseline_model.threads import apply\n"
            "import os, sys\n"
            "assert 'torch' not in sys.modules\n"
            "p = apply('1')\n"
            "import torch\n"
            "print(os.environ['OMP_WAIT_POLICY'], p.threads, torch.get_num_threads(), p.torch_was_loaded)\n")
    from hzsr.baseline_model.threads import WAIT_ENV

    # Without the wait variables an earlier in-process verb may have set (a bounded spin, when it
    # found the cores free): a child takes inherited ones for the user's and keeps them.
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", *WAIT_ENV)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["PASSIVE", "1", "1", "False"]


def test_onnxruntime_and_torch_runtimes_agree(tiny_session, monkeypatch, tmp_path):
    """The shipped UNet through both runtimes, on a real capture: same output to float rounding."""
    pytest.importorskip("onnxruntime")
    import torch

    from hzsr.baseline_model.export import TOLERANCE
    from hzsr.baseline_model.infer import read_meta, read_rgb
    from hzsr.baseline_model.pipeline import HZSRPipeline
    from hzsr.baseline_model.runtime import make_runner

    monkeypatch.setenv("HZSR_CACHE", str(tmp_path / "cache"))
    model = load_model(None).model
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a = make_runner(model, "torch", "cpu")(x)
        b = make_runner(model, "onnxruntime", "cpu")(x)
    assert float((a - b).abs().max()) <= TOLERANCE
    assert list((tmp_path / "cache" / "onnx").glob("*.onnx"))  # exported once, then read from the cache
    src, ref, meta = _capture_files(tiny_session)
    w, r, m = read_rgb(src, "SOURCE"), read_rgb(ref, "--ref"), read_meta(meta)
    outs = {rt: HZSRPipeline(model, runtime=rt).run(w, r, m) for rt in ("torch", "onnxruntime")}
    diff = np.abs(outs["torch"].final.astype(int) - outs["onnxruntime"].final.astype(int))
    assert outs["torch"].tiles > 0 and diff.max() <= 1 and (diff > 0).mean() < 1e-3
    t = outs["onnxruntime"].timings
    assert t["fusion_unet"] > 0 and t["fusion_colour"] > 0 and t["fusion_blend"] > 0
    assert t["fusion_unet"] + t["fusion_colour"] + t["fusion_blend"] <= t["fusion"]


def test_encode_writes_rgb_and_leaves_the_image_as_it_was(tmp_path):
    """``encode`` swaps to BGR in place for OpenCV (no converted copy at the memory peak) and back."""
    from hzsr.baseline_model.infer import encode

    rgb = np.zeros((8, 12, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    rgb[:, :6, 2] = 90
    before = rgb.copy()
    encode(tmp_path / "x.png", rgb)
    assert np.array_equal(rgb, before)
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(tmp_path / "x.png")), cv2.COLOR_BGR2RGB), before)
