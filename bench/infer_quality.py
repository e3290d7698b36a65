"""What each UNet runtime does to the output: Y PSNR against the ideal target, per scene kind.

A runtime that computes in less than float32 (``openvino-bf16``, ``openvino-int8``) changes the output; it may be the
default only if it loses at most ``--max-loss`` dB (0.05) on every scene kind against the float32
reference runtime (``--reference``, ``onnxruntime``). The float32 runtimes should agree to float
rounding (losses of 0.00 dB).

For each capture of the held-out simulated sessions (``bench/_data.py``: seeds 21-23, 24
captures each, 640x480, ``--truth --textures eval``; rendered on first use into
``HZSR_BENCH_DATA``), the capture is aligned ONCE and the same alignment is fused by every
runtime, so only the network's arithmetic differs. Scores are ``bench/eval_truth.py``'s: Y PSNR
inside T's field of view against the ideal target resampled onto I_src and colour-matched to it
(``hzsr.baseline_model.ideal_target.ideal_on_source``), for the full pipeline (``full``) and the
UNet's output before blending (``fusion``).

Usage: ``python bench/infer_quality.py [SESSION ...] [--runtimes openvino,openvino-bf16,openvino-int8]
[--reference onnxruntime] [--ckpt CKPT] [--int8-ckpt LABEL=CKPT ...] [--max-loss 0.05] [--json OUT]``.
Prints one JSON object; exit 1 when a non-reference runtime loses more than ``--max-loss`` dB on some kind.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hzsr.baseline_model.threads import apply

apply()  # before torch loads (the thread policy of every torch entry point)

from hzsr.baseline_model.checkpoint import load_model  # noqa: E402
from hzsr.baseline_model.color import luma  # noqa: E402
from hzsr.baseline_model.evaluate import pipeline_config_of, psnr  # noqa: E402
from hzsr.baseline_model.ideal_target import ideal_on_source  # noqa: E402
from hzsr.baseline_model.pipeline import HZSRPipeline  # noqa: E402
from hzsr.dataset.schema import scene_kind  # noqa: E402
from hzsr.sim.truth import captures_with_truth, load_capture_truth  # noqa: E402


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def score(sessions: list[Path], runtimes: list[str], reference: str, ckpt: str | None,
          int8_ckpts: dict[str, Path] | None = None) -> pd.DataFrame:
    """One row per capture: ``psnr_{full,fusion}_{runtime}`` and ``maxdiff_{runtime}`` (|Y - Y_ref| max).

    ``int8_ckpts``: label -> a copy of the checkpoint with another int8 graph beside it (a candidate
    recipe, ``hzsr model quantize --ckpt COPY``), scored as runtime ``openvino-int8@label`` on the same
    alignment, so candidates are compared capture by capture.
    """
    lc = load_model(ckpt)
    cfg = pipeline_config_of(lc.pipeline, str(lc.path))
    pipes = {rt: HZSRPipeline(lc.model, cfg, runtime=rt, ckpt=lc.path) for rt in [reference, *runtimes] if rt}
    for label, path in (int8_ckpts or {}).items():
        if Path(path).read_bytes() != Path(lc.path).read_bytes():
            raise SystemExit(f"--int8-ckpt {label}={path}: not a copy of {lc.path} (other weights)")
        pipes[f"openvino-int8@{label}"] = HZSRPipeline(lc.model, cfg, runtime="openvino-int8", ckpt=path)
    rows = []
    for sess in sessions:
        for cap in captures_with_truth(sess):
            tmeta, t = load_capture_truth(sess, cap.name)
            crop_rect = tmeta["crop_rect"]
            meta = json.loads((cap / "capture.json").read_text())
            al = pipes[reference].align(_rgb(cap / "main_W.jpg"), _rgb(cap / "ref_T.jpg"), meta)
            ideal = ideal_on_source(al, t["ideal_T"], t["valid_ref_T"], t["defocus_sigma_ref_T"], crop_rect)
            row = {"capture": f"{sess.name}/{cap.name}", "used_reference": bool(al.use_reference),
                   "scene_kind": scene_kind(str(meta.get("scene_id", "")), list(meta.get("scene_tags", [])))}
            y_ref = None
            for rt, pipe in pipes.items():
                res = pipe.fuse(al, extras=("fusion",))
                y_full = luma(res.final)
                row[f"psnr_full_{rt}"] = psnr(y_full, ideal.y, ideal.inside)
                row[f"psnr_fusion_{rt}"] = psnr(luma(res.extras["fusion"]), ideal.y, ideal.inside)
                if y_ref is None:
                    y_ref = y_full
                row[f"maxdiff_{rt}"] = float(np.abs(y_full - y_ref).max())
            rows.append(row)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, runtimes: list[str], reference: str, max_loss: float) -> dict:
    """Mean PSNR per kind and runtime, and each runtime's loss against ``reference`` (dB, > 0 = worse)."""
    kinds = {k: g for k, g in df.groupby("scene_kind")} | {"all": df}
    psnrs = {k: {rt: {o: round(float(g[f"psnr_{o}_{rt}"].mean()), 3) for o in ("full", "fusion")}
                 for rt in [reference, *runtimes]} for k, g in kinds.items()}
    losses = {rt: {k: {o: round(float((g[f"psnr_{o}_{reference}"] - g[f"psnr_{o}_{rt}"]).mean()), 4)
                       for o in ("full", "fusion")} for k, g in kinds.items()} for rt in runtimes}
    worst = {rt: max(v["full"] for v in losses[rt].values()) for rt in runtimes}
    return {"captures": len(df), "reference": reference, "mean_psnr_y_db": psnrs, "loss_db_vs_reference": losses,
            "worst_kind_loss_full_db": worst,
            "max_abs_y_diff_vs_reference": {rt: round(float(df[f"maxdiff_{rt}"].max()), 5) for rt in runtimes},
            "max_loss_db": max_loss, "within_max_loss": {rt: worst[rt] <= max_loss for rt in runtimes}}


