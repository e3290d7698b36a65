"""The dense flow against the true flow: end-point error and what the warp it gives is worth (issue20p).

Two parts, each printing one JSON object:

- ``middlebury`` (``--ratios``, default 5): the Middlebury pair of ``bench/eval_real.py`` degraded to
  a W of each focal ratio, aligned by the pipeline (``--set`` overrides as ``eval_truth.py``); then
  the pipeline's flow and a fixed list of DIS variants on the same flow-grid images (level, blur,
  smoothness, patch size, the vertical flow zeroed), the true disparity through the flow grid
  (area down, bilinear up: how the pipeline samples every flow; the pixels of unknown disparity left
  out of both averages, see ``through_grid``) and at full resolution, and
  ``--full-grid``: DIS on the full-resolution T grid. For each: end-point error in T px (mean,
  median, share over 2 px, mean |x| and |y| error) and the Y PSNR of the reference warped by it
  against the target, on the pixels the reference sees (known disparity, not truly occluded),
  inside T's field of view eroded 8 px; colour-matched as ``eval_real.py`` does.
- ``sim SESSION ...`` (``--every N``: every Nth capture): simulated captures with truth; the
  pipeline's flow and the true flow through the grid (the pixels outside the truth's crop left out of the
  averages) against the true flow (``flow_ref_T``) on the
  truth's pixels the reference sees, and the warps' Y PSNR against the ideal target; per capture also
  the pipeline flow's error on the pixels whose true flow is over 3 px off the frame's median (near
  layers and movers: ``eval_regions.py``'s parallax, occlusion aside).

A diagnosis, not a selection rule: choices belong on the calibration sessions with
``eval_truth.py`` / ``pipeline_variants.py``. (Its variant table is where issue20p found its lever,
the level-1 blur; anything picked from it is in-sample on the Middlebury pair.)

Usage::

    python bench/flow_epe.py [middlebury] [--ratios 5,4,3] [--full-grid] [--set KEY=VALUE ...]
    python bench/flow_epe.py sim /tmp/cal/s31-eval /tmp/cal/s32-eval [--every 6]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_real  # noqa: E402
from eval_truth import pipeline_config_with  # noqa: E402

from hzsr.baseline_model import align as align_mod  # noqa: E402
from hzsr.baseline_model.checkpoint import load_model  # noqa: E402
from hzsr.baseline_model.color import luma, match_colour  # noqa: E402
from hzsr.baseline_model.evaluate import psnr  # noqa: E402
from hzsr.baseline_model.ideal_target import ideal_on_source, onto_src_grid  # noqa: E402
from hzsr.baseline_model.pipeline import HZSRPipeline  # noqa: E402
from hzsr.core.geometry import CropRect  # noqa: E402
from hzsr.qa.align import warp  # noqa: E402

#: DIS variants on the pipeline's flow-grid images: (name, finest level, blur grid px, smoothness, patch size)
#: (smoothness 0 / patch 0: the preset's); ``yzero``: the vertical flow set to 0 (a rectified pair's truth).
GRID_VARIANTS = (("L1", 1, 0.0, 0.0, 0), ("L0", 0, 0.0, 0.0, 0), ("L2", 2, 0.0, 0.0, 0),
                 ("L2 blur1 alpha30", 2, 1.0, 30.0, 0), ("L1 blur1", 1, 1.0, 0.0, 0), ("L1 blur2", 1, 2.0, 0.0, 0),
                 ("L1 alpha30", 1, 0.0, 30.0, 0), ("L1 patch12", 1, 0.0, 0.0, 12), ("L1 patch16", 1, 0.0, 0.0, 16),
                 ("L1 yzero", 1, 0.0, 0.0, 0))


def parse_dis_variant(text: str) -> tuple[str, dict[str, float]]:
    """``NAME:PARAM=VALUE;PARAM=VALUE`` (OpenCV DIS setters without ``set``: ``PatchStride=2``) -> (name, params).

    ``preset=ultrafast|fast|medium`` picks the preset the others go on top of (default: the pipeline's);
    ``match=1`` first gives the reference's luma the source's mean and standard deviation (a global
    brightness match: the simulator's W and T differ by ~20 DN, Middlebury's by ~1; issue20flow).
    """
    name, _, specs = text.partition(":")
    params: dict[str, float] = {}
    probe = cv2.DISOpticalFlow_create()
    for spec in (s.strip() for s in specs.split(";") if s.strip()):
        key, _, value = spec.partition("=")
        if key not in ("preset", "match") and not hasattr(probe, "set" + key):
            raise ValueError(f"--dis {text!r}: {key!r} is not a DIS setter "
                             "(e.g. PatchStride, VariationalRefinementDelta)")
        params[key] = value if key == "preset" else float(value)
    return name, params


def dis_with(src_y: np.ndarray, ref_y: np.ndarray, level: int, params: dict, preset: str = "medium",
             alpha: float = 0.0) -> np.ndarray:
    """DIS ``src_y -> ref_y`` (uint8 lumas) stopped at ``level``, with OpenCV setters ``params`` on the preset.

    ``alpha`` > 0: the variational smoothness the pipeline sets where its flow stops at the blend
    maps' level or coarser (``align.dis_flows``); ``params`` go on top of it.
    """
    if params.get("match"):
        s, r = src_y.astype(np.float32), ref_y.astype(np.float32)
        r = (r - r.mean()) * (s.std() / max(float(r.std()), 1e-6)) + s.mean()
        ref_y = np.clip(r + 0.5, 0, 255).astype(np.uint8)
    d = cv2.DISOpticalFlow_create(align_mod._DIS_PRESETS[str(params.get("preset", preset))])
    d.setFinestScale(int(level))
    if alpha > 0:
        d.setVariationalRefinementAlpha(float(alpha))
    for k, val in params.items():
        if k not in ("preset", "match"):
            getattr(d, "set" + k)(type(getattr(d, "get" + k)())(val))
    return d.calc(src_y, ref_y, None)


def dis(src: np.ndarray, ref: np.ndarray, level: int, blur: float, alpha: float, patch: int) -> np.ndarray:
    """DIS (the pipeline's preset, medium) ``src -> ref`` on RGB images of one size, their lumas blurred."""
    s, r = align_mod.blurred_lumas(src, ref, blur)
    d = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    d.setFinestScale(level)
    if alpha:
        d.setVariationalRefinementAlpha(alpha)
    if patch:
        d.setPatchSize(patch)
    return d.calc(s, r, None)


def up(flow_g: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A grid flow bilinearly upsampled to ``shape`` (h, w), each component scaled by its own axis's factor.

    As ``qa.align.upsample_flow`` does: x by ``w / grid w``, y by ``h / grid h`` (the two differ by
    about 0.1% on the 512x345 grid).
    """
    h, w = shape
    gh, gw = flow_g.shape[:2]
    return cv2.resize(flow_g, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32([w / gw, h / gh])


def through_grid(flow: np.ndarray, grid_hw: tuple[int, int], known: np.ndarray | None = None) -> np.ndarray:
    """A full-resolution flow carried through the flow grid (area down, bilinear up).

    ``known`` (HxW, bool): where ``flow`` is defined (Middlebury's known disparity, the simulator's
    field of view). Unknown pixels are left out of both averages (normalised: ``resize(flow * known)
    / resize(known)`` down, the same with the grid cells that hold any known pixel up), so a hole's
    placeholder value does not leak into its neighbours: the flow comes through unchanged away from
    holes and depth edges, and what is lost is the grid's own mixing. Without ``known`` every pixel
    counts. Pixels with no known pixel within reach get 0.
    """
    gh, gw = grid_hw
    h, w = flow.shape[:2]
    to_grid = np.float32([gw / w, gh / h])
    if known is None:
        return up(cv2.resize(flow, (gw, gh), interpolation=cv2.INTER_AREA) * to_grid, (h, w))
    k = known.astype(np.float32)
    num = cv2.resize(np.ascontiguousarray(flow * k[..., None]), (gw, gh), interpolation=cv2.INTER_AREA)
    den = cv2.resize(k, (gw, gh), interpolation=cv2.INTER_AREA)
    has = (den > 1e-6).astype(np.float32)
    flow_g = np.where(has[..., None] > 0, num / np.maximum(den, 1e-6)[..., None], 0) * to_grid
    num_up = up(np.ascontiguousarray((flow_g * has[..., None]).astype(np.float32)), (h, w))
    den_up = cv2.resize(has, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(den_up[..., None] > 1e-6, num_up / np.maximum(den_up, 1e-6)[..., None], 0).astype(np.float32)


def scores(flow: np.ndarray, truth: np.ndarray, good: np.ndarray, ref: np.ndarray, src: np.ndarray,
           y_target: np.ndarray) -> dict:
    """End-point error of ``flow`` against ``truth`` on ``good`` (T px) and its warp's Y PSNR there."""
    e = np.linalg.norm(flow - truth, axis=2)[good]
    wr = warp(ref, np.ascontiguousarray(flow, np.float32))
    g, o = match_colour(wr, src, good)
    y = luma(np.clip(wr.astype(np.float32) / 255 * g + o, 0, 1))
    return {"epe_mean": round(float(e.mean()), 3), "epe_median": round(float(np.median(e)), 3),
            "over_2px": round(float((e > 2).mean()), 4),
            "x_err": round(float(np.abs(flow[..., 0] - truth[..., 0])[good].mean()), 3),
            "y_err": round(float(np.abs(flow[..., 1] - truth[..., 1])[good].mean()), 3),
            "warped_psnr_y_db": round(psnr(y, y_target, good), 2)}


def _score_against(flow: np.ndarray, *, truth: np.ndarray, good: np.ndarray, ref: np.ndarray, src: np.ndarray,
                   y_target: np.ndarray) -> dict:
    return scores(flow, truth, good, ref, src, y_target)


def middlebury(pipe: HZSRPipeline, ratios: list[float], full_grid: bool) -> dict:
    import skimage.data as data

    left, right, disp = data.stereo_motorcycle()
    occluded, known = eval_real.true_occlusion(disp)
    h0, w0 = disp.shape
    yy, xx = np.mgrid[0:h0, 0:w0].astype(np.float32)
    absolute = np.ascontiguousarray(np.dstack([xx - np.where(known, disp, 0), yy]).astype(np.float32))
    out = {}
    for ratio in ratios:
        w, rect = eval_real.degrade_to_wide(left, ratio=ratio, blur_t_px=eval_real.BLUR_W_PX * ratio)
        al = pipe.align(w, right, None, focal_ratio=ratio)
        hs, ws = al.src.shape[:2]
        inside = onto_src_grid(np.ones((h0, w0), np.uint8), rect, al.rect, cv2.INTER_NEAREST) > 0
        inside = cv2.erode(inside.astype(np.uint8), np.ones((17, 17), np.uint8)) > 0
        tgt = onto_src_grid(left, rect, al.rect, cv2.INTER_LINEAR)
        gain, off = match_colour(tgt, al.src, inside)
        y_t = luma(np.clip(tgt.astype(np.float32) / 255 * gain + off, 0, 1))
        ys, xs = np.mgrid[0:hs, 0:ws].astype(np.float32)
        truth = onto_src_grid(absolute, rect, al.rect, cv2.INTER_NEAREST) - np.dstack([xs, ys])
        seen = (known & ~occluded).astype(np.uint8)
        good = inside & (onto_src_grid(seen, rect, al.rect, cv2.INTER_NEAREST) > 0)
        g = al.grid_scale
        src_g, ref_g = align_mod._grid(al.src, g), align_mod._grid(al.ref, g)

        score = functools.partial(_score_against, truth=truth, good=good, ref=al.ref, src=al.src, y_target=y_t)
        # Where the disparity is unknown the truth above holds a placeholder (flow 0): it is left out of
        # the grid's averages, else its 20-60 px jump to the neighbours is charged to the grid.
        has_truth = onto_src_grid(known.astype(np.uint8), rect, al.rect, cv2.INTER_NEAREST) > 0
        r = {"w_px_on_grid": round(ratio * g, 3), "pipeline_level": al.flow_level,
             "pipeline_blur_grid_px": al.flow_blur_px, "pipeline": score(up(al.flow_fwd, (hs, ws))),
             "true_full_res": score(np.where(good[..., None], truth, 0)),
             "true_through_grid": score(through_grid(truth, al.grid_shape, has_truth))}
        for name, level, blur, alpha, patch in GRID_VARIANTS:
            f = dis(src_g, ref_g, level, blur, alpha, patch)
            if name.endswith("yzero"):
                f[..., 1] = 0
            r[name] = score(up(f, (hs, ws)))
        if full_grid:  # DIS on T's own grid; blur a quarter of a W pixel (ratio / 4 T px)
            for level in (0, 1, 2):
                for blur in (0.0, ratio / 4):
                    r[f"full-res grid L{level} blur {blur:g}"] = score(dis(al.src, al.ref, level, blur, 0.0, 0))
        out[f"{ratio:g}"] = r
    return out


def sim(pipe: HZSRPipeline, sessions: list[Path], every: int,
        variants: list[tuple[str, dict]] | None = None) -> dict:
    from _data import truth_captures

    rows = []
    for i, tc in enumerate(truth_captures(sessions)):
        if i % every:
            continue
        w = cv2.cvtColor(cv2.imread(str(tc.capture / "main_W.jpg")), cv2.COLOR_BGR2RGB)
        ref = cv2.cvtColor(cv2.imread(str(tc.capture / "ref_T.jpg")), cv2.COLOR_BGR2RGB)
        al = pipe.align(w, ref, tc.meta)
        t, cr = tc.truth, tc.truth_meta["crop_rect"]
        tr = ideal_on_source(al, t["ideal_T"], t["valid_ref_T"], t["defocus_sigma_ref_T"], cr)
        h, wd = t["ideal_T"].shape[:2]
        yy, xx = np.mgrid[0:h, 0:wd].astype(np.float32)
        fl = t["flow_ref_T"]
        absolute = np.ascontiguousarray(np.dstack([xx + fl[..., 0], yy + fl[..., 1]]))
        hs, ws = al.src.shape[:2]
        ys, xs = np.mgrid[0:hs, 0:ws].astype(np.float32)
        truth = onto_src_grid(absolute, CropRect(**cr), al.rect, cv2.INTER_NEAREST) - np.dstack([xs, ys])
        good = tr.inside & ~tr.occluded
        # Outside the truth's crop onto_src_grid's constant 0 gives a placeholder flow (-x): left out of
        # the grid's averages.
        has_truth = onto_src_grid(np.ones((h, wd), np.uint8), CropRect(**cr), al.rect, cv2.INTER_NEAREST) > 0
        row = {"capture": f"{tc.session.name}/{tc.capture.name}", "kind": tc.kind, "level": al.flow_level}
        flows = [("pipeline", up(al.flow_fwd, (hs, ws))),
                 ("true_through_grid", through_grid(truth, al.grid_shape, has_truth)),
                 ("true_full_res", np.where(good[..., None], truth, 0))]
        if variants:  # DIS with other settings on the pipeline's grid lumas, at its level and blur
            g = al.grid_scale
            s_y, r_y = align_mod.blurred_lumas(align_mod._grid(al.src, g), align_mod._grid(al.ref, g), al.flow_blur_px)
            alpha = pipe.cfg.flow_alpha if al.flow_level >= pipe.cfg.blend_maps_level else 0.0
            preset = pipe.cfg.qa.align.dis_preset
            # The variants are differences from the pipeline's flow: with no settings, DIS here is it.
            if not np.array_equal(dis_with(s_y, r_y, al.flow_level, {}, preset, alpha), al.flow_fwd):
                raise RuntimeError(f"{tc.capture}: DIS without settings is not the pipeline's flow")
            flows += [(name, up(dis_with(s_y, r_y, al.flow_level, params, preset, alpha), (hs, ws)))
                      for name, params in variants]
        for name, f in flows:
            row[name] = scores(f, truth, good, al.ref, al.src, tr.y)
        # The near layers and movers: the true flow more than 3 px off the frame's median (eval_regions' parallax).
        med = np.median(truth[good], axis=0)
        par = good & (np.linalg.norm(truth - med, axis=2) > 3.0)
        row["parallax_frac"] = round(float(par.sum() / max(good.sum(), 1)), 4)
        row["parallax_pipeline_epe_mean"] = (round(float(np.linalg.norm(up(al.flow_fwd, (hs, ws)) - truth, axis=2)[par]
                                                          .mean()), 3) if par.any() else None)
        rows.append(row)
    names = ("pipeline", "true_through_grid", "true_full_res", *(n for n, _ in variants or ()))
    mean = {n: {k: round(float(np.mean([r[n][k] for r in rows])), 3) for k in rows[0][n]} for n in names}
    by_kind = {}  # per kind: each flow's warped Y PSNR minus the pipeline's, mean and worst capture
    for kind in sorted({r["kind"] for r in rows}):
        rk = [r for r in rows if r["kind"] == kind]
        by_kind[kind] = {"n": len(rk), **{n: {
            "warp_vs_pipeline_db": round(float(np.mean([r[n]["warped_psnr_y_db"] - r["pipeline"]["warped_psnr_y_db"]
                                                         for r in rk])), 3),
            "worst_db": round(float(min(r[n]["warped_psnr_y_db"] - r["pipeline"]["warped_psnr_y_db"] for r in rk)), 3),
            "epe_mean": round(float(np.mean([r[n]["epe_mean"] for r in rk])), 3)} for n in names}}
    return {"captures": len(rows), "mean": mean, "by_kind": by_kind, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", nargs="?", default="middlebury", choices=("middlebury", "sim"))
    ap.add_argument("sessions", nargs="*", type=Path, help="sim: simulated sessions with truth")
    ap.add_argument("--ratios", default="5", help="middlebury: comma-separated focal ratios")
    ap.add_argument("--full-grid", action="store_true", help="middlebury: also DIS on the full-resolution grid")
    ap.add_argument("--every", type=int, default=1, help="sim: every Nth capture")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a pipeline config field")
    ap.add_argument("--dis", action="append", default=[], metavar="NAME:PARAM=V;PARAM=V",
                    help="sim: also DIS with these OpenCV settings at the pipeline's level and blur")
    ap.add_argument("--json", type=Path, help="write the result here too")
    a = ap.parse_args(argv)
    lc = load_model(None)
    pipe = HZSRPipeline(lc.model, pipeline_config_with(lc, a.set))
    if a.part == "middlebury":
        res = middlebury(pipe, [float(r) for r in a.ratios.split(",")], a.full_grid)
    else:
        if not a.sessions:
            ap.error("sim: give one or more sessions")
        res = sim(pipe, a.sessions, max(1, a.every), [parse_dis_variant(v) for v in a.dis])
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        a.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
