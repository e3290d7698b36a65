"""The dense flow against the true flow: end-point error and what the warp it gives is worth (issue20p).

Two parts, each printing one JSON object:

- ``middlebury`` (``--ratios``, default 5): the Middlebury pair of ``bench/eval_real.py`` degraded to
  a W of each focal ratio, aligned by the pipeline (``--set`` overrides as ``eval_truth.py``); then
  the pipeline's flow and a fixed list of DIS variants on the same flow-grid images (level, blur,
  smoothness, patch size, the vertical flow zeroed), the true disparity through the flow grid
  (area down, bilinear up: how the pipeline samples every flow) and at full resolution, and
  ``--full-grid``: DIS on the full-resolution T grid. For each: end-point error in T px (mean,
  median, share over 2 px, mean |x| and |y| error) and the Y PSNR of the reference warped by it
  against the target, on the pixels the reference sees (known disparity, not truly occluded),
  inside T's field of view eroded 8 px; colour-matched as ``eval_real.py`` does.
- ``sim SESSION ...`` (``--every N``: every Nth capture): simulated captures with truth; the
  pipeline's flow and the true flow through the grid against the true flow (``flow_ref_T``) on the
  truth's pixels the reference sees, and the warps' Y PSNR against the ideal target; per capture also
  the pipeline flow's error on the pixels whose true flow is over 3 px off the frame's median (near
  layers and movers: ``eval_regions.py``'s parallax, occlusion aside).

Diagnosis only: selection belongs on the calibration sessions with ``eval_truth.py`` /
``pipeline_variants.py``; this says where the flow is wrong.

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
    """A grid flow bilinearly upsampled to ``shape`` (h, w) and scaled to its pixels."""
    h, w = shape
    return (cv2.resize(flow_g, (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(w / flow_g.shape[1]))


def through_grid(flow: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
    """A full-resolution flow carried through the flow grid (area down, bilinear up)."""
    gh, gw = grid_hw
    h, w = flow.shape[:2]
    return up(cv2.resize(flow, (gw, gh), interpolation=cv2.INTER_AREA) * np.float32(gw / w), (h, w))


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
        r = {"w_px_on_grid": round(ratio * g, 3), "pipeline_level": al.flow_level,
             "pipeline_blur_grid_px": al.flow_blur_px, "pipeline": score(up(al.flow_fwd, (hs, ws))),
             "true_full_res": score(np.where(good[..., None], truth, 0)),
             "true_through_grid": score(through_grid(truth, al.grid_shape))}
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


def sim(pipe: HZSRPipeline, sessions: list[Path], every: int) -> dict:
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
        row = {"capture": f"{tc.session.name}/{tc.capture.name}", "kind": tc.kind, "level": al.flow_level}
        for name, f in (("pipeline", up(al.flow_fwd, (hs, ws))),
                        ("true_through_grid", through_grid(truth, al.grid_shape)),
                        ("true_full_res", np.where(good[..., None], truth, 0))):
            row[name] = scores(f, truth, good, al.ref, al.src, tr.y)
        # The near layers and movers: the true flow more than 3 px off the frame's median (eval_regions' parallax).
        med = np.median(truth[good], axis=0)
        par = good & (np.linalg.norm(truth - med, axis=2) > 3.0)
        row["parallax_frac"] = round(float(par.sum() / max(good.sum(), 1)), 4)
        row["parallax_pipeline_epe_mean"] = (round(float(np.linalg.norm(up(al.flow_fwd, (hs, ws)) - truth, axis=2)[par]
                                                          .mean()), 3) if par.any() else None)
        rows.append(row)
    names = ("pipeline", "true_through_grid", "true_full_res")
    mean = {n: {k: round(float(np.mean([r[n][k] for r in rows])), 3) for k in rows[0][n]} for n in names}
    return {"captures": len(rows), "mean": mean, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", nargs="?", default="middlebury", choices=("middlebury", "sim"))
    ap.add_argument("sessions", nargs="*", type=Path, help="sim: simulated sessions with truth")
    ap.add_argument("--ratios", default="5", help="middlebury: comma-separated focal ratios")
    ap.add_argument("--full-grid", action="store_true", help="middlebury: also DIS on the full-resolution grid")
    ap.add_argument("--every", type=int, default=1, help="sim: every Nth capture")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a pipeline config field")
    ap.add_argument("--json", type=Path, help="write the result here too")
    a = ap.parse_args(argv)
    lc = load_model(None)
    pipe = HZSRPipeline(lc.model, pipeline_config_with(lc, a.set))
    if a.part == "middlebury":
        res = middlebury(pipe, [float(r) for r in a.ratios.split(",")], a.full_grid)
    else:
        if not a.sessions:
            ap.error("sim: give one or more sessions")
        res = sim(pipe, a.sessions, max(1, a.every))
    text = json.dumps(res, indent=1)
    print(text)
    if a.json:
        a.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
