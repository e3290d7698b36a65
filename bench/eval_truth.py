"""The pipeline against the simulator's ideal target, beside the simple alternatives.

For each capture of simulated sessions rendered with ``--truth`` (``hzsr.sim.ideal``: main W's
viewpoint at T's resolution, all in focus, noise-free), runs the pipeline with a checkpoint and
scores, on Y inside T's field of view:

- ``bicubic``: the coarse-aligned W crop (I_src);
- ``warped_ref``: the colour-matched reference warped onto I_src;
- ``blend``: the no-network blend, ``Y_bicubic + M_blend (Y_warped_ref - Y_bicubic)``;
- ``fusion``: the UNet without blending;
- ``full``: the full pipeline;
- with ``--ablation``: the full pipeline with each map switched off (``no_occ``, ``no_defocus``,
  ``no_flow``, ``no_reject``).

The ideal is resampled onto the pipeline's I_src grid (its crop rectangle moved by the coarse
shift) and colour-matched to I_src (per-channel mean and deviation, ``color.match_colour``), so
every method is scored in the source's photometry (``hzsr.baseline_model.ideal_target``, the
same function that builds the training target of ``data.target: ideal``). Regions come from the truth, not our maps:
``occluded`` where the reference does not see the crop's surface (``valid_ref_T`` false),
``defocused`` where the reference's blur sigma exceeds 1 T px (``defocus_sigma_ref_T``).

Usage::

    python bench/eval_truth.py [SESSION ...] [--ckpt CKPT] [--ablation] [--set KEY=VALUE ...] [--json OUT]

``--set`` changes one field of the checkpoint's pipeline config (``PipelineConfig``; dotted for qa's,
values as YAML), as the variants of docs/model.md ("Where the dB are lost") were run:
``--set flow_level_max=2``, ``--set qa.maps.occlusion_scale=0.1``, ``--set use_occ=false``.

Without sessions it uses the pinned held-out ones (``bench/_data.py``: seeds 21-23, 24 captures,
640x480, rendered with ``--truth --textures eval`` on first use; no training scene comes from them,
and no training texture: ``hzsr.sim.textures``).

Prints per-scene-kind mean PSNR (dB) and the checks of issue 20 as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.color import luma
from hzsr.baseline_model.evaluate import no_network_blend_y, pipeline_config_of, psnr
from hzsr.baseline_model.ideal_target import ideal_on_source
from hzsr.baseline_model.pipeline import HZSRPipeline
from hzsr.dataset.schema import scene_kind
from hzsr.sim.truth import captures_with_truth, load_capture_truth, truth_dir

ABLATIONS = {"no_occ": "use_occ", "no_defocus": "use_defocus", "no_flow": "use_flow", "no_reject": "use_reject"}


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def score_capture(pipes: dict[str, HZSRPipeline], cap: Path, truth: dict, meta: dict) -> dict:
    w, ref = _rgb(cap / "main_W.jpg"), _rgb(cap / "ref_T.jpg")
    res = pipes["full"].run(w, ref, meta, extras=("bicubic", "warped_ref", "fusion"))
    al = res.alignment
    truth_on_src = ideal_on_source(al, truth["ideal_T"], truth["valid_ref_T"], truth["defocus_sigma_ref_T"],
                                   truth["crop_rect"])
    inside, y_ideal = truth_on_src.inside, truth_on_src.y
    occluded, defocused = truth_on_src.occluded, truth_on_src.defocused
    ys = {m: luma(img) for m, img in (("bicubic", res.extras["bicubic"]), ("warped_ref", res.extras["warped_ref"]),
                                      ("fusion", res.extras["fusion"]), ("full", res.final))}
    ys["blend"] = no_network_blend_y(al, ys["bicubic"], ys["warped_ref"])
    for name, pipe in pipes.items():
        if name != "full":
            ys[name] = luma(pipe.run(w, ref, meta).final)
    row = {"capture": f"{cap.parent.parent.name}/{cap.name}", "used_reference": bool(al.use_reference),
           "occluded_frac": float((occluded & inside).mean()), "defocused_frac": float((defocused & inside).mean())}
    for m, y in ys.items():
        row[f"psnr_{m}"] = psnr(y, y_ideal, inside)
        for region, mask in (("occluded", occluded & inside), ("defocused", defocused & inside)):
            row[f"psnr_{m}_{region}"] = psnr(y, y_ideal, mask) if mask.sum() >= 500 else float("nan")
    return row


def pipeline_config_with(lc, overrides: list[str] | None):
    """The checkpoint's ``PipelineConfig`` with ``key.sub=value`` overrides (``--set``)."""
    import copy

    from hzsr.baseline_model.config import apply_overrides

    raw = apply_overrides(copy.deepcopy(lc.pipeline or {}), overrides)
    return pipeline_config_of(raw, f"{lc.path} (--set)" if overrides else str(lc.path))


