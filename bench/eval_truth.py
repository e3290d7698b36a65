"""The pipeline against the simulator's ideal target, beside the simple alternatives.

For each capture of simulated sessions rendered with ``--truth`` (``hzsr.sim.ideal``: main W's
viewpoint at T's resolution, all in focus, noise-free), runs the pipeline with a checkpoint and
scores, on Y inside T's field of view:

- ``bicubic``: the coarse-aligned W crop (I_src);
- ``warped_ref``: the colour-matched reference warped onto I_src;
- ``blend``: the no-network blend, ``Y_bicubic + M_blend (Y_warped_ref - Y_bicubic)``;
- ``fusion``: the UNet without blending;
- ``full``: the full pipeline;
- with ``--ablation`` (``VARIANTS``), from the same alignment and network output, re-blended:
  ``fusion_denoised`` (no blend at all, then the output denoiser), ``no_maps`` (only the
  reference's frame: bicubic where it has no pixel), ``only_<map>`` (the frame and that one map),
  ``no_<map>`` (every map but that one: the paper's leave-one-out ablation) and ``no_denoise``
  (the full blend without the output denoiser). Each is exactly the pipeline run with those
  ``use_*`` flags (``align.blend_of_maps``; ``tests/baseline_model/test_blend_ablation.py``), so
  ``full - fusion = denoiser + frame + maps``, and each map's gain is read alone
  (``only_<map> - no_maps``) and beside the others (``full - no_<map>``). The rows also carry each
  map's mean weight in ``M_blend`` (``weight_<map>_<region>``): how much it is on where the truth
  says the reference is occluded or defocused, and elsewhere.

The ideal is resampled onto the pipeline's I_src grid (its crop rectangle moved by the coarse
shift) and colour-matched to I_src (per-channel mean and deviation, ``color.match_colour``), so
every method is scored in the source's photometry (``hzsr.baseline_model.ideal_target``, the
same function that builds the training target of ``data.target: ideal``). Regions come from the truth, not our maps:
``occluded`` where the reference does not see the crop's surface (``valid_ref_T`` false),
``defocused`` where the reference's blur sigma exceeds 1 T px (``defocus_sigma_ref_T``).

Usage::

    python bench/eval_truth.py [SESSION ...] [--ckpt CKPT] [--ablation] [--set KEY=VALUE ...]
        [--kinds KIND ...] [--json OUT]

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

from hzsr.baseline_model.align import MAP_NAMES, Alignment, blend_of_maps, reference_dropped, with_maps
from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.color import luma
from hzsr.baseline_model.config import PipelineConfig
from hzsr.baseline_model.evaluate import no_network_blend_y, pipeline_config_of, psnr
from hzsr.baseline_model.ideal_target import ideal_on_source
from hzsr.baseline_model.pipeline import HZSRPipeline, sample_grid
from hzsr.sim.scene import SCENE_KINDS
from hzsr.sim.truth import truth_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _data import truth_captures  # noqa: E402  (bench/'s shared loop over rendered captures)

#: The pipeline's ``use_*`` flag of each map (``PipelineConfig``), by ``align.MAP_NAMES`` name.
FLAGS = {"occ": "use_occ", "defocus": "use_defocus", "flow": "use_flow", "reject": "use_reject"}
#: Leave-one-out: the full pipeline with one map switched off (the paper's ablation).
ABLATIONS = {f"no_{m}": flag for m, flag in FLAGS.items()}
#: ``--ablation``'s variants: name -> (maps on, or None for no blend at all; output denoiser on).
VARIANTS: dict[str, tuple[dict[str, bool] | None, bool]] = {
    "fusion_denoised": (None, True),
    "no_maps": ({m: False for m in MAP_NAMES}, True),
    **{f"only_{m}": ({n: n == m for n in MAP_NAMES}, True) for m in MAP_NAMES},
    **{f"no_{m}": ({n: n != m for n in MAP_NAMES}, True) for m in MAP_NAMES},
    "no_denoise": ({m: True for m in MAP_NAMES}, False),
}


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _defocus_weight(al: Alignment, cfg: PipelineConfig) -> float:
    """``M_defocus``'s weight in the blend of this alignment (``align.align``: coarse flow levels only)."""
    return cfg.blend_defocus_weight if al.flow_level >= cfg.blend_maps_level else 1.0


def variant_alignment(al: Alignment, cfg: PipelineConfig, use_maps: dict[str, bool] | None) -> Alignment:
    """``al`` as ``align`` would have returned it with only the maps of ``use_maps`` on.

    ``use_maps`` None: no blend at all (``M_blend`` = 1 everywhere, the reference's frame too), so
    the output is the network's. The reference is dropped where ``align`` would drop it: structure
    correlation under ``min_ncc``, or ``M_blend > 0.5`` on less than ``min_overlap`` of the frame.
    """
    if use_maps is None:
        return with_maps(al, blend=np.ones_like(al.maps["blend"]))
    blend = blend_of_maps(al.maps, use_maps, _defocus_weight(al, cfg))
    use_ref = reference_dropped(al.overlap_ncc, blend, cfg.min_ncc, cfg.min_overlap) is None
    return dataclasses.replace(with_maps(al, blend=blend), use_reference=use_ref)


