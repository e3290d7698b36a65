"""Benchmark: training throughput of ``hzsr model train`` in patches per second (issue 13).

Renders a small simulator data set (or takes ``--data``), trains ``--steps`` steps with the shipped
config (``hzsr/baseline_model/configs/shipped.yaml``) and reports:

- ``patches_per_s``: the trainer's throughput (data loading from the alignment cache, forward,
  masked loss, backward, Adam), after the cache is built;
- ``cache_s_per_capture``: the one-off alignment per capture (coarse + dense flow + maps + target
  registration);
- baseline in the same run: forward + backward + Adam of the same UNet on random tensors of the
  same batch shape, so ``ratio`` (trainer / bare compute) survives a noisy shared machine;
- with ``--run RUN`` (a finished run, e.g. the shipped model's), its total time to the quality
  its ``eval-test/summary.json`` reports.

Usage: ``python bench/train.py [--steps 40] [--data DATASET] [--run RUN]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def bare_compute(widths: list[int], batch: int, patch: int, steps: int) -> float:
    """Patches/s of forward + backward + Adam on random tensors (no data, no loss mask)."""
    import torch

    from hzsr.baseline_model.config import UNetConfig
    from hzsr.baseline_model.unet import FusionUNet

    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(widths=widths))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, patch, patch)
    t = torch.rand(batch, 1, patch, patch)
    for _ in range(2):  # warm-up
        loss = (m(x) - t).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = (m(x) - t).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="training steps to time")
    p.add_argument("--data", default=None, help="a packed, split data set (default: render 8 captures)")
    p.add_argument("--run", default=None, help="a finished run folder to report time-to-quality from")
    args = p.parse_args()

    import torch

    from hzsr.baseline_model.config import load_train_config
    from hzsr.baseline_model.train import train
    from hzsr.cli import main as hzsr_main

    shipped = Path(__file__).resolve().parents[1] / "hzsr" / "baseline_model" / "configs" / "shipped.yaml"
    root = Path(tempfile.mkdtemp(prefix="hzsr-bench-train-"))
    data = Path(args.data) if args.data else None
    render_s = None
    if data is None:
        from hzsr.dataset.pack import PackConfig, pack_dataset
        from hzsr.sim.simsession import SimConfig, simulate_session

        t0 = time.perf_counter()
        sess = simulate_session(root / "sess", SimConfig(captures=8, seed=31, size=(640, 480)), progress=False)
        render_s = time.perf_counter() - t0
        data = root / "ds"
        pack_dataset([sess], data, PackConfig(progress=False))
        import contextlib
        import sys

        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON
            hzsr_main(["dataset", "split", str(data), "--by", "scene", "--ratios", "0.75,0,0.25", "--stratify", "none"])
    cfg = load_train_config(shipped, [f"optim.steps={args.steps}", f"log_every={max(1, args.steps // 4)}",
                                      f"ckpt_every={args.steps}"])
    s = train(cfg, data, root / "run", progress=False)
    n_cache = len(list((root / "run" / "cache").rglob("*.npy")))
    torch.set_num_threads(cfg.threads or torch.get_num_threads())
    bare = statistics.median(bare_compute(cfg.unet.widths, cfg.data.batch_size, cfg.data.patch, 10) for _ in range(2))
    out = {
        "benchmark": "train_throughput", "cpus": os.cpu_count(), "threads": cfg.threads,
        "load_avg_1m": os.getloadavg()[0], "render_s": render_s,
        "patch": cfg.data.patch, "batch_size": cfg.data.batch_size, "widths": cfg.unet.widths, "steps": args.steps,
        "patches_per_s": s["patches_per_s"], "cache_s_per_capture": s["cache_s"] / max(1, n_cache),
        "baseline_bare_compute_patches_per_s": bare, "ratio_trainer_over_bare": s["patches_per_s"] / bare,
    }
    if args.run:
        run = Path(args.run)
        rs = json.loads((run / "summary.json").read_text())
        out["run"] = {"steps": rs["steps"], "patches_per_s": rs["patches_per_s"], "train_s": rs["train_s"],
                      "cache_s": rs["cache_s"], "time_to_quality_s": rs["train_s"] + rs["cache_s"]}
        ev = run / "eval-test" / "summary.json"
        if ev.exists():
            e = json.loads(ev.read_text())
            out["run"]["eval"] = {"mean_psnr": e["mean_psnr"], "checks": [c["verdict"] for c in e["checks"]]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