def run(sessions: list[Path], ckpt: str | None, ablation: bool, overrides: list[str] | None = None) -> pd.DataFrame:
    lc = load_model(ckpt)
    cfg = pipeline_config_with(lc, overrides)
    pipes = {"full": HZSRPipeline(lc.model, cfg)}
    if ablation:
        for name, flag in ABLATIONS.items():
            pipes[name] = HZSRPipeline(lc.model, dataclasses.replace(cfg, **{flag: False}))
    rows = []
    for sess in sessions:
        for cap in captures_with_truth(sess):
            tmeta, t = load_capture_truth(sess, cap.name)
            if "ideal_T" not in t:
                raise SystemExit(f"{truth_dir(sess) / cap.name}.npz: no ideal_T; re-render the session with this hzsr "
                                 "(--truth)")
            t["crop_rect"] = tmeta["crop_rect"]
            meta = json.loads((cap / "capture.json").read_text())
            row = score_capture(pipes, cap, t, meta)
            row["scene_kind"] = scene_kind(str(meta.get("scene_id", "")), list(meta.get("scene_tags", [])))
            rows.append(row)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> dict:
    methods = [m for m in ("bicubic", "warped_ref", "blend", "fusion", "full", *ABLATIONS) if f"psnr_{m}" in df]
    by_kind = {k: {m: round(float(g[f"psnr_{m}"].mean()), 2) for m in methods} for k, g in df.groupby("scene_kind")}
    by_kind["all"] = {m: round(float(df[f"psnr_{m}"].mean()), 2) for m in methods}
    gains = {
        "full_minus_bicubic_db": round(float((df["psnr_full"] - df["psnr_bicubic"]).mean()), 2),
        "full_minus_blend_db": round(float((df["psnr_full"] - df["psnr_blend"]).mean()), 2),
        "worst_kind_full_minus_bicubic_db": round(min(v["full"] - v["bicubic"] for k, v in by_kind.items()), 2),
        "worst_kind_full_minus_blend_db": round(min(v["full"] - v["blend"] for k, v in by_kind.items()), 2),
    }
    regions = {}
    for region in ("occluded", "defocused"):
        cols = {m: f"psnr_{m}_{region}" for m in methods}
        sub = df[df[cols["full"]].notna()]
        if len(sub):
            worst = float((sub[cols["full"]] - sub[cols["fusion"]]).min())
            regions[region] = {"captures": len(sub), **{m: round(float(sub[c].mean()), 2) for m, c in cols.items()},
                               "worst_full_minus_fusion_db": round(worst, 2)}
    return {"captures": len(df), "mean_psnr_y_db": by_kind, "gains": gains, "truth_regions": regions}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="*", type=Path, help="simulated sessions with truth (default: the pinned ones)")
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    ap.add_argument("--ablation", action="store_true", help="also run with each map switched off")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a pipeline config field")
    ap.add_argument("--json", type=Path, help="write the summary and per-capture rows here")
    a = ap.parse_args(argv)
    if not a.sessions:
        import _data

        a.sessions = _data.sessions(_data.EVAL_SEEDS)
    df = run(a.sessions, a.ckpt, a.ablation, a.set)
    out = summarise(df)
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps({**out, "rows": df.to_dict(orient="records")}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