def map_weights(al: Alignment, cfg: PipelineConfig, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Each map's term in ``M_blend`` (before the sum and the clip), on I_src's pixels."""
    m = al.maps
    terms = {"occ": m["occlusion_blend"], "defocus": m["defocus"] * np.float32(_defocus_weight(al, cfg)),
             "flow": m["uncertainty"], "reject": m["reject"], "frame": 1.0 - m["valid"]}
    h, w = shape
    return {name: sample_grid(np.ascontiguousarray(t, dtype=np.float32), shape, 0, h, 0, w)
            for name, t in terms.items()}


def score_capture(pipes: dict[str, HZSRPipeline], cap: Path, truth: dict, meta: dict,
                  variants: tuple[str, ...] = ()) -> dict:
    """One capture's scores; ``pipes`` holds ``full`` (and ``no_denoise`` when a variant needs it)."""
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
    cfg = pipes["full"].cfg
    for name in variants:
        use_maps, denoise = VARIANTS[name]
        pipe = pipes["full"] if denoise else pipes["no_denoise"]
        ys[name] = luma(pipe.fuse(variant_alignment(al, cfg, use_maps)).final)
    row = {"capture": f"{cap.parent.parent.name}/{cap.name}", "used_reference": bool(al.use_reference),
           "occluded_frac": float((occluded & inside).mean()), "defocused_frac": float((defocused & inside).mean())}
    if variants:
        rest = inside & ~occluded & ~defocused
        for name, wmap in map_weights(al, cfg, y_ideal.shape[:2]).items():
            for region, mask in (("occluded", occluded & inside), ("defocused", defocused & inside), ("rest", rest)):
                row[f"weight_{name}_{region}"] = float(wmap[mask].mean()) if mask.any() else float("nan")
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


def run(sessions: list[Path], ckpt: str | None, ablation: bool, overrides: list[str] | None = None,
        kinds: list[str] | None = None) -> pd.DataFrame:
    lc = load_model(ckpt)
    cfg = pipeline_config_with(lc, overrides)
    pipes = {"full": HZSRPipeline(lc.model, cfg)}
    variants = tuple(VARIANTS) if ablation else ()
    if ablation:
        pipes["no_denoise"] = HZSRPipeline(lc.model, dataclasses.replace(cfg, denoise_strength=0.0))
    rows = []
    for tc in truth_captures(sessions, kinds):
        t = require_ideal(tc)
        t["crop_rect"] = tc.truth_meta["crop_rect"]
        row = score_capture(pipes, tc.capture, t, tc.meta, variants)
        row["scene_kind"] = tc.kind
        rows.append(row)
    return pd.DataFrame(rows)


def require_ideal(tc) -> dict:
    """``tc.truth``, or one line naming the capture's truth file when it has no ideal target."""
    if "ideal_T" not in tc.truth:
        raise SystemExit(f"{truth_dir(tc.session) / tc.capture.name}.npz: no ideal_T; re-render the session "
                         "with this hzsr (--truth)")
    return tc.truth


def emit(out: dict, df: pd.DataFrame, path: Path | None) -> None:
    """Print the summary ``out``; with ``path`` (``--json``) also write it with every per-capture row."""
    print(json.dumps(out, indent=1))
    if path:
        path.write_text(json.dumps({**out, "rows": df.to_dict(orient="records")}, indent=1, default=float))


def summarise(df: pd.DataFrame) -> dict:
    methods = [m for m in ("bicubic", "warped_ref", "blend", "fusion", "full", *VARIANTS) if f"psnr_{m}" in df]
    by_kind = {k: {m: round(float(g[f"psnr_{m}"].mean()), 3) for m in methods} for k, g in df.groupby("scene_kind")}
    by_kind["all"] = {m: round(float(df[f"psnr_{m}"].mean()), 3) for m in methods}
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
            # Three decimals: the maps' gains over these pixels are hundredths of a dB.
            regions[region] = {"captures": len(sub), **{m: round(float(sub[c].mean()), 3) for m, c in cols.items()},
                               "worst_full_minus_fusion_db": round(worst, 3)}
            weights = {w: round(float(sub[f"weight_{w}_{region}"].mean()), 4) for w in (*MAP_NAMES, "frame")
                       if f"weight_{w}_{region}" in sub}
            if weights:
                regions[region]["mean_map_weight"] = weights
    out = {"captures": len(df), "mean_psnr_y_db": by_kind, "gains": gains, "truth_regions": regions}
    if "psnr_no_maps" in df:
        whole = {m: round(float(df[f"psnr_{m}"].mean()), 3) for m in methods}
        weights = {w: round(float(df[f"weight_{w}_rest"].mean()), 4) for w in (*MAP_NAMES, "frame")}
        out["whole_view"] = {"captures": len(df), **whole, "mean_map_weight_elsewhere": weights}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="*", type=Path, help="simulated sessions with truth (default: the pinned ones)")
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    ap.add_argument("--ablation", action="store_true", help="also run with each map switched off")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a pipeline config field")
    ap.add_argument("--json", type=Path, help="write the summary and per-capture rows here")
    ap.add_argument("--kinds", nargs="+", choices=SCENE_KINDS,
                    help="only captures of these scene kinds (a screen; the checks need all)")
    a = ap.parse_args(argv)
    if not a.sessions:
        import _data

        a.sessions = _data.sessions(_data.EVAL_SEEDS)
    df = run(a.sessions, a.ckpt, a.ablation, a.set, a.kinds)
    emit(summarise(df), df, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
