"""``hzsr model eval``: PSNR and SSIM on Y inside T's field of view, by scene kind.

Four outputs per capture, all on I_src's grid (T's field of view at T's resolution):

- ``bicubic``: the coarse-aligned W crop, bicubic-upsampled (I_src);
- ``warped_ref``: the colour-matched reference warped onto I_src, pasted in wherever it has a pixel;
- ``blend``: the no-network baseline, ``Y = Y_bicubic + M_blend * (Y_warped_ref - Y_bicubic)`` with
  the pipeline's own blend map and the source's chroma: what the maps give without the UNet, so
  the network has to keep earning its place;
- ``fusion``: the UNet's output with the source's chroma, no blending (the paper's ablation);
- ``full``: the full pipeline (adaptive blending with M_occ, M_defocus, M_flow, M_reject).

The target is the main phone's T registered onto I_src and colour-matched to it
(``data.make_target``); figures are over its loss mask (where that registration can be trusted),
the same for every method. A capture "has defocus" when over 2% of its pixels have
``M_defocus > 0.5``, and "has occlusion" when over 2% have ``M_occ > 0.5`` (our own maps).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hzsr.baseline_model.color import luma
from hzsr.baseline_model.config import pipeline_config_of, pipeline_payload  # noqa: F401 (re-exported)
from hzsr.core.fileio import atomic_write_bytes, atomic_write_json

METHODS = ("bicubic", "warped_ref", "blend", "fusion", "full")
FLAG_FRAC = 0.02
#: The issue's acceptance figures.
GOAL_GAIN_DB = 2.0
GOAL_TOLERANCE_DB = 0.2
GOAL_OVER_BLEND_DB = 0.5  # the network must beat the no-network blend by this much (issue 20)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """``10 log10(1 / MSE)`` over ``mask``, for images in [0, 1]."""
    d = (a - b)[mask]
    return float(10 * np.log10(1.0 / max(float(np.mean(d * d)), 1e-12)))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    from hzsr.qa.register import ssim_map

    return float(ssim_map(a.astype(np.float32), b.astype(np.float32))[mask].mean())


def no_network_blend_y(al: Any, y_bicubic: np.ndarray, y_warped_ref: np.ndarray) -> np.ndarray:
    """The no-network baseline on Y: ``Y_bicubic + M_blend (Y_warped_ref - Y_bicubic)``.

    ``M_blend`` is the pipeline's own blend map (flow grid, sampled onto I_src's pixels); a capture
    whose reference the pipeline dropped (``al.use_reference`` false) is its bicubic crop.
    """
    if not al.use_reference:
        return y_bicubic
    from hzsr.baseline_model.pipeline import sample_grid

    h, w = y_bicubic.shape[:2]
    wb = sample_grid(al.maps["blend"], (h, w), 0, h, 0, w)
    return y_bicubic + wb * (y_warped_ref - y_bicubic)


def evaluate_capture(pipe: Any, sample: Any) -> dict[str, Any]:
    """Metrics of the four methods on one ``CaptureSample``."""
    from hzsr.baseline_model.data import make_target

    res = pipe.run(sample.main_W, sample.ref_T, sample.meta, extras=("bicubic", "warped_ref", "fusion"))
    al = res.alignment
    k = al.rect.scale
    tgt = make_target(al, sample.main_T, pipe.cfg, k)
    mask = tgt.mask
    maps = al.maps
    valid = maps["valid"] > 0.5
    row: dict[str, Any] = {
        "capture_id": sample.capture_id,
        "scene_kind": sample.meta.get("scene_kind") or "untagged",
        "scene_id": sample.meta.get("scene_id"),
        "mask_frac": float(mask.mean()),
        "defocus_frac": float((maps["defocus"] > 0.5).mean()),
        "occlusion_frac": float(((maps["occlusion"] > 0.5) & valid).mean()),
        "blend_mean": float(maps["blend"].mean()),
        "used_reference": bool(al.use_reference),
        "warnings": " | ".join(res.warnings),
    }
    row["has_defocus"] = row["defocus_frac"] > FLAG_FRAC
    row["has_occlusion"] = row["occlusion_frac"] > FLAG_FRAC
    outs = {"bicubic": res.extras["bicubic"], "warped_ref": res.extras["warped_ref"],
            "fusion": res.extras["fusion"], "full": res.final}
    ys = {m: luma(outs[m]) for m in outs}
    ys["blend"] = no_network_blend_y(al, ys["bicubic"], ys["warped_ref"])
    for m in METHODS:
        y = ys[m]
        row[f"psnr_{m}"] = psnr(y, tgt.y, mask) if mask.any() else float("nan")
        row[f"ssim_{m}"] = ssim(y, tgt.y, mask) if mask.any() else float("nan")
    return row


def summary_table(df: pd.DataFrame) -> str:
    """Markdown: mean PSNR (dB) / SSIM per scene kind and method, plus all and defocus-or-occlusion rows."""
    groups: list[tuple[str, pd.DataFrame]] = [(k, g) for k, g in df.groupby("scene_kind", sort=True)]
    groups.append(("**all**", df))
    hard = df[df["has_defocus"] | df["has_occlusion"]]
    if len(hard):
        groups.append(("defocus or occlusion", hard))
    head = "| scene kind | n | " + " | ".join(f"{m} PSNR / SSIM" for m in METHODS) + " | full - bicubic |"
    sep = "|" + "---|" * (len(METHODS) + 3)
    lines = [head, sep]
    for name, g in groups:
        cells = [f"{g[f'psnr_{m}'].mean():.2f} / {g[f'ssim_{m}'].mean():.3f}" for m in METHODS]
        gain = (g["psnr_full"] - g["psnr_bicubic"]).mean()
        lines.append(f"| {name} | {len(g)} | " + " | ".join(cells) + f" | {gain:+.2f} dB |")
    return "\n".join(lines) + "\n"


def quality_checks(df: pd.DataFrame) -> list[dict[str, str]]:
    """The acceptance checks, each pass/fail with its figures."""
    out = []
    gain = float((df["psnr_full"] - df["psnr_bicubic"]).mean())
    out.append({"name": f"full pipeline beats bicubic by >= {GOAL_GAIN_DB} dB (mean PSNR on Y)",
                "verdict": "pass" if gain >= GOAL_GAIN_DB else "fail",
                "detail": f"{gain:+.2f} dB over {len(df)} captures"})
    hard = df[df["has_defocus"] | df["has_occlusion"]]
    if len(hard):
        worst = float((hard["psnr_full"] - hard["psnr_bicubic"]).min())
        out.append({"name": f"with defocus or occlusion, never worse than bicubic by > {GOAL_TOLERANCE_DB} dB",
                    "verdict": "pass" if worst >= -GOAL_TOLERANCE_DB else "fail",
                    "detail": f"worst capture {worst:+.2f} dB over {len(hard)} captures"})
    else:
        out.append({"name": "with defocus or occlusion, never worse than bicubic", "verdict": "warn",
                    "detail": "no capture in the split has defocus or occlusion"})
    over_blend = float((df["psnr_full"] - df["psnr_blend"]).mean())
    wins = int((df["psnr_full"] > df["psnr_blend"]).sum())
    out.append({"name": f"full pipeline beats the no-network blend by >= {GOAL_OVER_BLEND_DB} dB (mean PSNR on Y)",
                "verdict": "pass" if over_blend >= GOAL_OVER_BLEND_DB else "fail",
                "detail": f"{over_blend:+.2f} dB; the network wins on {wins} of {len(df)} captures"})
    worst = float((df["psnr_full"] - df["psnr_fusion"]).min())
    out.append({"name": f"never worse than fusion without blending by > {GOAL_TOLERANCE_DB} dB",
                "verdict": "pass" if worst >= -GOAL_TOLERANCE_DB else "fail",
                "detail": f"worst capture {worst:+.2f} dB; "
                          f"mean {(df['psnr_full'] - df['psnr_fusion']).mean():+.2f} dB"})
    return out


def evaluate(ckpt: str | Path | None, data: str | Path, split: str = "test", out: str | Path | None = None, *,
             progress: bool = True, limit: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Evaluate a checkpoint on a split; writes metrics.csv, metrics.md and summary.json."""
    from tqdm import tqdm

    from hzsr.baseline_model.checkpoint import load_model
    from hzsr.baseline_model.pipeline import HZSRPipeline
    from hzsr.core.errors import ConfigError
    from hzsr.dataset.reader import ShardReader

    lc = load_model(ckpt)
    cfg = pipeline_config_of(lc.pipeline, str(lc.path))
    pipe = HZSRPipeline(lc.model, cfg, device)
    reader = ShardReader(data)
    ids = reader.ids(split)
    if limit is not None:
        ids = ids[:limit]
    if not ids:
        raise ConfigError(f"split {split!r} has no captures", file=data, field="--split")
    rows = []
    for cid in tqdm(ids, desc=f"eval {split}", disable=not progress, leave=False):
        sample = reader.read(cid)
        if sample.ref_T is None:
            continue
        rows.append(evaluate_capture(pipe, sample))
    reader.close()
    df = pd.DataFrame(rows)
    out_dir = Path(out) if out else lc.path.parent / f"eval-{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    table = summary_table(df)
    checks = quality_checks(df)
    atomic_write_bytes(out_dir / "metrics.csv", df.to_csv(index=False).encode())
    md = (f"# Evaluation of `{lc.path}` on split `{split}` of `{data}`\n\n"
          "PSNR (dB) and SSIM on Y inside T's field of view, over the target's trusted-registration mask.\n\n"
          + table + "\n" + "\n".join(f"- **{c['verdict']}**: {c['name']}: {c['detail']}" for c in checks) + "\n")
    atomic_write_bytes(out_dir / "metrics.md", md.encode())
    summary = {"checkpoint": str(lc.path), "data": str(data), "split": split, "captures": len(df),
               "mean_psnr": {m: float(df[f"psnr_{m}"].mean()) for m in METHODS},
               "mean_ssim": {m: float(df[f"ssim_{m}"].mean()) for m in METHODS},
               "checks": checks}
    atomic_write_json(out_dir / "summary.json", summary)
    files = [str(out_dir / n) for n in ("metrics.csv", "metrics.md", "summary.json")]
    return {**summary, "table_md": table, "files": files}
