"""Inference-side variants of the pipeline against the ideal target, paired by capture with the base.

For each capture of simulated sessions rendered with ``--truth`` (optionally only some scene
kinds), the base pipeline (the checkpoint's config, with ``--set`` overrides) and every
``--variant`` run on the same capture and are scored as ``bench/eval_truth.py`` scores ``full``
(Y PSNR inside T's field of view against the ideal target on I_src's grid). Per kind it prints
each variant's full - bicubic and its paired difference to the base (mean, standard error over
captures, worst capture). A variant is ``NAME:SPEC;SPEC...``, each SPEC one of:

- ``KEY=VALUE``: a pipeline config field, as ``eval_truth.py --set`` (``flow_alpha=40``,
  ``qa.maps.occlusion_scale=0.1``, ``denoise_strength=1.5``, ``flow_blur_px=2``);
- ``dis.PARAM=VALUE``: one of OpenCV DIS's own settings on top of the preset and the pipeline's
  (``dis.PatchStride=2``, ``dis.PatchSize=12``, ``dis.VariationalRefinementIterations=10``,
  ``dis.VariationalRefinementGamma=20``);
- ``noisy.nlm=H`` / ``noisy.nlm_ref=H`` / ``noisy.bilateral=R`` / ``noisy.gauss=S`` / ``noisy.alpha=A``:
  only where the reference's noise measured on the flow grid is 2 or more (night): DIS on lumas
  denoised by non-local means (both, or the reference only; h = H x sigma), a bilateral filter
  (range R x sigma, 7 px, space 1.5), a Gaussian of S grid px, or with smoothness A;
- ``tta=v`` / ``tta=h`` / ``tta=vh``: the UNet also run on the vertically / horizontally flipped
  tile, the outputs averaged (self-ensemble; twice the UNet's cost or more);
- ``trueocc``: the truth's occluded pixels as the UNet's ``M_occ`` input (an oracle: what a perfect
  occlusion map would give with the estimated flow).

Usage::

    python bench/pipeline_variants.py SESSION ... [--kinds moving night] [--set KEY=VALUE ...]
        --variant 'NAME:SPEC;SPEC' ... [--json OUT]

Selection belongs on the calibration sessions (``hzsr sim session --seed 31..36 --textures eval
--truth``); the held-out sessions 21-23 judge once. DIS's parameters and the prefilters are
monkeypatched into ``align.dis_flows`` for the variant's run only.
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

import hzsr.baseline_model.align as align_mod
from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.color import luma
from hzsr.baseline_model.denoise import noise_sigma
from hzsr.baseline_model.evaluate import psnr
from hzsr.baseline_model.ideal_target import ideal_on_source
from hzsr.baseline_model.pipeline import HZSRPipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import truth_captures  # noqa: E402
from eval_truth import pipeline_config_with  # noqa: E402

NOISY_SIGMA = 2.0  # grid-luma noise (8-bit) from which the noisy.* prefilters apply
_DIS_FLOWS = align_mod.dis_flows


@dataclasses.dataclass
class Variant:
    name: str
    sets: list[str] = dataclasses.field(default_factory=list)
    dis: dict[str, float] = dataclasses.field(default_factory=dict)
    noisy: dict[str, float] = dataclasses.field(default_factory=dict)
    tta: str = ""
    trueocc: bool = False


def parse_variant(text: str) -> Variant:
    name, _, specs = text.partition(":")
    v = Variant(name)
    for spec in (s.strip() for s in specs.split(";") if s.strip()):
        key, _, value = spec.partition("=")
        if key == "trueocc":
            v.trueocc = True
        elif key == "tta":
            v.tta = value
        elif key.startswith("dis."):
            v.dis[key[4:]] = float(value)
        elif key.startswith("noisy."):
            v.noisy[key[6:]] = float(value)
        else:
            v.sets.append(spec)
    return v


def _patched_dis(v: Variant):
    """``align.dis_flows`` with the variant's DIS settings and noisy-pair prefilters."""
    def dis_flows(src_y, ref_y, cfg, finest, alpha=0.0):
        n = v.noisy
        if n and noise_sigma(ref_y) >= NOISY_SIGMA:
            sig = noise_sigma(ref_y)
            if "nlm" in n:
                src_y, ref_y = (cv2.fastNlMeansDenoising(y, None, n["nlm"] * sig, 5, 11) for y in (src_y, ref_y))
            if "nlm_ref" in n:
                ref_y = cv2.fastNlMeansDenoising(ref_y, None, n["nlm_ref"] * sig, 5, 11)
            if "bilateral" in n:
                src_y, ref_y = (cv2.bilateralFilter(y, 7, n["bilateral"] * sig, 1.5) for y in (src_y, ref_y))
            if "gauss" in n:
                src_y, ref_y = (cv2.GaussianBlur(y, (0, 0), n["gauss"]) for y in (src_y, ref_y))
            alpha = n.get("alpha", alpha)
        if not v.dis:
            return _DIS_FLOWS(src_y, ref_y, cfg, finest, alpha)
        dis = cv2.DISOpticalFlow_create(align_mod._DIS_PRESETS[cfg.align.dis_preset])
        dis.setFinestScale(int(finest))
        if alpha > 0:
            dis.setVariationalRefinementAlpha(float(alpha))
        for k, val in v.dis.items():
            getattr(dis, "set" + k)(type(getattr(dis, "get" + k)())(val))
        return dis.calc(src_y, ref_y, None), dis.calc(ref_y, src_y, None)
    return dis_flows


