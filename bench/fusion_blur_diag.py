"""Why flow fusion (``modes_pruned2``) loses on Middlebury at a soft W: which pixels switch, and how wrong.

For each W blur of ``eval_real``'s sweep (ratio 2) and each focal ratio of its ratio sweep, the
pipeline's alignment is run with ``align.fuse_flows`` wrapped, so the very lumas, DIS flows and DIS
runner of the pipeline are recorded. The forward hypotheses (DIS, DIS from each kept keypoint mode)
are then rebuilt, and on the flow grid inside T's view, where the true disparity is known and
visible, each is scored against the *true* flow (end-point error, grid px; the true forward flow
of a grid pixel is its left-view position moved by the Middlebury disparity, on the right view).
Reported per blur: the share of pixels the per-pixel pick moves to a mode, the true EPE of DIS and
of the pick on those pixels, how many switches make the flow worse (EPE up by > 1 grid px) or
better, and the pick's box-7 cost of the chosen and of DIS's flow there.

Usage::

    python bench/fusion_blur_diag.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_real  # noqa: E402
from eval_truth import pipeline_config_with  # noqa: E402

import hzsr.baseline_model.align as align_mod  # noqa: E402
from hzsr.baseline_model import flow_fusion as ff  # noqa: E402
from hzsr.baseline_model.checkpoint import load_model  # noqa: E402
from hzsr.baseline_model.pipeline import HZSRPipeline  # noqa: E402
from hzsr.qa.align import warp  # noqa: E402


def record_alignment(pipe: HZSRPipeline, w: np.ndarray, ref: np.ndarray, ratio: float) -> tuple[object, dict]:
    """``pipe.align`` with ``fuse_flows``' arguments and result recorded."""
    rec: dict = {}
    orig = align_mod.fuse_flows

    def wrapped(src_y, ref_y, fwd, bwd, dis_from, mode, w_px):
        out = orig(src_y, ref_y, fwd, bwd, dis_from, mode, w_px)
        rec.update(src_y=src_y, ref_y=ref_y, fwd=fwd, bwd=bwd, dis_from=dis_from, mode=mode, w_px=w_px,
                   fused=out)
        return out

    align_mod.fuse_flows = wrapped
    try:
        al = pipe.align(w, ref, None, focal_ratio=ratio)
    finally:
        align_mod.fuse_flows = orig
    return al, rec


