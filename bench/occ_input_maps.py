"""Candidate untrusted-reference maps for the level-2 flow, scored against the true occlusion.

For each capture of simulated sessions rendered with ``--truth`` (optionally some scene kinds), the
pipeline's alignment (the shipped checkpoint's config: level-2 DIS with its smoothness and blurred
lumas) gives forward and backward flow on the flow grid. Each candidate map is sampled onto I_src's
pixels (``pipeline.sample_grid``) and scored against the pixels the truth marks occluded (the
reference does not see the crop's surface, ``ideal_target.ideal_on_source``), inside T's field of
view, pooled over each kind's captures:

- ``auc``: ROC area (1 = the map ranks every occluded pixel above every other one; 0.5 = chance);
- ``ap``: average precision (area under precision-recall; the occluded share is chance);
- ``recall@0.5`` / ``fpr@0.5``: occluded pixels the map marks >= 0.5, and other pixels it marks.

Candidates (grid px; all monotone in their score, so AUC/AP do not depend on a scale):

- ``fb``: the forward-backward round-trip error (``qa.maps.fb_error``; the UNet's ``M_occ`` is
  ``min(0.05 fb, 1)``: ``recall@0.5`` at fb >= 10 px);
- ``uncov``: ``1 - reference_coverage`` (no reference pixel comes back: the range-map test);
- ``resid``: the photometric residual ``|Y_src - Y_warped_ref|`` after both lumas are low-passed by a
  Gaussian of half a W pixel (W is the blurrier image), colour-matched as the pipeline does;
- ``resid_dil``: ``resid`` max-filtered over a disc of 2 grid px per px of local flow deviation from its
  3x3-grid-px median (reaches the mover's trailing side, where the flow is smooth-wrong);
- ``fb_x_resid``: the product of ranks of fb and resid (both must disagree);
- ``fb_or_resid``: the larger of the two ranks; ``fb_or_uncov`` the same with ``uncov``;
- ``fb_blur2``: fb low-passed by a Gaussian of 2 grid px; ``fb_dil2/4/8``: fb max-filtered over a
  disc of that radius (grid px), reaching past the mover's edge where the flow is smooth but wrong.

Usage::

    python bench/occ_input_maps.py SESSION ... [--kinds moving night] [--json OUT]

Selection belongs on the calibration sessions (seeds 31-36); the held-out sessions 21-23 judge once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.ideal_target import ideal_on_source
from hzsr.baseline_model.pipeline import HZSRPipeline, sample_grid
from hzsr.qa.align import to_luma, warp
from hzsr.qa.maps import fb_error, reference_coverage
from hzsr.sim.scene import SCENE_KINDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import truth_captures  # noqa: E402
from eval_truth import pipeline_config_with  # noqa: E402


def _rank(a: np.ndarray) -> np.ndarray:
    """Values -> their rank in [0, 1], ties sharing their mean rank (many pixels are exactly 0)."""
    from scipy.stats import rankdata

    return ((rankdata(a.ravel(), method="average") - 1) / max(a.size - 1, 1)).astype(np.float32).reshape(a.shape)


def candidates(al, k_w_grid: float) -> dict[str, np.ndarray]:
    """Each candidate map on the flow grid (higher = less trusted)."""
    fwd, bwd = al.flow_fwd, al.flow_bwd
    g = al.grid_scale
    src_g = cv2.resize(al.src, (fwd.shape[1], fwd.shape[0]), interpolation=cv2.INTER_AREA) if g < 1 else al.src
    ref_g = cv2.resize(al.ref, (fwd.shape[1], fwd.shape[0]), interpolation=cv2.INTER_AREA) if g < 1 else al.ref
    warped = warp(ref_g, fwd).astype(np.float32) / 255.0 * al.colour_gain + al.colour_offset
    ys = to_luma(src_g.astype(np.float32) / 255.0)
    yr = to_luma(np.clip(warped, 0, 1).astype(np.float32))
    s = max(0.5 * k_w_grid, 0.5)
    resid = np.abs(cv2.GaussianBlur(ys, (0, 0), s) - cv2.GaussianBlur(yr, (0, 0), s))
    fb = fb_error(fwd, bwd)
    uncov = 1.0 - np.clip(reference_coverage(bwd), 0, 1)
    med = np.stack([cv2.medianBlur(np.ascontiguousarray(fwd[..., c]), 5) for c in range(2)], -1)
    dev = np.hypot(*(fwd - med).transpose(2, 0, 1))
    rad = int(np.clip(np.percentile(dev, 99) * 2, 1, 12))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rad + 1, 2 * rad + 1))
    resid_dil = cv2.dilate(resid, disc)
    rf, rr, ru = _rank(fb), _rank(resid), _rank(uncov)
    out = {"fb": fb, "uncov": uncov.astype(np.float32), "resid": resid, "resid_dil": resid_dil,
           "fb_x_resid": rf * rr, "fb_or_resid": np.maximum(rf, rr), "fb_or_uncov": np.maximum(rf, ru),
           "fb_blur2": cv2.GaussianBlur(fb, (0, 0), 2.0)}
    for r in (2, 4, 8):
        out[f"fb_dil{r}"] = cv2.dilate(fb, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return out


def _auc_ap(score: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """ROC area and average precision, tied scores counted as one threshold (a map with large flat
    regions, e.g. a coverage of exactly 0 or 1, is not ranked by the order its pixels came in).

    ROC area = (sum of the positives' average ranks - P (P + 1) / 2) / (P N) (Mann-Whitney);
    AP = sum over thresholds of (R_k - R_{k-1}) P_k, as scikit-learn's ``average_precision_score``.
    """
    from scipy.stats import rankdata

    pos = int(label.sum())
    neg = label.size - pos
    if pos == 0 or neg == 0:
        return float("nan"), float("nan")
    auc = float((rankdata(score)[label].sum() - pos * (pos + 1) / 2) / (pos * neg))
    order = np.argsort(-score, kind="stable")
    s, lab = score[order], label[order]
    last = np.r_[np.flatnonzero(np.diff(s)), lab.size - 1]  # the last pixel of each tied run
    tp, fp = np.cumsum(lab)[last], np.cumsum(~lab)[last]
    ap = float(np.sum(np.diff(np.r_[0.0, tp / pos]) * tp / (tp + fp)))
    return auc, ap


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="+", type=Path)
    ap.add_argument("--kinds", nargs="+", choices=SCENE_KINDS)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    lc = load_model(None)
    pipe = HZSRPipeline(lc.model, pipeline_config_with(lc, None))
    pooled: dict[str, dict[str, list]] = {}
    rng = np.random.default_rng(0)
    for tc in truth_captures(a.sessions, a.kinds):
        w = cv2.cvtColor(cv2.imread(str(tc.capture / "main_W.jpg")), cv2.COLOR_BGR2RGB)
        ref = cv2.cvtColor(cv2.imread(str(tc.capture / "ref_T.jpg")), cv2.COLOR_BGR2RGB)
        al = pipe.align(w, ref, tc.meta)
        t = tc.truth
        tos = ideal_on_source(al, t["ideal_T"], t["valid_ref_T"], t["defocus_sigma_ref_T"], tc.truth_meta["crop_rect"])
        h, wd = al.src.shape[:2]
        cands = candidates(al, al.rect.scale * al.grid_scale)  # grid px per W px
        inside = tos.inside & (sample_grid(al.maps["valid"], (h, wd), 0, h, 0, wd) > 0.5)
        idx = np.flatnonzero(inside.ravel())
        idx = rng.choice(idx, size=min(idx.size, 20000), replace=False)  # pooled subsample per capture
        bucket = pooled.setdefault(tc.kind, {"label": [], **{n: [] for n in cands}})
        bucket["label"].append(tos.occluded.ravel()[idx])
        for n, m in cands.items():
            bucket[n].append(sample_grid(np.ascontiguousarray(m, np.float32), (h, wd), 0, h, 0, wd).ravel()[idx])
        qa_occ = sample_grid(al.maps["occlusion"], (h, wd), 0, h, 0, wd).ravel()[idx]
        bucket.setdefault("m_occ", []).append(qa_occ)
    out = {}
    for kind, b in pooled.items():
        lab = np.concatenate(b.pop("label"))
        m_occ = np.concatenate(b.pop("m_occ"))
        res = {"pixels": int(lab.size), "occluded_share": round(float(lab.mean()), 4),
               "M_occ_recall@0.5": round(float((m_occ[lab] >= 0.5).mean()), 3),
               "M_occ_fpr@0.5": round(float((m_occ[~lab] >= 0.5).mean()), 4)}
        for n, parts in b.items():
            auc, apv = _auc_ap(np.concatenate(parts), lab)
            res[n] = {"auc": round(auc, 3), "ap": round(apv, 3)}
        out[kind] = res
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
