"""Blend-map settings against the ideal target, on training and validation captures only.

The maps decide where the pipeline falls back to W (``blend.blend_weight``); their constants are
not published (docs/model.md, "Choices for what the paper does not publish"). This scores
settings of the blend with one checkpoint against the simulator's ideal target, on the captures of
the pinned data set's ``train`` and ``val`` splits (never its test split, never the held-out eval
sessions). Each capture is aligned and fused once with the checkpoint's own pipeline config; each
setting then rebuilds ``M_blend`` from the same flows (``SETTINGS``: the blend's ``M_occ`` scale,
``M_flow``'s ``s_max`` and ``M_defocus``'s weight, which change neither the flow nor the network's
input, and two alternatives to ``M_occ``: the reference's coverage, qa's range-map test) and is
fused again, so settings differ only by their blend. Reported per setting: mean Y PSNR of the full
pipeline over T's field of view, and over the pixels the truth marks occluded / defocused, the
worst and mean gap to fusion without blending there (and how many captures fall below -0.2 dB),
and the mean ``M_blend`` on the truly occluded pixels and on the rest.

Usage::

    python bench/tune_maps.py [SESSION ...] [--ckpt CKPT] [--only NAME ...] [--every N] [--json OUT]

``--every N`` takes every N-th capture (a quick look). ``SESSION``s (rendered with ``--truth``):
score every capture of those instead, e.g. the calibration sessions 31-36 of docs/model.md. The chosen setting goes into
``PipelineConfig`` (``hzsr/baseline_model/config.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import _data
import cv2
import eval as ev
import numpy as np
import pandas as pd
from eval_truth import _defocus_weight, _rgb

from hzsr.baseline_model.align import MAP_NAMES, Alignment, blend_of_maps, reference_dropped, with_maps
from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.color import luma
from hzsr.baseline_model.config import PipelineConfig
from hzsr.baseline_model.evaluate import pipeline_config_of, psnr
from hzsr.baseline_model.ideal_target import ideal_on_source
from hzsr.baseline_model.pipeline import HZSRPipeline, sample_grid
from hzsr.dataset.schema import scene_kind
from hzsr.qa.maps import flow_uncertainty_map, occlusion_map, reference_coverage
from hzsr.sim.truth import truth_dir

Blend = Callable[[Alignment, PipelineConfig], np.ndarray]


def _maps_with(al: Alignment, cfg: PipelineConfig, occ_scale: float | None = None, s_max: float | None = None,
               occ: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``al.maps`` with the blend's ``M_occ`` and ``M_flow`` rebuilt from the same flows."""
    m = dict(al.maps)
    if occ is not None:
        m["occlusion_blend"] = occ
    elif occ_scale is not None:
        m["occlusion_blend"] = occlusion_map(al.flow_fwd, al.flow_bwd, occ_scale)
    if s_max is not None:
        m["uncertainty"] = flow_uncertainty_map(al.flow_fwd, al.flow_bwd,
                                                dataclasses.replace(cfg.qa.maps, uncertainty_s_max=s_max), 1.0)
    return m


def coverage_occlusion(al: Alignment, c0: float, blur_px: float) -> np.ndarray:
    """``clip(1 - cov / c0, 0, 1)``: ``cov`` the reference's pixels landing on each grid pixel
    (``qa.maps.reference_coverage``, smoothed by a Gaussian of ``blur_px`` grid px); a surface the
    reference does not see receives none."""
    cov = reference_coverage(al.flow_bwd)
    if blur_px > 0:
        cov = cv2.GaussianBlur(cov, (0, 0), blur_px)
    return np.clip(1.0 - cov / c0, 0.0, 1.0).astype(np.float32)


def _setting(occ_scale: float | None = None, s_max: float | None = None, defocus_weight: float | None = None,
             use: dict[str, bool] | None = None, coverage: tuple[float, float] | None = None) -> Blend:
    def make(al: Alignment, cfg: PipelineConfig) -> np.ndarray:
        occ = coverage_occlusion(al, *coverage) if coverage else None
        dw = _defocus_weight(al, cfg) if defocus_weight is None else defocus_weight
        return blend_of_maps(_maps_with(al, cfg, occ_scale, s_max, occ), use, dw)
    return make


#: name -> the blend it builds. ``shipped`` is the checkpoint's own (the first, so the others
#: compare with it); the rest change one thing at a time.
SETTINGS: dict[str, Blend] = {
    "shipped": _setting(),
    "frame_only": _setting(use={m: False for m in MAP_NAMES}),
    "occ_0.005": _setting(occ_scale=0.005),
    "occ_0.0125": _setting(occ_scale=0.0125),
    "occ_0.05": _setting(occ_scale=0.05),
    "flow_smax_400": _setting(s_max=400.0),
    "defocus_0.25": _setting(defocus_weight=0.25),
    "defocus_1": _setting(defocus_weight=1.0),
    "coverage_0.3": _setting(coverage=(0.3, 1.0)),
    "coverage_0.5": _setting(coverage=(0.5, 1.0)),
}


def _scores(y: np.ndarray, y_ideal: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, float]:
    return {r: (psnr(y, y_ideal, m) if m.sum() >= 500 else float("nan")) for r, m in regions.items()}


