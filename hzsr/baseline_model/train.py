"""``hzsr model train``: fit the fusion UNet on a packed data set, on one process or under torchrun.

Run folder::

    RUN/config.yaml        the resolved config (file + --set overrides)
    RUN/cache/<key>/       per-capture alignment (data.build_cache), reused across runs with --data
    RUN/ckpt-last.pt       model + optimizer + step, every ``ckpt_every`` steps (atomic)
    RUN/model.pt           the final weights and the pipeline config: what eval/infer/export read
    RUN/log.csv            step, epoch-free counters, losses, lr, patches/s, elapsed
    RUN/summary.json       figures of the run (throughput, time, per-rank checks)

Loss (``LossConfig``), with ``M`` the target's loss mask and ``G`` a Gaussian low-pass:

    L = w_l1 * sum(M |Y - Y_tgt|) / sum(M) + w_lowpass * mean(|G * Y - G * Y_src|)
        + w_grad * sum(M' |grad Y - grad Y_tgt|) / sum(M')      (gradient_l1; 0 unless configured)
        + a * (mean(|Y - Y_T|) + w_grad * gradient_l1(Y, Y_T, 1))  (distillation; a = distill.weight)

``Y_T`` is a teacher network's output on the same input patch (``distill.teacher``: its UNet in
eval mode, without gradient), what inference would blend from those inputs; the term is over every
pixel. With ``distill.ratio_min``/``ratio_max`` a share of each batch first has its source rebuilt
at another focal ratio (``source_at_ratio``), so the teacher (and the target) show the student
sources sharper than the simulator's ratio 5 (config.DistillConfig).

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) each rank takes captures ``ids[rank::world]``
of the split, builds their cache, and draws its own patches; DistributedDataParallel averages the
gradients (gloo on CPU, NCCL on GPUs), so the ranks' parameters stay identical, which
``summary.json`` records as one checksum per rank.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from hzsr.baseline_model.checkpoint import read_checkpoint, save_checkpoint, unet_payload
from hzsr.baseline_model.config import LossConfig, TrainConfig, dump_config, pipeline_payload
from hzsr.baseline_model.data import build_cache, resolve_target
from hzsr.baseline_model.patches import IndexRangeSampler, PatchDataset
from hzsr.baseline_model.provenance import code_version, data_digest
from hzsr.baseline_model.unet import FusionUNet
from hzsr.core.errors import ConfigError, ModelError
from hzsr.core.fileio import atomic_write_bytes, atomic_write_json
from hzsr.core.schema import to_plain

LOG_FIELDS = ("step", "samples", "loss", "l1", "lowpass", "lr", "patches_per_s", "elapsed_s", "distill")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (gloo on CPU, NCCL with CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    backend = "nccl" if torch.cuda.is_available() and os.environ.get("HZSR_DDP_BACKEND") != "gloo" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def gaussian_kernel(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def lowpass(y: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of Nx1xHxW with reflect padding."""
    r = k1.numel() // 2
    y = F.pad(y, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k1.view(1, 1, 1, -1))
    return F.conv2d(y, k1.view(1, 1, -1, 1))


def hzsr_loss(y: torch.Tensor, y_tgt: torch.Tensor, mask: torch.Tensor, y_src: torch.Tensor, cfg: LossConfig,
              k1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, l1, lowpass)`` of the module docstring's loss."""
    l1 = (mask * (y - y_tgt).abs()).sum() / mask.sum().clamp(min=1.0)
    lp = (lowpass(y, k1) - lowpass(y_src, k1)).abs().mean() if cfg.w_lowpass > 0 else y.new_zeros(())
    total = cfg.w_l1 * l1 + cfg.w_lowpass * lp
    if cfg.w_grad > 0:  # guarded: a config without it computes exactly the loss it always did
        total = total + cfg.w_grad * gradient_l1(y, y_tgt, mask)
    return total, l1, lp


