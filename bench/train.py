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

Thread policy (issue 19): each round trains in one fresh process per policy, interleaved (the
order rotates), all with ``threads=0`` so the config's fixed count does not override:

- ``default``: torch's defaults (OpenMP spin-waiting for libgomp's 300000 spins, one thread per core);
- ``chosen``: ``baseline_model/threads.py`` as shipped (the measured free cores; a bounded spin when
  they cover the threads, passive waiting when they are short); its decision is in ``decisions``;
- ``passive`` (with ``--policies``): issue 19's first policy, passive waiting always;
- ``spin`` (with ``--policies``): the policy's free-cores decision forced (``choose_wait`` with every
  core free), to show on a loaded machine what ``chosen`` does on an idle one.

``--threads N`` gives ``chosen``, ``passive`` and ``spin`` N threads instead of the measured count
(``default`` keeps torch's one per core). ``--cpus 0,1`` pins every process of the run (the
policies and the busy ones) to those cores, so a bigger machine stands in for 2 cores.
``--load N`` runs N busy processes through every round (the issue's loaded case is ``--load 2``).
Speedups are medians of per-round ratios over ``default``; the 1-minute load average is recorded
before and after.

Usage: ``python bench/train.py [--steps 40] [--rounds 3] [--load 0] [--policies default,chosen]
[--threads N] [--cpus LIST] [--data DATASET] [--run RUN]``. Prints one JSON object.
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


def _child(args: argparse.Namespace) -> None:
    """One fresh process: train ``--steps`` steps under one thread policy, print the summary."""
    decision = None
    if args.child != "default":
        from hzsr.baseline_model import threads

        if args.child == "passive":
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # a user's setting to threads.py: kept
        elif args.child == "spin":
            os.environ.update(threads.choose_wait(2, float(threads.usable_cores()), 1, {})[1])
        decision = threads.apply(args.threads).as_dict()
    import torch

    from hzsr.baseline_model.config import load_train_config
    from hzsr.baseline_model.train import train

    # threads=0: the config's fixed count (2, for bit-identical reproduction) would hide the policy.
    cfg = load_train_config(SHIPPED, [f"optim.steps={args.steps}", f"log_every={max(1, args.steps // 4)}",
                                      f"ckpt_every={args.steps}", "threads=0"])
    c0 = os.times()
    t0 = time.perf_counter()
    s = train(cfg, args.data, args.out, progress=False)
    wall = time.perf_counter() - t0
    c1 = os.times()
    n_cache = len(list((Path(args.out) / "cache").rglob("*.npy")))
    print(json.dumps({"policy": args.child, "threads": torch.get_num_threads(), "decision": decision, "wall_s": wall,
                      "cpu_s": c1.user + c1.system - c0.user - c0.system, "patches_per_s": s["patches_per_s"],
                      "train_s": s["train_s"], "cache_s": s["cache_s"], "n_cache": n_cache,
                      "final_loss": s["final_loss"], "bare": bare_compute(cfg.unet.widths, cfg.data.batch_size,
                                                                          cfg.data.patch, 10)}))


SHIPPED = Path(__file__).resolve().parents[1] / "hzsr" / "baseline_model" / "configs" / "shipped.yaml"
POLICY_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS", "HZSR_TORCH_THREADS",
              "MKL_NUM_THREADS")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40, help="training steps to time")
    p.add_argument("--data", default=None, help="a packed, split data set (default: render 8 captures)")
    p.add_argument("--run", default=None, help="a finished run folder to report time-to-quality from")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of default vs chosen policy")
    p.add_argument("--load", type=int, default=0, help="busy processes running through every round")
    p.add_argument("--policies", default="default,chosen",
                   help="comma list of default, chosen, passive, spin (default first: ratios are over it)")
    p.add_argument("--threads", default=None, help="threads for every policy but default (default: measured)")
    p.add_argument("--cpus", default=None, help="pin every process to these cores, e.g. 0,1 (default: no pinning)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return

    from hzsr.cli import main as hzsr_main

    root = Path(tempfile.mkdtemp(prefix="hzsr-bench-train-"))
    data = Path(args.data) if args.data else None
    render_s = None
    if data is None:
        from hzsr.dataset.pack import PackConfig, pack_dataset
        from hzsr.sim.simsession import SimConfig, simulate_session

        t0 = time.perf_counter()
        sess = simulate_session(root / "sess", SimConfig(captures=8, seed=31, size=(640, 480), truth=True),
                                progress=False)
        render_s = time.perf_counter() - t0
        data = root / "ds"
        # The shipped config trains on the ideal target, which the shards carry with --truth.
        pack_dataset([sess], data, PackConfig(progress=False, truth=True))
        import contextlib
        import sys

        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the JSON
            hzsr_main(["dataset", "split", str(data), "--by", "scene", "--ratios", "0.75,0,0.25", "--stratify", "none"])
    import subprocess
    import sys

    policies = args.policies.split(",")
    if policies[0] != "default" or not set(policies) <= {"default", "chosen", "passive", "spin"}:
        raise SystemExit(f"--policies: expected default first, then chosen/passive/spin, got {args.policies!r}")
    env = {k: v for k, v in os.environ.items() if k not in POLICY_ENV}
    if args.cpus:  # inherited by every child: the policies measure and run on these cores only
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    load0 = os.getloadavg()[0]
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    runs: dict[str, list[dict]] = {k: [] for k in policies}
    try:
        for r in range(args.rounds):
            for pol in policies[r % len(policies):] + policies[: r % len(policies)]:
                out = root / f"run-{pol}-{r}"
                cmd = [sys.executable, __file__, "--child", pol, "--data", str(data), "--out", str(out),
                       "--steps", str(args.steps)] + (["--threads", args.threads] if args.threads else [])
                cp = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if cp.returncode:
                    raise SystemExit(f"{pol} failed: {cp.stderr.strip().splitlines()[-1:]}")
                runs[pol].append(json.loads(cp.stdout.strip().splitlines()[-1]))
    finally:
        for b in busy:
            b.kill()
            b.wait()

    def med(pol: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[pol])

    def ratio(key: str, pol: str = "chosen") -> float:  # pol over default, per round
        return statistics.median(c[key] / d[key] for c, d in zip(runs[pol], runs["default"], strict=True))

    out = {
        "benchmark": "train_throughput", "cpus": os.cpu_count(), "rounds": args.rounds, "busy_processes": args.load,
        "load_avg_1m_before": load0, "load_avg_1m_after": os.getloadavg()[0], "render_s": render_s,
        "steps": args.steps,
        "policies": {pol: {"threads": runs[pol][0]["threads"], "patches_per_s_median": med(pol, "patches_per_s"),
                           "wall_s_median": med(pol, "wall_s"), "cpu_s_median": med(pol, "cpu_s"),
                           "train_s_median": med(pol, "train_s"), "final_loss": [x["final_loss"] for x in runs[pol]],
                           "bare_compute_patches_per_s_median": med(pol, "bare"),
                           "wall_s_rounds": [round(x["wall_s"], 2) for x in runs[pol]],
                           "patches_per_s_rounds": [round(x["patches_per_s"], 2) for x in runs[pol]],
                           # threads.py's record per round (wait, wait_env, free_cores, threads, source)
                           "decisions": [x["decision"] for x in runs[pol]]} for pol in policies},
        "cpus_pinned": args.cpus, "threads_requested": args.threads,
        **{f"speedup_{pol}_over_default_patches_per_s": ratio("patches_per_s", pol) for pol in policies[1:]},
        **{f"speedup_{pol}_over_default_wall": 1 / ratio("wall_s", pol) for pol in policies[1:]},
        "cache_s_per_capture": runs[policies[-1]][0]["cache_s"] / max(1, runs[policies[-1]][0]["n_cache"]),
    }
    if "chosen" in runs:
        out["ratio_trainer_over_bare_chosen"] = med("chosen", "patches_per_s") / med("chosen", "bare")
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