def intervals(df: pd.DataFrame, runtimes: list[str], reference: str, draws: int, seed: int = 0) -> dict:
    """95 % bootstrap intervals of each runtime's full-pipeline loss per kind: ``draws`` resamples of
    the kind's captures with replacement (numpy ``default_rng(seed)``), the 2.5th and 97.5th
    percentiles of the resampled mean loss (dB). A pool of 24 captures of a kind gives a loss with
    a few hundredths of a dB of sampling noise; the interval says how much."""
    out: dict = {}
    for rt in runtimes:
        out[rt] = {}
        for k, g in ({k: g for k, g in df.groupby("scene_kind")} | {"all": df}).items():
            loss = (g[f"psnr_full_{reference}"] - g[f"psnr_full_{rt}"]).to_numpy()
            rng = np.random.default_rng(seed)
            means = loss[rng.integers(0, len(loss), size=(draws, len(loss)))].mean(axis=1)
            out[rt][k] = [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="*", type=Path, help="simulated sessions with truth (default: the pinned ones)")
    ap.add_argument("--runtimes", default="openvino,openvino-bf16,openvino-int8",
                    help="runtimes compared with --reference")
    ap.add_argument("--reference", default="onnxruntime", help="the float32 runtime the others are scored against")
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    ap.add_argument("--max-loss", type=float, default=0.05, help="dB a runtime may lose on any scene kind")
    ap.add_argument("--json", type=Path, help="write the summary and per-capture rows here")
    ap.add_argument("--bootstrap", type=int, default=0, metavar="N",
                    help="also give 95 %% bootstrap intervals of the per-kind losses (N resamples, seed 0)")
    ap.add_argument("--int8-ckpt", action="append", default=[], metavar="LABEL=CKPT",
                    help="also score the int8 graph beside CKPT (a copy of --ckpt's bytes) as openvino-int8@LABEL")
    a = ap.parse_args(argv)
    if not a.sessions:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import _data

        a.sessions = _data.sessions(_data.EVAL_SEEDS)
    runtimes = [r.strip() for r in a.runtimes.split(",") if r.strip() and r.strip() != a.reference]
    int8_ckpts = {}
    for spec in a.int8_ckpt:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            ap.error(f"--int8-ckpt {spec}: expected LABEL=CKPT")
        int8_ckpts[label] = Path(path)
    df = score(a.sessions, runtimes, a.reference, a.ckpt, int8_ckpts)
    runtimes += [f"openvino-int8@{label}" for label in int8_ckpts]
    out = summarise(df, runtimes, a.reference, a.max_loss)
    if a.bootstrap:
        out["loss_db_interval_95"] = intervals(df, runtimes, a.reference, a.bootstrap)
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps({**out, "rows": df.to_dict(orient="records")}, indent=1, default=float))
    return 0 if all(out["within_max_loss"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
