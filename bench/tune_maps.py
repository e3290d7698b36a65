"""Blending-map constants against the ideal target, on training and validation captures only.

The maps decide where the pipeline falls back to W (``blend.blend_weight``); their constants are
not published (docs/model.md, "Choices for what the paper does not publish"). This scores a few
settings of them with one checkpoint against the simulator's ideal target, on the captures of the
pinned data set's ``train`` and ``val`` splits (never its test split, never the held-out eval
sessions), and reports per setting: mean Y PSNR of the full pipeline, its worst and mean gap to
fusion without blending on the pixels the truth marks occluded or defocused, and the gain of
each map there. ``occlusion_scale`` is left alone: ``M_occ`` is also the UNet's input, so it is
fixed by training.

Usage::

    python bench/tune_maps.py [--ckpt CKPT] [--ablation] [--only NAME ...] [--json OUT]

Settings (``SETTINGS`` below) are grid points around the shipped constants; the chosen one goes
into ``hzsr/baseline_model/configs/shipped.yaml`` (``pipeline.qa.maps``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path

import _data
import eval as ev
import numpy as np
import pandas as pd
from eval_truth import ABLATIONS, score_capture

from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.evaluate import pipeline_config_of
from hzsr.baseline_model.pipeline import HZSRPipeline
from hzsr.sim.truth import truth_dir

#: name -> overrides of ``QAConfig.maps`` (T px^2 for the defocus constants, see config.py).
SETTINGS: dict[str, dict[str, float]] = {
    "shipped": {},
    "reject_loose": {"reject_eps0": 0.6},
    "flow_loose": {"uncertainty_s_max": 80.0},
    "defocus_late": {"defocus_gamma": 48000.0, "defocus_sigma_f": 12000.0},
    "all_loose": {"reject_eps0": 0.6, "uncertainty_s_max": 80.0, "defocus_gamma": 48000.0,
                  "defocus_sigma_f": 12000.0},
    "all_looser": {"reject_eps0": 2.0, "uncertainty_s_max": 160.0, "defocus_gamma": 96000.0,
                   "defocus_sigma_f": 24000.0},
}


def _pipe(model, base, overrides: dict[str, float], **flags: bool) -> HZSRPipeline:
    qa = copy.deepcopy(base.qa)
    for k, v in overrides.items():
        setattr(qa.maps, k, v)
    return HZSRPipeline(model, dataclasses.replace(base, qa=qa, **flags))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--ablation", action="store_true", help="also score each map switched off (5x the time)")
    ap.add_argument("--only", nargs="*", default=None, help="settings to run (default: all)")
    a = ap.parse_args(argv)
    lc = load_model(a.ckpt)
    base = pipeline_config_of(lc.pipeline, str(lc.path))
    splits = pd.read_csv(ev.dataset() / "splits.csv")
    keep = set(splits.loc[splits["split"].isin(["train", "val"]), "capture_id"])
    sessions = {p.name: p for p in _data.sessions(_data.TRAIN_SEEDS)}
    out: dict[str, dict] = {}
    for name, over in SETTINGS.items():
        if a.only and name not in a.only:
            continue
        pipes = {"full": _pipe(lc.model, base, over)}
        if a.ablation:
            pipes.update({m: _pipe(lc.model, base, over, **{flag: False}) for m, flag in ABLATIONS.items()})
        rows = []
        for cid in sorted(keep):
            sess_name, cap_id = cid.split("/")
            sess = sessions[sess_name]
            t = dict(np.load(truth_dir(sess) / f"{cap_id}.npz"))
            t["crop_rect"] = json.loads((truth_dir(sess) / f"{cap_id}.json").read_text())["crop_rect"]
            meta = json.loads((sess / "captures" / cap_id / "capture.json").read_text())
            rows.append(score_capture(pipes, sess / "captures" / cap_id, t, meta))
        df = pd.DataFrame(rows)
        res = {"captures": len(df), "full": round(float(df["psnr_full"].mean()), 3),
               "fusion": round(float(df["psnr_fusion"].mean()), 3)}
        for m in pipes.keys() - {"full"}:
            res[f"gain_{m[3:]}"] = round(float((df["psnr_full"] - df[f"psnr_{m}"]).mean()), 3)
        for region in ("occluded", "defocused"):
            sub = df[df[f"psnr_full_{region}"].notna()]
            gap = sub[f"psnr_full_{region}"] - sub[f"psnr_fusion_{region}"]
            res[region] = {"captures": len(sub), "mean_full_minus_fusion": round(float(gap.mean()), 3),
                           "worst_full_minus_fusion": round(float(gap.min()), 3),
                           **{f"gain_{m[3:]}": round(float((sub[f"psnr_full_{region}"]
                                                            - sub[f"psnr_{m}_{region}"]).mean()), 3)
                              for m in pipes.keys() - {"full"}}}
        out[name] = res
        print(name, json.dumps(res), flush=True)
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