def score(pipe: HZSRPipeline, cap: Path, truth: dict, crop_rect: dict, meta: dict,
          names: list[str]) -> dict:
    w, ref = _rgb(cap / "main_W.jpg"), _rgb(cap / "ref_T.jpg")
    al = pipe.align(w, ref, meta)
    tos = ideal_on_source(al, truth["ideal_T"], truth["valid_ref_T"], truth["defocus_sigma_ref_T"], crop_rect)
    inside = tos.inside
    regions = {"all": inside, "occluded": tos.occluded & inside, "defocused": tos.defocused & inside}
    rest = inside & ~tos.occluded & ~tos.defocused
    res = pipe.fuse(al, extras=("bicubic", "fusion"))
    row: dict = {}
    for m in ("bicubic", "fusion"):
        row |= {f"{m}_{r}": v for r, v in _scores(luma(res.extras[m]), tos.y, regions).items()}
    cfg = pipe.cfg
    h, w_ = tos.y.shape[:2]
    for name in names:
        b = SETTINGS[name](al, cfg)
        use_ref = reference_dropped(al.overlap_ncc, b, cfg.min_ncc, cfg.min_overlap) is None
        y = luma(pipe.fuse(dataclasses.replace(with_maps(al, blend=b), use_reference=use_ref)).final)
        row |= {f"{name}_{r}": v for r, v in _scores(y, tos.y, regions).items()}
        wb = sample_grid(b, (h, w_), 0, h, 0, w_)
        row[f"{name}_weight_occluded"] = float(wb[regions["occluded"]].mean()) if regions["occluded"].any() \
            else float("nan")
        row[f"{name}_weight_rest"] = float(wb[rest].mean())
    return row


def summarise(df: pd.DataFrame, names: list[str]) -> dict:
    out = {}
    for name in names:
        res: dict = {"captures": len(df), "full": round(float(df[f"{name}_all"].mean()), 3),
                     "fusion": round(float(df["fusion_all"].mean()), 3),
                     "by_kind": {k: round(float(g[f"{name}_all"].mean()), 3) for k, g in df.groupby("scene_kind")},
                     "mean_weight_occluded": round(float(df[f"{name}_weight_occluded"].mean()), 4),
                     "mean_weight_rest": round(float(df[f"{name}_weight_rest"].mean()), 4)}
        for region in ("occluded", "defocused"):
            sub = df[df[f"{name}_{region}"].notna()]
            gap = sub[f"{name}_{region}"] - sub[f"fusion_{region}"]
            res[region] = {"captures": len(sub), "full": round(float(sub[f"{name}_{region}"].mean()), 3),
                           "fusion": round(float(sub[f"fusion_{region}"].mean()), 3),
                           "bicubic": round(float(sub[f"bicubic_{region}"].mean()), 3),
                           "mean_full_minus_fusion": round(float(gap.mean()), 3),
                           "worst_full_minus_fusion": round(float(gap.min()), 3),
                           "captures_below_-0.2": int((gap < -0.2).sum())}
        out[name] = res
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="*", type=Path, help="sessions with truth (default: train + val of 11-14)")
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", nargs="*", default=None, help="settings to run (default: all)")
    ap.add_argument("--every", type=int, default=1, help="every N-th capture (default: all)")
    a = ap.parse_args(argv)
    names = [n for n in SETTINGS if not a.only or n in a.only or n == "shipped"]
    lc = load_model(a.ckpt)
    pipe = HZSRPipeline(lc.model, pipeline_config_of(lc.pipeline, str(lc.path)))
    if a.sessions:
        from hzsr.sim.truth import captures_with_truth

        sessions = {p.name: p for p in a.sessions}
        keep = [f"{p.name}/{c.name}" for p in a.sessions for c in captures_with_truth(p)][:: max(1, a.every)]
    else:
        splits = pd.read_csv(ev.dataset() / "splits.csv")
        keep = sorted(set(splits.loc[splits["split"].isin(["train", "val"]), "capture_id"]))[:: max(1, a.every)]
        sessions = {p.name: p for p in _data.sessions(_data.TRAIN_SEEDS)}
    rows, t0 = [], time.time()
    for cid in keep:
        sess_name, cap_id = cid.split("/")
        sess = sessions[sess_name]
        t = dict(np.load(truth_dir(sess) / f"{cap_id}.npz"))
        crop = json.loads((truth_dir(sess) / f"{cap_id}.json").read_text())["crop_rect"]
        meta = json.loads((sess / "captures" / cap_id / "capture.json").read_text())
        row = score(pipe, sess / "captures" / cap_id, t, crop, meta, names)
        row["capture"] = cid
        row["scene_kind"] = scene_kind(str(meta.get("scene_id", "")), list(meta.get("scene_tags", [])))
        rows.append(row)
        print(f"{len(rows)}/{len(keep)} {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    out = summarise(df, names)
    for name, res in out.items():
        print(name, json.dumps(res), flush=True)
    if a.json:
        a.json.write_text(json.dumps({"settings": out, "rows": df.to_dict(orient="records")}, indent=1,
                                     default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