def true_grid_flow(al, rect, disp: np.ndarray, grid_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The true forward flow on the flow grid (grid px) and where it is valid (known, visible, inside)."""
    hidden, inframe, known = eval_real._stereo.visibility(disp)
    gh, gw = grid_shape
    h, wd = al.src.shape[:2]
    sx, sy = wd / gw, h / gh  # T px per grid px
    xg, yg = np.meshgrid(np.arange(gw, dtype=np.float64), np.arange(gh, dtype=np.float64))
    xs, ys = (xg + 0.5) * sx - 0.5, (yg + 0.5) * sy - 0.5  # I_src px
    m = np.linalg.inv(rect.crop_to_w()) @ al.rect.crop_to_w()  # I_src px -> left view px
    xl = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    yl = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    xi, yi = np.round(xl).astype(int), np.round(yl).astype(int)
    inside = (xi >= 8) & (xi < wd - 8) & (yi >= 8) & (yi < h - 8)
    xi, yi = np.clip(xi, 0, wd - 1), np.clip(yi, 0, h - 1)
    ok = inside & known[yi, xi] & inframe[yi, xi] & ~hidden[yi, xi]
    d = np.where(known, disp, 0.0)[yi, xi]
    # the right view is the reference as given (T-sized, same grid scale as I_src)
    fx = ((xl - d) + 0.5) / sx - 0.5 - xg
    fy = (yl + 0.5) / sy - 0.5 - yg
    # a whole grid pixel's true flow varies across a depth edge: keep pixels whose 3x3 disparity is flat
    dmax = cv2.dilate(d.astype(np.float32), np.ones((3, 3), np.uint8))
    dmin = cv2.erode(d.astype(np.float32), np.ones((3, 3), np.uint8))
    ok &= (dmax - dmin) < 2.0
    return np.dstack([fx, fy]).astype(np.float32), ok


def hypotheses(rec: dict, direction: str = "fwd") -> tuple[list[np.ndarray], list[dict], np.ndarray, np.ndarray]:
    """The forward (or backward) hypotheses ``modes_pruned2`` builds, with its clusters' facts."""
    a, b = (rec["src_y"], rec["ref_y"]) if direction == "fwd" else (rec["ref_y"], rec["src_y"])
    flow = rec[direction]
    pa, pb = ff.keypoint_matches(rec["src_y"], rec["ref_y"], rec["w_px"])
    if direction == "bwd":
        pa, pb = pb, pa
    main = np.median(flow.reshape(-1, 2), axis=0)
    clusters = ff.displacement_clusters(pa, pb, main, max_modes=2)
    s, r = ff._matched_to(a, b)
    flows, facts = [flow], []
    for m, members in clusters:
        beats = ff.mode_beats_dis(s, r, pa[members], m, flow)
        follows = ff.dis_follows_mode(pa[members], m, flow)
        facts.append({"mode": [round(float(v), 2) for v in m], "n": int(members.sum()), "beats_dis": beats,
                      "dis_follows": follows, "kept": beats or follows})
        if beats or follows:
            init = np.empty_like(flow)
            init[...] = np.float32(m)
            flows.append(rec["dis_from"](a, b, init))
    return flows, facts, s, r


def pick_costs(s: np.ndarray, r: np.ndarray, flows: list[np.ndarray], box: int = 7) -> np.ndarray:
    return np.stack([cv2.blur(np.abs(warp(r, f) - s), (box, box)) for f in flows])


def _blur_errors(s: np.ndarray, r: np.ndarray, flow: np.ndarray, sigmas: tuple[float, ...]) -> list[float]:
    """Global L1 of ``s`` against the reference warped by ``flow`` and blurred by each sigma (grid px).

    ``s`` and ``r`` as ``flow_fusion._matched_to`` gives them: normalised *before* the blur, which is
    the estimator this diagnosis ran with (biased a step or two low; ``flow_fusion.blur_matched_sigma``
    now normalises after the blur: ``results/2026-12-08_blur3/estimator_rule.md``). Kept as it was so
    that this script gives back ``diag.json``.
    """
    wr = warp(r, flow)
    return [float(np.abs((cv2.GaussianBlur(wr, (0, 0), sg) if sg else wr) - s).mean()) for sg in sigmas]


def estimate_blur(s: np.ndarray, r: np.ndarray, flow: np.ndarray) -> dict:
    """``_blur_errors`` for the sigmas up to 3 grid px, by sigma."""
    sigmas = tuple(sg for sg in ff.MATCH_SIGMAS if sg <= 3.0)
    return {f"{sg:g}": round(e, 3) for sg, e in zip(sigmas, _blur_errors(s, r, flow, sigmas), strict=True)}


def blur_matched_sigma(s: np.ndarray, r: np.ndarray, flow: np.ndarray) -> float:
    """The sigma of ``flow_fusion.MATCH_SIGMAS`` with the least ``_blur_errors`` (the diagnosis-time estimator)."""
    return ff.MATCH_SIGMAS[int(np.argmin(_blur_errors(s, r, flow, ff.MATCH_SIGMAS)))]


def epe(f: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.linalg.norm(f - t, axis=2)


def describe(rec: dict, al, rect, disp) -> dict:
    flows, facts, s, r = hypotheses(rec)
    tf, ok = true_grid_flow(al, rect, disp, rec["fwd"].shape[:2])
    # Are the clusters real layers? Each member match against the true flow at its source keypoint.
    pa, pb = ff.keypoint_matches(rec["src_y"], rec["ref_y"], rec["w_px"])
    main = np.median(rec["fwd"].reshape(-1, 2), axis=0)
    gh, gw = ok.shape
    for fact, (_m, members) in zip(facts, ff.displacement_clusters(pa, pb, main, max_modes=2),
                                      strict=True):
        xi = np.clip(np.round(pa[members, 0]).astype(int), 0, gw - 1)
        yi = np.clip(np.round(pa[members, 1]).astype(int), 0, gh - 1)
        v = ok[yi, xi]
        err = np.linalg.norm((pb - pa)[members] - tf[yi, xi], axis=1)
        fact["members_with_truth"] = int(v.sum())
        fact["members_match_true_within_3"] = round(float((err[v] < 3).mean()), 3) if v.any() else None
        fact["true_flow_at_members_median"] = [round(float(q), 2) for q in np.median(tf[yi, xi][v], axis=0)] \
            if v.any() else None
    all_err = np.linalg.norm((pb - pa) - tf[np.clip(np.round(pa[:, 1]).astype(int), 0, gh - 1),
                                                np.clip(np.round(pa[:, 0]).astype(int), 0, gw - 1)], axis=1)
    out_kp = {"matches": len(pa), "share_within_3_of_truth": round(float((all_err < 3).mean()), 3) if len(pa) else None,
              "dis_median_flow": [round(float(q), 2) for q in main],
              "coarse_shift_t_px": [round(float(al.rect.x0 - rect.x0) * rect.scale, 2),
                                    round(float(al.rect.y0 - rect.y0) * rect.scale, 2)],
              "true_flow_q05_50_95_x": [round(float(q), 2) for q in np.quantile(tf[ok][:, 0], [0.05, 0.5, 0.95])]}
    costs = pick_costs(s, r, flows)
    idx = np.argmin(costs, axis=0)
    picked = np.take_along_axis(np.stack(flows), idx[None, ..., None].repeat(2, -1), 0)[0]
    assert np.array_equal(picked, rec["fused"][0]), "rebuilt pick differs from the pipeline's"
    e = np.stack([epe(f, tf) for f in flows])
    e_dis, e_pick = e[0], epe(picked, tf)
    oracle = e.min(0)
    sw = ok & (idx > 0)
    worse = sw & (e_pick > e_dis + 1.0)
    better = sw & (e_pick < e_dis - 1.0)
    c_dis, c_pick = costs[0], costs.min(0)
    out = {
        "keypoints": out_kp, "grid": list(rec["fwd"].shape[:2]), "w_px_on_grid": round(float(rec["w_px"]), 3),
        "clusters": facts,
        "valid_px": int(ok.sum()),
        "epe_mean": {"dis": round(float(e_dis[ok].mean()), 3), "pick": round(float(e_pick[ok].mean()), 3),
                     "oracle": round(float(oracle[ok].mean()), 3)},
        "share_epe_below_1": {"dis": round(float((e_dis[ok] < 1).mean()), 4),
                              "pick": round(float((e_pick[ok] < 1).mean()), 4),
                              "oracle": round(float((oracle[ok] < 1).mean()), 4)},
        "switched_share": round(float(sw.sum() / ok.sum()), 4),
        "switched": {"epe_dis": round(float(e_dis[sw].mean()), 3) if sw.any() else None,
                     "epe_pick": round(float(e_pick[sw].mean()), 3) if sw.any() else None,
                     "worse_share_of_view": round(float(worse.sum() / ok.sum()), 4),
                     "better_share_of_view": round(float(better.sum() / ok.sum()), 4),
                     "cost_dis_worse": round(float(c_dis[worse].mean()), 3) if worse.any() else None,
                     "cost_pick_worse": round(float(c_pick[worse].mean()), 3) if worse.any() else None,
                     "cost_dis_better": round(float(c_dis[better].mean()), 3) if better.any() else None,
                     "cost_pick_better": round(float(c_pick[better].mean()), 3) if better.any() else None},
    }
    # The pick's cost margin (cost of DIS minus the chosen's), relative to DIS's cost, on the worse and
    # better switches: a margin rule would separate them only if these distributions differ.
    rel = (c_dis - c_pick) / np.maximum(c_dis, 1e-3)
    for name, m in (("worse", worse), ("better", better)):
        if m.any():
            out["switched"][f"rel_margin_{name}_q25_50_75"] = [round(float(q), 3) for q in
                                                               np.quantile(rel[m], [0.25, 0.5, 0.75])]
    # How far the chosen flow is from DIS's and from its own mode, on the switches that hurt / help.
    modes = [np.zeros(2, np.float32)] + [np.float32(f_["mode"]) for f_ in facts if f_["kept"]]
    var = {}
    d_dis = epe(picked, flows[0])
    d_mode = np.linalg.norm(picked - np.stack(modes)[idx], axis=2)
    for name, m in (("worse", worse), ("better", better)):
        if m.any():
            out["switched"][f"dist_to_dis_q25_50_75_{name}"] = [round(float(q), 2) for q in
                                                                np.quantile(d_dis[m], [0.25, 0.5, 0.75])]
            out["switched"][f"dist_to_mode_q25_50_75_{name}"] = [round(float(q), 2) for q in
                                                                 np.quantile(d_mode[m], [0.25, 0.5, 0.75])]
    out["epe_mean_per_hypothesis"] = [round(float(x[ok].mean()), 3) for x in e]
    out["chosen_share_per_hypothesis"] = [round(float((idx[ok] == j).mean()), 4) for j in range(len(flows))]
    out["worse_by_hypothesis"] = [int((worse & (idx == j)).sum()) for j in range(len(flows))]
    # The true flow's own pick cost against DIS's where DIS is wrong: does the box cost know the truth?
    c_true = pick_costs(s, r, [tf])[0]
    bad = ok & (e_dis > 2)
    out["cost_where_dis_off_by_2"] = {"true": round(float(c_true[bad].mean()), 3),
                                      "dis": round(float(c_dis[bad].mean()), 3),
                                      "share": round(float(bad.sum() / ok.sum()), 4)}
    # Pick variants on the same hypotheses (the true EPE of the fused flow).
    for sig in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0):
        rb = cv2.GaussianBlur(r, (0, 0), sig) if sig > 0 else r
        sb = s
        cc = pick_costs(sb, rb, flows)
        ii = np.argmin(cc, axis=0)
        pk = np.take_along_axis(np.stack(flows), ii[None, ..., None].repeat(2, -1), 0)[0]
        var[f"ref_blur_{sig:g}"] = round(float(epe(pk, tf)[ok].mean()), 3)
    # The mode gate: a pixel may take a mode's flow only where it is within 2 thr (6 grid px, the
    # clustering's own "explained" radius) of that mode; and the blur-matched pick (the reference
    # blurred by the sigma whose global L1 against the source under DIS's warp is least).
    sig_est = blur_matched_sigma(s, r, flows[0])
    out["blur_matched_sigma"] = sig_est
    rb = cv2.GaussianBlur(r, (0, 0), sig_est) if sig_est > 0 else r
    for gate in (None, 6.0, 3.0, 9.0):
        for name, rr in (("pick", r), ("pick_blurmatched", rb)):
            cc = pick_costs(s, rr, flows)
            if gate is not None:
                for j in range(1, len(flows)):
                    cc[j][np.linalg.norm(flows[j] - modes[j], axis=2) > gate] = np.inf
            ii = np.argmin(cc, axis=0)
            pk = np.take_along_axis(np.stack(flows), ii[None, ..., None].repeat(2, -1), 0)[0]
            var[f"{name}_gate{gate}"] = round(float(epe(pk, tf)[ok].mean()), 3)
    out["pick_variant_epe"] = var
    out["ref_blur_best_global"] = estimate_blur(s, r, flows[0])
    # Texture: the source's local gradient energy where switches help or hurt (is W flat there?).
    gx = cv2.Sobel(s, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(s, cv2.CV_32F, 0, 1)
    gm = cv2.blur(np.sqrt(gx * gx + gy * gy), (7, 7))
    for name, m in (("worse", worse), ("better", better), ("valid", ok)):
        if m.any():
            out.setdefault("src_grad_mean", {})[name] = round(float(gm[m].mean()), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="pipeline config overrides")
    ap.add_argument("--ratios", action="store_true", help="also the ratio sweep")
    a = ap.parse_args(argv)
    import skimage.data as data

    lc = load_model(None)
    pipe = HZSRPipeline(lc.model, pipeline_config_with(lc, ["flow_fusion=modes_pruned2", *(a.set or [])]))
    left, right, disp = data.stereo_motorcycle()
    res = {"blur": {}, "ratio": {}}
    points = [("blur", s, 2.0, s) for s in (0.6, 1.2, 2.0, 3.0)]
    if a.ratios:
        points += [("ratio", r, r, eval_real.BLUR_W_PX * r) for r in (3.0, 4.0, 5.0)]
    for kind, key, ratio, sigma in points:
        w, rect = eval_real.degrade_to_wide(left, ratio=ratio, blur_t_px=sigma)
        al, rec = record_alignment(pipe, w, right, ratio)
        res[kind][f"{key:g}"] = describe(rec, al, rect, disp)
        print(kind, key, json.dumps(res[kind][f"{key:g}"]), flush=True)
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
