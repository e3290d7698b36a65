"""Where the full pipeline loses dB against the ideal target: its error split by truth region.

For each capture of simulated sessions rendered with ``--truth``, runs the pipeline (shipped
checkpoint, or ``--ckpt``) and puts the truth on I_src's grid (``ideal_target.ideal_on_source``,
as ``bench/eval_truth.py``). The pixels inside T's field of view are split into disjoint regions:

- ``occluded``: the reference does not see the surface (truth ``valid_ref_T`` false);
- ``defocused``: seen, but the reference's true blur sigma is over 1 T px;
- ``border``: usable (seen, in focus) and within ``BORDER_PX`` of the frame's edge;
- ``parallax``: usable, and the true flow into the reference differs from the frame's median
  true flow by more than ``PARALLAX_PX`` T px (near layers and moving subjects: what the coarse
  shift does not take);
- ``textured`` / ``flat``: the rest, split at the median of the ideal's local gradient energy.

For each method (``bicubic``, ``warped_ref``, ``blend``, ``fusion``, ``full``, and
``oracle_warp``: the reference remapped by the TRUE flow) and region it reports the region's
share of the pixels, the method's PSNR there, and its share of the full pipeline's squared error
(``sse_share``). ``handback_db`` is what the whole-frame PSNR of ``full`` would gain if the region
were given the better of ``full`` and ``bicubic`` per pixel-region (i.e. the bicubic wherever that
region's bicubic error is smaller): the most a perfect hand-back to W could win there.

With ``--true-flow`` it also fuses each capture with the TRUE flow in place of the estimated one
(``fusion_trueflow``: the same network, maps and blend), and with the true flow and the true
occlusion as the network's ``M_occ`` and blend (``fusion_trueflow_trueocc``): how much of the gap
to the true-flow warp is the flow's, and how much the network's.

Usage::

    python bench/eval_regions.py [SESSION ...] [--kinds K ...] [--ckpt CKPT] [--true-flow] [--set KEY=VALUE ...]
        [--json OUT]

Without sessions: the pinned TRAIN sessions 11-14 (``bench/_data.py``): a diagnosis is made on
training data, and only the held-out sessions 21-23 judge a change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.color import luma, match_colour, to_uint8
from hzsr.baseline_model.evaluate import no_network_blend_y, pipeline_config_of
from hzsr.baseline_model.ideal_target import ideal_on_source, onto_src_grid
from hzsr.baseline_model.pipeline import HZSRPipeline
from hzsr.core.geometry import CropRect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import truth_captures  # noqa: E402

BORDER_PX = 24  # T px from the frame's edge: where the flow and the warp run out of context
PARALLAX_PX = 3.0  # T px of true flow off the frame's median: a near layer or a moving subject
REGIONS = ("occluded", "defocused", "border", "parallax", "textured", "flat")
METHODS = ("bicubic", "warped_ref", "blend", "fusion", "full", "oracle_warp")


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def regions_of(tr, flow_src: np.ndarray) -> dict[str, np.ndarray]:
    """Disjoint boolean regions inside the truth's cover (see the module docstring)."""
    inside = tr.inside
    h, w = inside.shape
    occ = inside & tr.occluded
    dfc = inside & ~tr.occluded & tr.defocused
    usable = inside & ~occ & ~dfc
    edge = np.zeros((h, w), bool)
    edge[BORDER_PX:-BORDER_PX, BORDER_PX:-BORDER_PX] = True
    border = usable & ~edge
    med = np.median(flow_src[usable], axis=0) if usable.any() else np.zeros(2, np.float32)
    par = usable & ~border & (np.linalg.norm(flow_src - med, axis=2) > PARALLAX_PX)
    rest = usable & ~border & ~par
    gx = cv2.Sobel(tr.y, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(tr.y, cv2.CV_32F, 0, 1)
    energy = cv2.GaussianBlur(gx * gx + gy * gy, (0, 0), 3.0)
    thr = np.median(energy[rest]) if rest.any() else 0.0
    return {"occluded": occ, "defocused": dfc, "border": border, "parallax": par,
            "textured": rest & (energy > thr), "flat": rest & (energy <= thr)}


def true_flow_fusions(pipe: HZSRPipeline, al, tr, flow_src: np.ndarray) -> dict[str, np.ndarray]:
    """The network's output (Y) with the true flow, then also with the true occlusion (see the docstring)."""
    import dataclasses

    h, w = al.src.shape[:2]
    gh, gw = al.grid_shape
    grid = cv2.resize(flow_src, (gw, gh), interpolation=cv2.INTER_AREA) / np.array([w / gw, h / gh], np.float32)
    al_t = dataclasses.replace(al, flow_fwd=grid.astype(np.float32), use_reference=True)
    occ = cv2.resize((tr.occluded | ~tr.inside).astype(np.float32), (gw, gh), interpolation=cv2.INTER_AREA)
    al_o = dataclasses.replace(al_t, maps={**al.maps, "occlusion": occ,
                                           "blend": np.clip(1 - occ, 0, 1) * al.maps["valid"]})
    return {"fusion_trueflow": luma(pipe.fuse(al_t, extras=("fusion",)).extras["fusion"]),
            "fusion_trueflow_trueocc": luma(pipe.fuse(al_o, extras=("fusion",)).extras["fusion"])}


def score_capture(pipe: HZSRPipeline, cap: Path, truth: dict, crop_rect: dict, true_flow: bool = False) -> dict:
    w, ref = _rgb(cap / "main_W.jpg"), _rgb(cap / "ref_T.jpg")
    meta = json.loads((cap / "capture.json").read_text())
    res = pipe.run(w, ref, meta, extras=("bicubic", "warped_ref", "fusion"))
    al = res.alignment
    tr = ideal_on_source(al, truth["ideal_T"], truth["valid_ref_T"], truth["defocus_sigma_ref_T"], crop_rect)
    ys = {m: luma(res.extras[m]) for m in ("bicubic", "warped_ref", "fusion")}
    ys["full"] = luma(res.final)
    ys["blend"] = no_network_blend_y(al, ys["bicubic"], ys["warped_ref"])
    h, wd = truth["ideal_T"].shape[:2]
    yy, xx = np.mgrid[0:h, 0:wd].astype(np.float32)
    flow = truth["flow_ref_T"]
    ow = cv2.remap(ref, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    rect_t = CropRect(**crop_rect)
    ow = onto_src_grid(ow, rect_t, al.rect, cv2.INTER_LINEAR)
    gain, off = match_colour(ow, al.src, tr.inside & ~tr.occluded)
    ys["oracle_warp"] = luma(to_uint8(np.clip(ow.astype(np.float32) / 255 * gain + off, 0, 1)))
    # The true flow on I_src's grid: the reference position of each truth pixel, carried onto I_src.
    absolute = np.dstack([xx + flow[..., 0], yy + flow[..., 1]])
    hs, ws = al.src.shape[:2]
    ys_, xs_ = np.mgrid[0:hs, 0:ws].astype(np.float32)
    flow_src = onto_src_grid(np.ascontiguousarray(absolute), rect_t, al.rect, cv2.INTER_NEAREST) - np.dstack([xs_, ys_])
    if true_flow:
        ys.update(true_flow_fusions(pipe, al, tr, flow_src))
    regs = regions_of(tr, flow_src)
    n_in = int(tr.inside.sum())
    err = {m: (y - tr.y) ** 2 for m, y in ys.items()}
    sse_full = float(err["full"][tr.inside].sum())
    row = {"capture": f"{cap.parent.parent.name}/{cap.name}", "used_reference": bool(al.use_reference),
           "psnr_full": float(10 * np.log10(n_in / max(sse_full, 1e-12)))}
    for m in ys:
        row[f"psnr_{m}"] = float(10 * np.log10(n_in / max(float(err[m][tr.inside].sum()), 1e-12)))
    for r, mask in regs.items():
        n = int(mask.sum())
        row[f"{r}_frac"] = n / n_in
        if n < 200:
            continue
        for m in METHODS:
            row[f"{r}_psnr_{m}"] = float(10 * np.log10(1 / max(float(err[m][mask].mean()), 1e-12)))
        sse_r = float(err["full"][mask].sum())
        row[f"{r}_sse_share"] = sse_r / sse_full
        better = min(sse_r, float(err["bicubic"][mask].sum()))
        row[f"{r}_handback_db"] = float(10 * np.log10(sse_full / max(sse_full - sse_r + better, 1e-12)))
    return row


def run(sessions: list[Path], ckpt: str | None, kinds: list[str] | None, true_flow: bool = False,
        overrides: list[str] | None = None) -> pd.DataFrame:
    lc = load_model(ckpt)
    if overrides:
        from eval_truth import pipeline_config_with

        cfg = pipeline_config_with(lc, overrides)
    else:
        cfg = pipeline_config_of(lc.pipeline, str(lc.path))
    pipe = HZSRPipeline(lc.model, cfg)
    rows = []
    for _sess, cap, _meta, kind, tmeta, t in truth_captures(sessions, kinds):
        row = score_capture(pipe, cap, t, tmeta["crop_rect"], true_flow)
        row["scene_kind"] = kind
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> dict:
    out = {}
    for kind, g in df.groupby("scene_kind"):
        whole = [m for m in (*METHODS, "fusion_trueflow", "fusion_trueflow_trueocc") if f"psnr_{m}" in g]
        k = {"n": len(g), "whole": {m: round(float(g[f"psnr_{m}"].mean()), 2) for m in whole}}
        for r in REGIONS:
            sub = g[g.get(f"{r}_sse_share", pd.Series(dtype=float)).notna()] if f"{r}_sse_share" in g else g.iloc[:0]
            k[r] = {"frac": round(float(g[f"{r}_frac"].mean()), 3), "captures": len(sub)}
            if len(sub):
                k[r].update({m: round(float(sub[f"{r}_psnr_{m}"].mean()), 2) for m in METHODS})
                k[r]["sse_share"] = round(float(sub[f"{r}_sse_share"].mean()), 3)
                k[r]["handback_db"] = round(float(sub[f"{r}_handback_db"].mean()), 3)
        out[kind] = k
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="*", type=Path, help="sessions with truth (default: the pinned TRAIN ones)")
    ap.add_argument("--kinds", nargs="+", help="only captures of these scene kinds")
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    ap.add_argument("--true-flow", action="store_true", help="also fuse with the true flow (and occlusion)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a pipeline config field (as bench/eval_truth.py: --set flow_level_max=1)")
    ap.add_argument("--json", type=Path, help="write the summary and per-capture rows here")
    a = ap.parse_args(argv)
    if not a.sessions:
        import _data

        a.sessions = _data.sessions(_data.TRAIN_SEEDS)
    df = run(a.sessions, a.ckpt, a.kinds, a.true_flow, a.set)
    out = summarise(df)
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps({"summary": out, "rows": df.to_dict(orient="records")}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