def gradient_l1(y: torch.Tensor, y_tgt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum(M' (|dx Y - dx Y_tgt| + |dy Y - dy Y_tgt|)) / sum(M')``, forward differences.

    ``M'`` is 1 where both pixels of a difference are in the loss mask. Edges and fine texture are
    where the target's detail lives; a plain L1 lets a slightly blurred output pay little for
    them. This is the detail-transfer term standing in for the paper's VGG loss, whose weights
    would have to be downloaded.
    """
    mx = mask[..., :, 1:] * mask[..., :, :-1]
    my = mask[..., 1:, :] * mask[..., :-1, :]
    gx = (torch.diff(y, dim=-1) - torch.diff(y_tgt, dim=-1)).abs()
    gy = (torch.diff(y, dim=-2) - torch.diff(y_tgt, dim=-2)).abs()
    return ((mx * gx).sum() + (my * gy).sum()) / (mx.sum() + my.sum()).clamp(min=1.0)


def distill_term(y: torch.Tensor, y_teacher: torch.Tensor, w_grad: float) -> torch.Tensor:
    """``mean(|Y - Y_T|) + w_grad * gradient_l1(Y, Y_T, 1)``: the distillation term, over every pixel."""
    d = (y - y_teacher).abs().mean()
    if w_grad > 0:
        d = d + w_grad * gradient_l1(y, y_teacher, torch.ones_like(y))
    return d


def source_at_ratio(y_tgt: torch.Tensor, ratio: float, blur_w_px: float, noise_dn: float,
                    gen: torch.Generator) -> torch.Tensor:
    """What a W camera of focal ratio ``ratio`` makes of ``y_tgt`` (1x1xHxW), as ``I_src`` on T's grid.

    W's optics (a Gaussian of ``blur_w_px`` W pixels, ``blur_w_px * ratio`` T pixels), its pixels
    (area average over ``ratio`` x ``ratio`` T pixels), its noise after the ISP (``noise_dn`` / 255
    per W pixel, from ``gen``), then the pipeline's bicubic upsampling back to T's grid, clipped to
    [0, 1]. The simulator renders W at ratio 5 only; this makes sources at any ratio from the same
    renders (the target is the all-in-focus, noise-free scene, so it stands for the scene itself).
    """
    h, w = y_tgt.shape[-2:]
    y = y_tgt
    sigma = blur_w_px * ratio
    if sigma > 0:
        y = lowpass(y, gaussian_kernel(sigma).to(y))
    hs, ws = max(1, round(h / ratio)), max(1, round(w / ratio))
    small = F.adaptive_avg_pool2d(y, (hs, ws))
    if noise_dn > 0:
        small = small + noise_dn / 255.0 * torch.randn(small.shape, generator=gen).to(small)
    up = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)
    return up.clamp(0.0, 1.0)


def rebuild_sources(x: torch.Tensor, y_tgt: torch.Tensor, mask: torch.Tensor, cfg: Any, seed: int,
                    step: int, rank: int = 0) -> torch.Tensor:
    """``x`` with the source channel of its first ``floor(ratio_share * N)`` patches at random ratios.

    The ratio of each is uniform in ``ratio_min .. ratio_max``, drawn (with the noise) from a
    generator seeded by ``(seed, step, rank)``, so a resumed run rebuilds the same batches and each
    rank of a distributed run draws its own (rank 0's draws are a single process's). Only pixels
    inside the target's mask take the rebuilt source (outside it the target is not the scene).
    """
    n = int(cfg.ratio_share * x.shape[0])
    if n == 0 or cfg.ratio_max <= 0:
        return x
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step) + int(rank) * 1_000_000_007)
    ratios = cfg.ratio_min + (cfg.ratio_max - cfg.ratio_min) * torch.rand(n, generator=gen)
    x = x.clone()
    for i in range(n):
        src = source_at_ratio(y_tgt[i : i + 1].cpu(), float(ratios[i]), cfg.blur_w_px, cfg.noise_dn, gen)
        src = src.to(x)
        inside = mask[i : i + 1] > 0.5
        x[i : i + 1, :1] = torch.where(inside, src, x[i : i + 1, :1])
    return x


def load_teacher(cfg: Any, patch: int, device: torch.device) -> torch.nn.Module | None:
    """The teacher UNet of ``distill`` (eval mode, no gradient), or None without one.

    Raises:
        ConfigError: one line naming the file and ``distill.teacher``: it cannot be read as a
            checkpoint, its sha256 is not ``teacher_sha256``, or its UNet cannot run on the patch.
    """
    if not cfg.teacher:
        return None
    from hzsr.baseline_model.checkpoint import load_model, shipped_checkpoint_path

    path = shipped_checkpoint_path() if cfg.teacher == "shipped" else Path(cfg.teacher)
    if cfg.teacher_sha256:
        got = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "no file"
        if got != cfg.teacher_sha256:
            raise ConfigError(f"sha256 is {got}, the config names {cfg.teacher_sha256}", file=path,
                              field="distill.teacher_sha256")
    try:
        teacher = load_model(path).model
    except ModelError as exc:
        raise ConfigError(f"not a usable teacher: {exc}", file=path, field="distill.teacher") from None
    if patch % teacher.size_multiple:
        raise ConfigError(f"the teacher's UNet needs sides a multiple of {teacher.size_multiple}, the patch is "
                          f"{patch}", file=path, field="distill.teacher")
    teacher.eval().to(device)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def param_checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for _, p in sorted(model.state_dict().items()):
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _lr_factor(step: int, total: int, min_ratio: float) -> float:
    t = min(1.0, step / max(1, total))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def _read_log(path: Path, upto: int) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) <= upto]


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def config_diff(run: Any, now: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain configs: ``optim.steps: run 6, now 8``."""
    if isinstance(run, dict) and isinstance(now, dict):
        out: list[str] = []
        for k in sorted(set(run) | set(now)):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in run:
                out.append(f"{key}: not in the run's config, now {now[k]!r}")
            elif k not in now:
                out.append(f"{key}: run {run[k]!r}, not in this config")
            else:
                out += config_diff(run[k], now[k], key)
        return out
    return [] if run == now else [f"{prefix}: run {run!r}, now {now!r}"]


def _with_new_defaults(run: dict[str, Any], now: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    """``run`` (a checkpoint's train config) with every key it lacks filled from ``now`` where ``now``
    holds that key's default: a field added after the run started (``distill``, ``pipeline.flow_fusion``,
    ``data.fused_flow``) trained as its default, so a resume with the default is the same run."""
    out = dict(run)
    for key, value in now.items():
        dflt = default.get(key, object())
        if key not in out:
            if value == dflt:
                out[key] = value
        elif isinstance(out[key], dict) and isinstance(value, dict) and isinstance(dflt, dict):
            out[key] = _with_new_defaults(out[key], value, dflt)
    return out


def check_run_folder(out: Path, cfg: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """Decide, before anything is written, whether a run may start or resume in ``out``.

    A run exists once it has a checkpoint (``ckpt-last.pt`` or ``model.pt``); a first run that
    failed before its first checkpoint left at most ``config.yaml``, a log and a cache, which a
    fresh start overwrites (the cache is reused). ``--resume`` compares the config with the one
    in the checkpoint and names every key that differs.

    Returns:
        The checkpoint to resume from, or None for a fresh run.

    Raises:
        ConfigError: a run exists and ``resume`` is off; nothing to resume; the config differs.
    """
    last = out / "ckpt-last.pt"
    started = last.exists() or (out / "model.pt").exists()
    if not resume:
        if started:
            raise ConfigError("a run already exists here; pass --resume to continue it, or choose another --out",
                              file=out, field="--out")
        return None
    if not last.exists():
        why = ("the run finished (model.pt) without a ckpt-last.pt" if (out / "model.pt").exists() else
               "the first run stopped before its first checkpoint; start it again without --resume"
               if (out / "config.yaml").exists() else "no run here")
        raise ConfigError(f"nothing to resume (no ckpt-last.pt): {why}", file=out, field="--resume")
    raw = read_checkpoint(last)
    if not isinstance(raw.get("train"), dict):
        raise ConfigError("the checkpoint holds no training config to compare with; start a new run",
                          file=last, field="--resume")
    now = to_plain(cfg)
    run_cfg = _with_new_defaults(raw["train"], now, to_plain(TrainConfig()))
    if not (now.get("data") or {}).get("fused_flow"):
        # Without data.fused_flow, pipeline.flow_fusion is inference only (training aligns on DIS's
        # flow): a run started under another value, such as the "none" of before 2026-12-08, is the
        # same training run; the checkpoints it writes from here record today's value.
        for c in (run_cfg, now):
            if isinstance(c.get("pipeline"), dict):
                c["pipeline"] = {k: v for k, v in c["pipeline"].items() if k != "flow_fusion"}
    diff = config_diff(run_cfg, now)
    if diff:
        shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise ConfigError(f"the config differs from the run's in {len(diff)} key(s): {shown}; resume with the "
                          f"run's config ({out / 'config.yaml'})", file=last, field="--resume")
    return raw


def kind_weights(reader: Any, ids: list[str], weights: dict[str, float]) -> list[float] | None:
    """Per-capture sampling weights from ``data.kind_weights`` (None when it is empty: uniform).

    A capture's kind is the manifest's ``scene_kind`` of its scene id and tags; a kind not named weighs 1.
    """
    if not weights:
        return None
    from hzsr.dataset.schema import scene_kind

    out = []
    for cid in ids:
        m = reader.meta(cid)
        tags = m.get("scene_tags") or []
        out.append(float(weights.get(scene_kind(str(m.get("scene_id", "")), list(tags)), 1.0)))
    if sum(out) <= 0:
        raise ConfigError("every capture of the split weighs 0", field="data.kind_weights")
    return out


def train(cfg: TrainConfig, data_dir: str | Path, out_dir: str | Path, *, resume: bool = False,
          progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Train; returns the summary (also written to ``RUN/summary.json`` by rank 0)."""
    from tqdm import tqdm

    from hzsr.dataset.reader import ShardReader

    d = init_distributed()
    out = Path(out_dir)
    last = out / "ckpt-last.pt"
    if cfg.data.fused_flow and cfg.pipeline.flow_fusion == "auto":
        # The run trains on these flows: its config.yaml and checkpoints record what "auto" runs
        # today, so a resume after the default has moved is refused, not trained on other flows.
        cfg = replace(cfg, pipeline=replace(cfg.pipeline, flow_fusion=cfg.pipeline.flow_fusion_used()))
    # Every rank checks (so every rank fails alike), before anything is written; only rank 0
    # writes, after all have looked.
    raw = check_run_folder(out, cfg, resume)
    if d.world > 1:
        torch.distributed.barrier()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = torch.device(device if device != "cuda" else f"cuda:{d.local_rank}")
    teacher = load_teacher(cfg.distill, cfg.data.patch, dev)  # before anything is written

    # Data: each rank aligns and reads only its own part of the split.
    reader = ShardReader(data_dir)
    ids = reader.ids(cfg.data.split)
    if len(ids) < d.world:
        raise ConfigError(f"split {cfg.data.split!r} has {len(ids)} captures, fewer than {d.world} ranks",
                          file=data_dir, field="data.split")
    mine = ids[d.rank :: d.world]
    target = resolve_target(reader, ids, cfg.data.target)  # before anything is written
    if d.main and not resume:  # after the data is found; a resumed run's config.yaml is the one checked
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "config.yaml", dump_config(cfg).encode())
    cache_dir = Path(cfg.data.cache_dir) if cfg.data.cache_dir else out / "cache"
    t0 = time.perf_counter()
    paths = build_cache(reader, mine, cfg.pipeline, cache_dir, target=target, progress=progress and d.main,
                        level2_flow=cfg.data.level2_flow, fused_flow=cfg.data.fused_flow)
    weights = kind_weights(reader, mine, cfg.data.kind_weights)
    # What the weights are trained from, so a rerun that does not reproduce them can be told
    # apart as data or code (provenance.py); each rank hashes its own captures.
    digest: Any = data_digest(reader, mine, paths)
    reader.close()
    cache_s = time.perf_counter() - t0
    if d.world > 1:
        gathered_digests: list[Any] = [None] * d.world
        torch.distributed.all_gather_object(gathered_digests, digest)
        digest = {"ranks": gathered_digests}
        torch.distributed.barrier()
    provenance = {"data": digest, "code": code_version()}

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = FusionUNet(cfg.unet).to(dev)
    if cfg.init and not resume:
        # Fine-tuning: the UNet the init checkpoint describes must be the one this config builds.
        from hzsr.baseline_model.checkpoint import load_model

        init = load_model(None if cfg.init == "shipped" else cfg.init)
        if to_plain(init.model.cfg) != to_plain(model.cfg):
            raise ModelError("the init checkpoint's UNet differs from unet in the config", file=init.path,
                             field="init")
        model.load_state_dict(init.model.state_dict())
    net: torch.nn.Module = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[d.local_rank] if dev.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    total = cfg.optim.steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, cfg.optim.lr_min_ratio))
    step = 0
    if raw is not None:
        model.load_state_dict(raw["state_dict"])
        opt.load_state_dict(raw["optimizer"])
        sched.load_state_dict(raw["scheduler"])
        step = int(raw["step"])
    rows = _read_log(out / "log.csv", step) if d.main else []

    bs = cfg.data.batch_size
    ds = PatchDataset(paths, cfg.data.patch, cfg.seed, d.rank, cfg.data.min_valid, cfg.data.patches_per_epoch,
                      weights=weights)
    loader = DataLoader(ds, batch_size=bs, sampler=IndexRangeSampler(step * bs, (total - step) * bs),
                        num_workers=cfg.data.workers, drop_last=True,
                        persistent_workers=False, pin_memory=dev.type == "cuda")
    k1 = gaussian_kernel(cfg.loss.lowpass_sigma).to(dev)
    bar = tqdm(total=total, initial=step, desc="train", disable=not (progress and d.main), unit="step")
    t_train = time.perf_counter()
    first_step = step
    model.train()

    def checkpoint(final: bool) -> None:
        if not d.main:
            return
        payload = {**unet_payload(model), "pipeline": pipeline_payload(to_plain(cfg.pipeline)),
                   "train": to_plain(cfg), "provenance": provenance}
        # Log first: a resume drops rows past the checkpoint's step, so a crash between the two is harmless.
        _write_log(out / "log.csv", rows)
        save_checkpoint(last, {**payload, "step": step, "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict()})
        if final:
            save_checkpoint(out / "model.pt", {**payload, "step": step})

    for x, y_tgt, mask in loader:
        x, y_tgt, mask = x.to(dev), y_tgt.to(dev), mask.to(dev)
        if cfg.distill.ratio_max > 0:
            x = rebuild_sources(x, y_tgt, mask, cfg.distill, cfg.seed, step, d.rank)
        y = net(x)
        loss, l1, lp = hzsr_loss(y, y_tgt, mask, x[:, :1], cfg.loss, k1)
        dist = y.new_zeros(())
        if teacher is not None:
            with torch.no_grad():
                y_teacher = teacher(x)
            dist = distill_term(y, y_teacher, cfg.loss.w_grad)
            loss = loss + cfg.distill.weight * dist
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        if d.main and (step % cfg.log_every == 0 or step == total):
            el = time.perf_counter() - t_train
            rows.append({"step": step, "samples": step * bs * d.world, "loss": f"{loss.item():.6f}",
                         "l1": f"{l1.item():.6f}", "lowpass": f"{lp.item():.6f}",
                         "lr": f"{sched.get_last_lr()[0]:.3e}",
                         "patches_per_s": f"{(step - first_step) * bs * d.world / max(el, 1e-9):.2f}",
                         "elapsed_s": f"{el:.2f}", "distill": f"{dist.item():.6f}"})
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.ckpt_every == 0 and step < total:
            checkpoint(False)
    bar.close()
    train_s = time.perf_counter() - t_train
    checkpoint(True)

    checks = [param_checksum(model)]
    rank_ids = [mine]
    if d.world > 1:
        gathered: list[Any] = [None] * d.world
        torch.distributed.all_gather_object(gathered, (param_checksum(model), mine))
        checks = [g[0] for g in gathered]
        rank_ids = [g[1] for g in gathered]
    done = step - first_step
    summary = {
        "run": str(out), "steps": step, "steps_this_call": done, "world_size": d.world,
        "patch": cfg.data.patch, "batch_size_per_rank": bs,
        "patches_per_s": done * bs * d.world / max(train_s, 1e-9),
        "train_s": train_s, "cache_s": cache_s, "target": target,
        "final_loss": float(rows[-1]["loss"]) if rows else None,
        "rank_param_checksums": checks, "rank_captures": rank_ids,
        "model": str(out / "model.pt"),
    }
    if d.main:
        atomic_write_json(out / "summary.json", summary)
    if d.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary
