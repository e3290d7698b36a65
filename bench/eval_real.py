"""The pipeline on real photographs with a known target (issue 20, item 5), beside bicubic.

No file is downloaded: both pairs come from what installed packages ship, and neither photograph
is in any simulated texture pool (``hzsr.sim.textures.EXCLUDED``).

**middlebury** (``skimage.data.stereo_motorcycle()``, Middlebury 2014 *Motorcycle*, rectified,
741x500, true left disparity): a real stereo pair with real parallax and real occlusions.

- *reference* (T of the second phone): the right view, as shipped, at full resolution;
- *target*: the true left view at full resolution;
- *source* (the main phone's W): what a wide camera of focal ratio 2 sees of the left view. The
  left view is blurred (optics and pixel integration, Gaussian ``sigma = BLUR_T_PX`` T px),
  resampled onto a 741x500 W frame whose centred crop of half the size is the left view
  (``tele_crop_rect`` of ``pinhole_pair(ratio=2)``: downscaled by 2; outside that crop the left
  view is mirrored, a stand-in for the wider field of view), given sensor noise
  (``NOISE_DN``, seeded) and JPEG-compressed (quality ``JPEG_QUALITY``);
- the pipeline runs with ``focal_ratio=2`` (``hzsr model infer --focal-ratio 2``: no metadata);
  it upsamples W's crop (bicubic, ``I_src``) and fuses the reference into it.

The same pair at the method's own zoom (``METHOD_RATIO`` 5: a phone's 1x W and 5x T, the focal
ratio of the simulator and of the shipped network) and the sweep ``RATIO_SWEEP`` 2..5: W is then
the left view downscaled ``ratio`` times, with the same blur per *W* pixel (``BLUR_W_PX``, so
``BLUR_W_PX * ratio`` T px: 1.2 at ratio 2, the pair above), and the pipeline runs with
``focal_ratio=ratio``. Each ratio also records what the pipeline does *without* ``--focal-ratio``
(``geometry_source.resolve_geometry`` from the images alone): the geometry it found and whether
it used the reference.

**grace_hopper** (matplotlib's ``grace_hopper.jpg``; the pair of
``tests/baseline_model/test_geometry_source.py``): W the whole photograph at half resolution, T an
off-centre half of it at the same pixel count, both with sensor noise; target: T's field of view
of the original photograph. No parallax (one photograph), so it checks fusion and geometry only.

Scores: Y PSNR (dB) inside T's field of view (eroded 8 px) on the pipeline's ``I_src`` grid, the
target colour-matched to ``I_src`` (as ``bench/eval_truth.py`` does), for ``bicubic``,
``warped_ref``, ``blend`` (``evaluate.no_network_blend_y``), ``fusion`` (UNet, no blending),
``full``, and on the Middlebury pair ``true_warp`` (the reference warped by the *true* disparity,
``bicubic`` where it has no pixel: what a perfect flow would give) -- overall and on the truly
occluded pixels (a left pixel whose right match is out of frame, or hidden behind a nearer pixel
by a z-buffer on the true disparity, as ``bench/qa.py --part middlebury``).

Usage::

    python bench/eval_real.py [--ckpt CKPT] [--set KEY=VALUE ...] [--ablation] [--json OUT]

Goal (issue 20): on the real stereo pair, full >= bicubic + 2 dB; judged at ratio 2 (the pair
above) and at the method's ratio 5, and stated for every ratio of the sweep.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _stereo
import cv2
import numpy as np

from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.color import luma, match_colour
from hzsr.baseline_model.evaluate import no_network_blend_y, psnr
from hzsr.baseline_model.ideal_target import onto_src_grid
from hzsr.baseline_model.pipeline import HZSRPipeline
from hzsr.core.geometry import CropRect, tele_crop_rect
from hzsr.qa.pair_geometry import pinhole_pair

FOCAL_RATIO = 2.0
BLUR_T_PX = 1.2  # sigma of W's optics + 2x pixel integration, in T (= target) pixels
NOISE_DN = 2.0  # sensor noise of W, sigma in 8-bit units
JPEG_QUALITY = 90
SEED = 7
GOAL_DB = 2.0
SWEEP_BLUR_T_PX = (0.6, 2.0, 3.0)  # softer and sharper W than BLUR_T_PX, reported beside it
METHOD_RATIO = 5.0  # the method's zoom: the simulator's phone and the shipped network's training ratio
RATIO_SWEEP = (2.0, 3.0, 4.0, 5.0)  # focal ratios the pair is degraded to (and the pipeline told)
BLUR_W_PX = BLUR_T_PX / FOCAL_RATIO  # W's own blur per W pixel, held across RATIO_SWEEP
METHODS = ("bicubic", "warped_ref", "blend", "fusion", "full")


def degrade_to_wide(view: np.ndarray, ratio: float = FOCAL_RATIO, seed: int = SEED,
                    blur_t_px: float = BLUR_T_PX) -> tuple[np.ndarray, CropRect]:
    """The W frame (same pixel count as ``view``) whose centred T crop is ``view`` seen ``ratio``
    times wider: blurred, resampled, noisy, JPEG-compressed. Returns ``(W, crop rect)``."""
    h, w = view.shape[:2]
    k_w, k_t = pinhole_pair((w, h), (w, h), ratio=ratio)
    rect = tele_crop_rect(k_w, k_t, (w, h), (w, h))
    soft = cv2.GaussianBlur(view, (0, 0), blur_t_px)
    # W pixel -> T pixel is inv(crop_to_w); warpAffine with that matrix samples T at each W pixel.
    t_of_w = np.linalg.inv(rect.crop_to_w())[:2]
    wide = cv2.warpAffine(soft, t_of_w, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT_101)
    rng = np.random.default_rng(seed)
    noisy = np.clip(wide + rng.normal(0, NOISE_DN, wide.shape), 0, 255).astype(np.uint8)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(noisy, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return cv2.cvtColor(cv2.imdecode(jpg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), rect


def true_occlusion(disp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(occluded, known)`` of the left view: no right pixel sees it (out of frame, or hidden
    behind a pixel nearer by more than 1 px of disparity); ``known`` where the disparity is."""
    hidden, inframe, known = _stereo.visibility(disp)
    return (known & ~inframe) | hidden, known


def score_pair(pipe: HZSRPipeline, w: np.ndarray, ref: np.ndarray, target: np.ndarray, rect: CropRect,
               focal_ratio: float, regions: dict[str, np.ndarray] | None = None,
               more: dict[str, np.ndarray] | None = None,
               ablation: dict[str, HZSRPipeline] | None = None) -> dict:
    """PSNRs of every method against ``target`` (on the truth rect ``rect``'s T grid).

    With ``ablation`` (``--ablation``: the pipelines ``full`` and ``no_denoise`` of
    ``eval_truth.VARIANTS``), also every variant re-blended from the same alignment and network
    output, and each map's mean term in ``M_blend``.
    """
    res = pipe.run(w, ref, None, extras=("bicubic", "warped_ref", "fusion"), focal_ratio=focal_ratio)
    al = res.alignment
    h, wd = al.src.shape[:2]
    inside = onto_src_grid(np.ones(target.shape[:2], np.uint8), rect, al.rect, cv2.INTER_NEAREST) > 0
    inside = cv2.erode(inside.astype(np.uint8), np.ones((17, 17), np.uint8)) > 0
    tgt = onto_src_grid(target, rect, al.rect, cv2.INTER_LINEAR)
    gain, offset = match_colour(tgt, al.src, inside)
    y_t = luma(np.clip(tgt.astype(np.float32) / 255.0 * gain + offset, 0, 1))
    ys = {"bicubic": luma(res.extras["bicubic"]), "warped_ref": luma(res.extras["warped_ref"]),
          "fusion": luma(res.extras["fusion"]), "full": luma(res.final)}
    ys["blend"] = no_network_blend_y(al, ys["bicubic"], ys["warped_ref"])
    if ablation is not None:
        import eval_truth

        for name, (use, denoise) in eval_truth.VARIANTS.items():
            p = ablation["full" if denoise else "no_denoise"]
            ys[name] = luma(p.fuse(eval_truth.variant_alignment(al, pipe.cfg, use)).final)
    for name, img in (more or {}).items():  # on the truth grid; colour-matched like the reference
        on = onto_src_grid(img, rect, al.rect, cv2.INTER_LINEAR)
        g, o = match_colour(on, al.src, inside)
        ys[name] = luma(np.clip(on.astype(np.float32) / 255.0 * g + o, 0, 1))
    masks = {"all": inside}
    for name, m in (regions or {}).items():
        masks[name] = inside & (onto_src_grid(m.astype(np.uint8), rect, al.rect, cv2.INTER_NEAREST) > 0)
    out = {"used_reference": bool(al.use_reference), "geometry_source": al.geometry_source,
           "coarse_shift_t_px": [round(float(al.rect.x0 - rect.x0) * rect.scale, 2),
                                 round(float(al.rect.y0 - rect.y0) * rect.scale, 2)],
           "warnings": list(al.warnings), "pixels": {k: int(m.sum()) for k, m in masks.items()}}
    for region, m in masks.items():
        out[f"psnr_y_db_{region}"] = {k: round(psnr(y, y_t, m), 3 if ablation else 2) for k, y in ys.items()}
    if ablation is not None:
        import eval_truth

        terms = eval_truth.map_weights(al, pipe.cfg, (h, wd))
        out["flow_level"] = al.flow_level
        out["mean_map_term"] = {region: {k: round(float(t[m].mean()), 4) for k, t in terms.items()}
                                for region, m in masks.items()}
    a = out["psnr_y_db_all"]
    out["full_minus_bicubic_db"] = round(a["full"] - a["bicubic"], 2)
    out["full_minus_blend_db"] = round(a["full"] - a["blend"], 2)
    assert (h, wd) == y_t.shape
    return out


def middlebury(pipe: HZSRPipeline, blur_t_px: float = BLUR_T_PX, ratio: float = FOCAL_RATIO, *,
               no_metadata: bool = False, ablation: dict[str, HZSRPipeline] | None = None) -> dict:
    """The Middlebury pair degraded to a W of focal ``ratio`` (blur ``blur_t_px`` T px), scored.

    ``ratio`` is passed on, never read from the module global at call time: W and the pipeline's
    geometry must agree (a W made at ratio 2 run as ratio 5 frames a fifth of the view and loses
    the reference for a reason that has nothing to do with the pair). ``no_metadata``: also align
    once without the focal ratio (``without_focal_ratio`` in the result); ``ablation``: as
    ``score_pair``'s.
    """
    import skimage.data as data

    left, right, disp = data.stereo_motorcycle()
    w, rect = degrade_to_wide(left, ratio=ratio, blur_t_px=blur_t_px)
    occluded, known = true_occlusion(disp)
    h, wd = disp.shape
    xs, ys = np.meshgrid(np.arange(wd, dtype=np.float32), np.arange(h, dtype=np.float32))
    d = np.where(known, disp, 0).astype(np.float32)
    warped = cv2.remap(right, xs - d, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Where the true warp has no pixel: the source's own upsampling (bicubic of the W crop).
    bic = cv2.warpAffine(w, rect.crop_to_w()[:2], (wd, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_REPLICATE)
    true_warp = np.where((occluded | ~known)[..., None], bic, warped)
    r = score_pair(pipe, w, right, left, rect, ratio, {"occluded": occluded}, {"true_warp": true_warp},
                   ablation=ablation)
    if no_metadata:  # what a user without --focal-ratio gets: geometry from the images alone
        al = pipe.align(w, right, None)
        r["without_focal_ratio"] = {"geometry_source": al.geometry_source,
                                    "focal_ratio": round(float(al.rect.scale), 3),
                                    "used_reference": bool(al.use_reference)}
    return {"pair": "skimage.data.stereo_motorcycle (Middlebury 2014 Motorcycle): left degraded to W, right = "
                    "reference, left = target", "size": [wd, h],
            "degradation": {"focal_ratio": ratio, "blur_sigma_t_px": blur_t_px, "noise_dn": NOISE_DN,
                            "jpeg_quality": JPEG_QUALITY, "seed": SEED},
            "true_occluded_frac": round(float(occluded[known].mean()), 4), **r,
            "goal": {"full_minus_bicubic_db": GOAL_DB},
            "verdict": "pass" if r["full_minus_bicubic_db"] >= GOAL_DB else "fail"}


def grace_hopper(pipe: HZSRPipeline, ablation: dict[str, HZSRPipeline] | None = None) -> dict:
    """The 2x cut pair of the geometry tests: W whole at half size, T an off-centre half."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as im:
        img = np.asarray(im.convert("RGB"))
    h0, w0 = img.shape[:2]
    x0, y0 = 140, 100
    w = cv2.resize(img, (w0 // 2, h0 // 2), interpolation=cv2.INTER_AREA)
    truth = cv2.resize(img[y0:y0 + h0 // 2, x0:x0 + w0 // 2], (w0 // 2, h0 // 2), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(3)
    t = np.clip(truth + rng.normal(0, 2.0, truth.shape), 0, 255).astype(np.uint8)
    w = np.clip(w + rng.normal(0, 2.0, w.shape), 0, 255).astype(np.uint8)
    rect = CropRect(x0 / 2, y0 / 2, w0 / 4, h0 / 4, w0 // 2, h0 // 2)
    r = score_pair(pipe, w, t, truth, rect, FOCAL_RATIO, ablation=ablation)
    return {"pair": "matplotlib grace_hopper.jpg cut into a 2x W/T pair (T 70, 50 W px off centre), no parallax",
            "size": [w0 // 2, h0 // 2], **r}


def run(ckpt: str | None, overrides: list[str] | None = None, ablation: bool = False) -> dict:
    """Every pair and sweep; ``overrides``: ``key=value`` changes to the pipeline config (``--set``);
    ``ablation``: also the blending ablation of ``eval_truth.VARIANTS`` on every pair (3 decimals)."""
    import dataclasses

    from eval_truth import pipeline_config_with

    lc = load_model(ckpt)
    pipe = HZSRPipeline(lc.model, pipeline_config_with(lc, overrides))
    pipes = {"full": pipe, "no_denoise": HZSRPipeline(lc.model, dataclasses.replace(
        pipe.cfg, denoise_strength=0.0))} if ablation else None
    out = {"checkpoint": str(lc.path), "middlebury": middlebury(pipe, ablation=pipes),
           "grace_hopper": grace_hopper(pipe, ablation=pipes)}
    # How the gain depends on how soft W is (the goal is judged at BLUR_T_PX only).
    out["middlebury_blur_sweep"] = {}
    for sigma in SWEEP_BLUR_T_PX:
        r = middlebury(pipe, sigma)["psnr_y_db_all"]  # the sweep reads four methods, no variant
        out["middlebury_blur_sweep"][str(sigma)] = {k: r[k] for k in ("bicubic", "blend", "full", "true_warp")}
    # The method's zoom, and the sweep of focal ratios (same blur per W pixel); the goal is judged at each.
    out["middlebury_ratio_sweep"] = {}
    for ratio in RATIO_SWEEP:
        r = middlebury(pipe, BLUR_W_PX * ratio, ratio, no_metadata=True, ablation=pipes)
        if ratio == METHOD_RATIO:
            out["middlebury_method_ratio"] = r
        if ablation:
            out.setdefault("middlebury_ratio_ablation", {})[f"{ratio:g}"] = {
                k: r[k] for k in ("psnr_y_db_all", "psnr_y_db_occluded", "mean_map_term", "flow_level", "pixels")}
        out["middlebury_ratio_sweep"][f"{ratio:g}"] = {
            **{k: r["psnr_y_db_all"][k] for k in ("bicubic", "warped_ref", "blend", "fusion", "full", "true_warp")},
            "blur_sigma_t_px": round(BLUR_W_PX * ratio, 3), "used_reference": r["used_reference"],
            "coarse_shift_t_px": r["coarse_shift_t_px"], "full_minus_bicubic_db": r["full_minus_bicubic_db"],
            "verdict": r["verdict"], "without_focal_ratio": r["without_focal_ratio"]}
    return out


def table_md(res: dict) -> str:
    """The ``<!-- results:real -->`` table of docs/model.md (``bench/eval.py``)."""
    cols = ["bicubic", "warped_ref", "blend", "fusion", "full"]
    m, g = res["middlebury"], res["grace_hopper"]
    lines = ["| real pair (Y PSNR, dB) | " + " | ".join(cols) + " | true-disparity warp | full - bicubic |",
             "|" + "---|" * (len(cols) + 3)]
    for label, r, region in (("Middlebury motorcycle, all pixels", m, "all"),
                             ("Middlebury motorcycle, truly occluded pixels", m, "occluded"),
                             ("grace_hopper 2x cut (no parallax)", g, "all")):
        v = r[f"psnr_y_db_{region}"]
        tw = f"{v['true_warp']:.2f}" if "true_warp" in v else "-"
        lines.append(f"| {label} | " + " | ".join(f"{v[c]:.2f}" for c in cols)
                     + f" | {tw} | {v['full'] - v['bicubic']:+.2f} |")
    sweep = res.get("middlebury_blur_sweep", {})
    if sweep:
        lines.append("")
        lines.append("| Middlebury, W blur sigma (T px) | bicubic | blend | full | true-disparity warp "
                     "| full - bicubic |")
        lines.append("|---|---|---|---|---|---|")
        rows = {str(BLUR_T_PX): {k: m["psnr_y_db_all"][k] for k in ("bicubic", "blend", "full", "true_warp")}, **sweep}
        for sigma in sorted(rows, key=float):
            v = rows[sigma]
            note = " (the pair above)" if sigma == str(BLUR_T_PX) else ""
            lines.append(f"| {sigma}{note} | {v['bicubic']:.2f} | {v['blend']:.2f} | {v['full']:.2f} | "
                         f"{v['true_warp']:.2f} | {v['full'] - v['bicubic']:+.2f} |")
    ratios = res.get("middlebury_ratio_sweep", {})
    if ratios:
        lines.append("")
        lines.append(f"| Middlebury, focal ratio (W blur {BLUR_W_PX:g} W px) | bicubic | warped_ref | blend | fusion "
                     "| full | true-disparity warp | full - bicubic | goal | without --focal-ratio |")
        lines.append("|" + "---|" * 10)
        for ratio in sorted(ratios, key=float):
            v = ratios[ratio]
            nm = v["without_focal_ratio"]
            note = " (the method's)" if float(ratio) == METHOD_RATIO else ""
            lines.append(f"| {ratio}{note} | " + " | ".join(f"{v[c]:.2f}" for c in cols)
                         + f" | {v['true_warp']:.2f} | {v['full_minus_bicubic_db']:+.2f} | {v['verdict']} | "
                         f"{nm['geometry_source']} ratio {nm['focal_ratio']:.2f}, reference "
                         f"{'used' if nm['used_reference'] else 'dropped'} |")
    lines.append("")
    lines.append(f"- **{m['verdict']}**: on the real stereo pair, full - bicubic = "
                 f"{m['full_minus_bicubic_db']:+.2f} dB (goal >= {GOAL_DB:+.1f} dB); "
                 f"reference used: {m['used_reference']}")
    mr = res.get("middlebury_method_ratio")
    if mr is not None:
        lines.append(f"- **{mr['verdict']}** at the method's focal ratio {METHOD_RATIO:g}: full - bicubic = "
                     f"{mr['full_minus_bicubic_db']:+.2f} dB (goal >= {GOAL_DB:+.1f} dB; the true-disparity warp "
                     f"{mr['psnr_y_db_all']['true_warp'] - mr['psnr_y_db_all']['bicubic']:+.2f} dB); "
                     f"reference used: {mr['used_reference']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a pipeline config field (as bench/eval_truth.py --set)")
    ap.add_argument("--json", type=Path, help="write the result here too")
    ap.add_argument("--ablation", action="store_true",
                    help="also the blending ablation (bench/eval_truth.py --ablation's variants) on every pair")
    a = ap.parse_args(argv)
    res = run(a.ckpt, a.set, a.ablation)
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        a.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
