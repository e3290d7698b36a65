"""The output denoiser's settings, re-applied to one fused output per capture, against the ideal target.

For each capture of simulated sessions rendered with ``--truth``, the pipeline runs ONCE with the
output denoiser off (``denoise_strength`` 0: the blended output, ``PipelineResult.final`` before
``denoise.denoise_output``); then every setting of the grid below is applied to that same output
and scored as ``bench/eval_truth.py`` scores ``full`` (Y PSNR inside T's field of view against the
ideal target on I_src's grid, ``ideal_target.ideal_on_source``). So only the denoiser differs
between the columns, and a setting costs a bilateral filter per capture, not a pipeline run.

The grid: the bilateral's range sigma as a multiple of the reference's measured noise sigma
(``--strengths``, the pipeline's ``denoise_strength``) by its spatial sigma (``--space``, pixels;
the neighbourhood is ``2 ceil(2 sigma) + 1`` pixels, 7 at the shipped 1.5), every one on above
``denoise_min_sigma`` (2.0) as the pipeline does. The row ``off`` is the output without the
denoiser. Per capture it also records the reference's measured noise (``sigma``), so a setting
that depends on it can be read off the rows.

Usage::

    python bench/tune_denoise.py SESSION ... [--kinds night ...] [--strengths 1,1.5,2] [--space 1.5,2]
        [--ckpt CKPT] [--json OUT]

Choose on the calibration sessions (``hzsr sim session --seed 31..36 --textures eval --truth``,
never trained on, not held-out); the held-out sessions 21-23 (``bench/_data.py``) only judge.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.color import luma
from hzsr.baseline_model.denoise import DenoiseSettings, denoise_output, noise_sigma
from hzsr.baseline_model.evaluate import pipeline_config_of, psnr
from hzsr.baseline_model.ideal_target import ideal_on_source
from hzsr.baseline_model.pipeline import HZSRPipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import truth_captures  # noqa: E402


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def diameter_of(space_sigma: float) -> int:
    """The bilateral neighbourhood for a spatial sigma: ``2 ceil(2 sigma) + 1`` (7 px at 1.5)."""
    return 2 * math.ceil(2 * space_sigma) + 1


def settings_grid(strengths: list[float], spaces: list[float], base: DenoiseSettings) -> dict[str, DenoiseSettings]:
    """Named settings ``s{strength}_x{space}``; the rest of ``base`` (``min_sigma``, the noise estimate) kept."""
    return {f"s{s:g}_x{x:g}": dataclasses.replace(base, strength=s, space_sigma=x, diameter=diameter_of(x))
            for s in strengths for x in spaces}


def run(sessions: list[Path], ckpt: str | None, kinds: list[str] | None,
        grid: dict[str, DenoiseSettings]) -> pd.DataFrame:
    lc = load_model(ckpt)
    cfg = pipeline_config_of(lc.pipeline, str(lc.path))
    pipe = HZSRPipeline(lc.model, dataclasses.replace(cfg, denoise_strength=0.0))
    rows = []
    for sess, cap, meta, kind, tmeta, t in truth_captures(sessions, kinds):
        res = pipe.run(_rgb(cap / "main_W.jpg"), _rgb(cap / "ref_T.jpg"), meta)
        al = res.alignment
        tr = ideal_on_source(al, t["ideal_T"], t["valid_ref_T"], t["defocus_sigma_ref_T"], tmeta["crop_rect"])
        ref_y = cv2.cvtColor(al.ref, cv2.COLOR_RGB2GRAY)
        row = {"capture": f"{sess.name}/{cap.name}", "scene_kind": kind, "used_reference": bool(al.use_reference),
               "sigma": noise_sigma(ref_y), "psnr_off": psnr(luma(res.final), tr.y, tr.inside)}
        for name, s in grid.items():
            out, _ = denoise_output(res.final, al.ref, s)
            row[f"psnr_{name}"] = psnr(luma(out), tr.y, tr.inside)
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, grid: dict[str, DenoiseSettings], base: str) -> dict:
    """Mean PSNR per kind and setting, and each setting's gain over ``base`` per kind (paired, with SE)."""
    names = ["off", *grid]
    kinds = {k: g for k, g in df.groupby("scene_kind")} | {"all": df}
    mean = {k: {n: round(float(g[f"psnr_{n}"].mean()), 3) for n in names} for k, g in kinds.items()}
    gain = {}
    for k, g in kinds.items():
        gain[k] = {}
        for n in names:
            d = g[f"psnr_{n}"] - g[f"psnr_{base}"]
            se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
            gain[k][n] = {"mean": round(float(d.mean()), 3), "se": round(se, 3), "worst": round(float(d.min()), 3)}
    best = {k: max(grid, key=lambda n, m=mean[k]: m[n]) for k in kinds}
    sig = df["sigma"]
    return {"captures": len(df), "base": base, "mean_psnr_y_db": mean, "gain_vs_base_db": gain, "best": best,
            "sigma_range_by_kind": {k: [round(float(g["sigma"].min()), 2), round(float(g["sigma"].max()), 2)]
                                    for k, g in kinds.items()},
            "denoised_captures": int((sig >= next(iter(grid.values())).min_sigma).sum()) if grid else 0}


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="+", type=Path, help="simulated sessions with truth")
    ap.add_argument("--kinds", nargs="+", help="only captures of these scene kinds")
    ap.add_argument("--strengths", default="0.5,1,1.5,2,3", help="range sigma / measured noise sigma")
    ap.add_argument("--space", default="1.5,2,2.5", help="spatial sigmas, pixels")
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    ap.add_argument("--json", type=Path, help="write the summary and per-capture rows here")
    a = ap.parse_args(argv)
    lc_cfg = pipeline_config_of(load_model(a.ckpt).pipeline, "checkpoint")
    base = DenoiseSettings(min_sigma=lc_cfg.denoise_min_sigma, strength=lc_cfg.denoise_strength)
    grid = settings_grid(_floats(a.strengths), _floats(a.space), base)
    shipped = f"s{base.strength:g}_x{base.space_sigma:g}"
    if shipped not in grid:
        grid[shipped] = base
    df = run(a.sessions, a.ckpt, a.kinds, grid)
    out = summarise(df, grid, shipped)
    print(json.dumps({k: out[k] for k in ("captures", "base", "mean_psnr_y_db", "best", "sigma_range_by_kind")},
                     indent=1))
    if a.json:
        a.json.write_text(json.dumps({**out, "rows": df.to_dict(orient="records")}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
