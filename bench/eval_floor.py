"""What a perfect copy of the reference could give, per scene kind: the ceiling any warp-and-blend reaches.

On the truth's crop grid (the intrinsics' W crop at T's resolution, where ``ideal_T`` is rendered),
for each capture of simulated sessions rendered with ``--truth``, scores against the ideal target
(Y PSNR, the same colour match to the source as ``bench/eval_truth.py``):

- ``bicubic``: the W crop resized to T (``cv2.INTER_CUBIC``), the simplest alternative;
- ``oracle_warp``: the reference remapped by the TRUE flow, ``ref(x + F_true(x))``
  (``flow_ref_T``), colour-matched to the bicubic; no flow error, no coarse-alignment error;
- ``oracle_blend``: ``oracle_warp`` where the reference truly sees the surface in focus
  (``valid_ref_T`` and blur sigma <= 1 T px), bicubic elsewhere: a copy method with perfect flow
  and perfect maps;
- ``oracle_blend_denoised``: the same with the warped reference denoised
  (``cv2.fastNlMeansDenoising`` on Y, strength ``h`` = 3x the measured noise sigma): what is left
  when the reference's own sensor noise is removed too.

With ``--pipeline`` it also runs the pipeline (``--ckpt``, default the shipped checkpoint) on the
same captures and splits its score on I_src's grid (``ideal_target.ideal_on_source``) into the
pixels the reference truly sees in focus (``sharp``) and the rest (``bad``), beside the true-flow
warp put on the same grid (``oracle_warp``): how often the reference is dropped
(``use_reference``), how much of the truly usable area the blend map hands to the reference
(``m_blend_on_sharp``), and what the estimated flow costs against the true one
(``warped_ref_sharp`` vs ``oracle_warp_sharp``).

It also reports the reference's noise (robust sigma of its Laplacian, 8-bit levels) and the
shares of truly occluded and defocused pixels, so a kind's low ceiling can be traced to its
cause (noise at night, occlusion and motion for moving scenes).

Usage::

    python bench/eval_floor.py [SESSION ...] [--pipeline [--ckpt CKPT] [--flow-size W H]] [--kinds K ...]
                               [--json OUT]

Without sessions: the pinned held-out sessions 21-23 (``bench/_data.py``, ``--textures eval``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from hzsr.baseline_model.color import luma, match_colour, to_uint8
from hzsr.baseline_model.evaluate import psnr
from hzsr.baseline_model.ideal_target import DEFOCUSED_SIGMA_T_PX
from hzsr.core.geometry import CropRect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import truth_captures  # noqa: E402


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def noise_sigma(y8: np.ndarray) -> float:
    """Robust noise sigma (8-bit levels) from the median absolute Laplacian (Immerkaer's operator)."""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    r = cv2.filter2D(y8.astype(np.float32), -1, k)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(r).mean() / 6.0)


def _matched(img: np.ndarray, to: np.ndarray, mask: np.ndarray) -> np.ndarray:
    gain, offset = match_colour(img, to, mask)
    return np.clip(img.astype(np.float32) / 255.0 * gain + offset, 0, 1)


def score_capture(cap: Path, truth: dict, crop_rect: dict) -> dict:
    w, ref = _rgb(cap / "main_W.jpg"), _rgb(cap / "ref_T.jpg")
    rect = CropRect(**crop_rect)
    h, wd = truth["ideal_T"].shape[:2]
    bic = cv2.warpAffine(w, rect.crop_to_w()[:2], (wd, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REFLECT)
    flow = truth["flow_ref_T"]
    yy, xx = np.mgrid[0:h, 0:wd].astype(np.float32)
    warped = cv2.remap(ref, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    inside = np.zeros((h, wd), bool)
    inside[4:-4, 4:-4] = True
    seen = truth["valid_ref_T"].astype(bool) & inside
    sharp = seen & (truth["defocus_sigma_ref_T"] <= DEFOCUSED_SIGMA_T_PX)
    ideal_y = luma(to_uint8(_matched(truth["ideal_T"], bic, inside)))
    bic_y = luma(bic)
    warp_y = luma(to_uint8(_matched(warped, bic, seen if seen.sum() > 500 else inside)))
    sigma = noise_sigma((warp_y * 255).astype(np.uint8))
    den = cv2.fastNlMeansDenoising((warp_y * 255).round().astype(np.uint8), None, h=max(1.0, 3 * sigma),
                                   templateWindowSize=7, searchWindowSize=21).astype(np.float32) / 255.0
    row = {"capture": f"{cap.parent.parent.name}/{cap.name}", "ref_noise_sigma": sigma,
           "occluded_frac": float(1 - seen[inside].mean()), "defocused_frac": float((seen & ~sharp)[inside].mean())}
    for name, y in (("bicubic", bic_y), ("oracle_warp", warp_y), ("oracle_blend", np.where(sharp, warp_y, bic_y)),
                    ("oracle_blend_denoised", np.where(sharp, den, bic_y))):
        row[f"psnr_{name}"] = psnr(y, ideal_y, inside)
    row["psnr_oracle_warp_seen"] = psnr(warp_y, ideal_y, sharp) if sharp.sum() > 500 else float("nan")
    row["psnr_bicubic_seen"] = psnr(bic_y, ideal_y, sharp) if sharp.sum() > 500 else float("nan")
    return row


def score_pipeline(pipe, cap: Path, truth: dict, crop_rect: dict) -> dict:
    """The pipeline's methods and the true-flow warp on I_src's grid, split into truly usable and other pixels."""
    from hzsr.baseline_model.evaluate import no_network_blend_y
    from hzsr.baseline_model.ideal_target import ideal_on_source, onto_src_grid
    from hzsr.baseline_model.pipeline import sample_grid

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
    ow = onto_src_grid(ow, CropRect(**crop_rect), al.rect, cv2.INTER_LINEAR)
    ys["oracle_warp"] = luma(to_uint8(_matched(ow, al.src, tr.inside & ~tr.occluded)))
    hs, ws = ys["full"].shape
    mb = sample_grid(al.maps["blend"], (hs, ws), 0, hs, 0, ws) if al.use_reference else np.zeros((hs, ws), np.float32)
    sharp = tr.inside & ~tr.occluded & ~tr.defocused
    bad = tr.inside & ~sharp
    row = {"use_reference": float(al.use_reference),
           "m_blend_on_sharp": float(mb[sharp].mean()) if sharp.any() else float("nan")}
    for m, y in ys.items():
        row[f"psnr_{m}"] = psnr(y, tr.y, tr.inside)
        row[f"psnr_{m}_sharp"] = psnr(y, tr.y, sharp) if sharp.sum() > 500 else float("nan")
        row[f"psnr_{m}_bad"] = psnr(y, tr.y, bad) if bad.sum() > 500 else float("nan")
    return row


def run(sessions: list[Path], pipe=None, kinds: list[str] | None = None) -> pd.DataFrame:
    """Score every capture with truth (of ``kinds``, default all); with ``pipe`` (an ``HZSRPipeline``) on I_src too."""
    rows = []
    for _sess, cap, _meta, kind, tmeta, t in truth_captures(sessions, kinds):
        crop = tmeta["crop_rect"]
        row = score_capture(cap, t, crop)
        if pipe is not None:
            row.update({f"pipe_{k}": v for k, v in score_pipeline(pipe, cap, t, crop).items()})
        row["scene_kind"] = kind
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> dict:
    cols = [c for c in df.columns if c not in ("capture", "scene_kind")]

    def name(c: str) -> str:
        return c.replace("psnr_", "")

    by_kind = {k: {name(c): round(float(g[c].mean()), 2) for c in cols} | {"n": len(g)}
               for k, g in df.groupby("scene_kind")}
    by_kind["all"] = {name(c): round(float(df[c].mean()), 2) for c in cols} | {"n": len(df)}
    return {"captures": len(df), "by_kind": by_kind}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="*", type=Path, help="sessions with truth (default: the pinned eval ones)")
    ap.add_argument("--pipeline", action="store_true", help="also run the pipeline and split its score")
    ap.add_argument("--ckpt", default=None, help="checkpoint for --pipeline (default: the shipped one)")
    ap.add_argument("--flow-size", type=int, nargs=2, metavar=("W", "H"),
                    help="with --pipeline: the dense-flow grid (qa align.flow_size) instead of the checkpoint's")
    ap.add_argument("--kinds", nargs="+", help="only captures of these scene kinds")
    ap.add_argument("--json", type=Path, help="write the summary and per-capture rows here")
    a = ap.parse_args(argv)
    if not a.sessions:
        import _data

        a.sessions = _data.sessions(_data.EVAL_SEEDS)
    pipe = None
    if a.pipeline:
        from hzsr.baseline_model.checkpoint import load_model
        from hzsr.baseline_model.evaluate import pipeline_config_of
        from hzsr.baseline_model.pipeline import HZSRPipeline

        lc = load_model(a.ckpt)
        cfg = pipeline_config_of(lc.pipeline, str(lc.path))
        if a.flow_size:
            import dataclasses

            al = dataclasses.replace(cfg.qa.align, flow_size=tuple(a.flow_size))
            cfg = dataclasses.replace(cfg, qa=dataclasses.replace(cfg.qa, align=al))
        pipe = HZSRPipeline(lc.model, cfg)
    df = run(a.sessions, pipe, a.kinds)
    out = summarise(df)
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps({**out, "rows": df.to_dict(orient="records")}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