class FlipEnsemble:
    """A numpy UNet runner that also runs the flipped input and averages (``tta``)."""

    takes_numpy = True
    tiles_in_flight = 1

    def __init__(self, runner, mode: str):
        self.runner, self.mode = runner, mode
        self.size_multiple = getattr(runner, "size_multiple", 16)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        ys = [self.runner(x)]
        if "v" in self.mode:
            ys.append(self.runner(np.ascontiguousarray(x[..., ::-1, :]))[..., ::-1, :])
        if "h" in self.mode:
            ys.append(self.runner(np.ascontiguousarray(x[..., :, ::-1]))[..., :, ::-1])
        return np.ascontiguousarray(sum(ys) / len(ys), dtype=np.float32)


def run(sessions: list[Path], kinds: list[str] | None, base_sets: list[str], variants: list[Variant]) -> pd.DataFrame:
    lc = load_model(None)
    all_v = [Variant("base"), *variants]
    pipes = {}
    for v in all_v:
        p = HZSRPipeline(lc.model, pipeline_config_with(lc, [*base_sets, *v.sets] or None))
        if v.tta:
            p._runner = FlipEnsemble(p.runner, v.tta)
        pipes[v.name] = p
    rows = []
    for sess, cap, meta, kind, tm, t in truth_captures(sessions, kinds):
        w = cv2.cvtColor(cv2.imread(str(cap / "main_W.jpg")), cv2.COLOR_BGR2RGB)
        ref = cv2.cvtColor(cv2.imread(str(cap / "ref_T.jpg")), cv2.COLOR_BGR2RGB)
        row = {"capture": f"{sess.name}/{cap.name}", "scene_kind": kind}
        for v in all_v:
            p = pipes[v.name]
            align_mod.dis_flows = _patched_dis(v) if (v.dis or v.noisy) else _DIS_FLOWS
            try:
                al = p.align(w, ref, meta)
            finally:
                align_mod.dis_flows = _DIS_FLOWS
            tr = ideal_on_source(al, t["ideal_T"], t["valid_ref_T"], t["defocus_sigma_ref_T"], tm["crop_rect"])
            if v.trueocc:
                gh, gw = al.grid_shape
                occ = cv2.resize((tr.occluded | ~tr.inside).astype(np.float32), (gw, gh),
                                 interpolation=cv2.INTER_AREA)
                al = dataclasses.replace(al, maps={**al.maps, "occlusion": occ})
            res = p.fuse(al)
            row[f"psnr_{v.name}"] = psnr(luma(res.final), tr.y, tr.inside)
            row[f"psnr_bicubic_{v.name}"] = psnr(luma(al.src), tr.y, tr.inside)
        rows.append(row)
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame) -> dict:
    names = [c[5:] for c in df if c.startswith("psnr_") and not c.startswith("psnr_bicubic_")]
    out = {}
    for kind, g in [*df.groupby("scene_kind"), ("all", df)]:
        out[kind] = {"n": len(g)}
        for n in names:
            d = g[f"psnr_{n}"] - g["psnr_base"]
            out[kind][n] = {"full_minus_bicubic_db": round(float((g[f"psnr_{n}"] - g[f"psnr_bicubic_{n}"]).mean()), 3),
                            "vs_base_db": round(float(d.mean()), 3),
                            "se": round(float(d.std(ddof=1) / np.sqrt(len(d))), 3) if len(d) > 1 else None,
                            "worst_db": round(float(d.min()), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="+", type=Path, help="simulated sessions with truth")
    ap.add_argument("--kinds", nargs="+", help="only captures of these scene kinds")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a pipeline config override for the base and every variant")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:SPEC;SPEC")
    ap.add_argument("--json", type=Path, help="write the summary and per-capture rows here")
    a = ap.parse_args(argv)
    df = run(a.sessions, a.kinds, a.set, [parse_variant(v) for v in a.variant])
    out = summarise(df)
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps({"summary": out, "rows": df.to_dict(orient="records")}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
