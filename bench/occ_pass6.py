"""Maps pass 6 (issue 18 item 4): `M_occ` candidates for two alike cameras, scored beside qa's map.

`PYTHONPATH=. python bench/occ_pass6.py --seeds 2024 2025 2026 2027 2028 --middlebury > out.json`

Each candidate changes one thing in maps pass 5's `stereo_occlusion.alike_fold` (the map `qa check` uses for main T
vs the reference T, and, carried through main T, for the W crop vs the reference T,
`hidden_through_the_ts`), or in that composition; every figure is pooled over a seed's 12 captures
at 640x480 as `bench/qa.py --part accuracy` pools them (same truth, same masks: the shipped rows
reproduce that part's `main_T_vs_ref_T.alike_fold` and `ref_T.hidden_with_baseline`), and
`--middlebury` scores the same candidates on `skimage.data.stereo_motorcycle` as `--part
middlebury` does. Candidates (docs/qa.md, "maps pass 6"):

- `min_texture_T`: pixels whose luma varies along the baseline less than T grey levels (RMS of
  the x-Sobel over SGBM's block) are not trusted, like the left-right check's failures: they take
  the background's disparity (`_fill_background`), in both views. "A fill inside textureless strips."
- `dis_fill_textureless_T`: those pixels take DIS's disparity (the pipeline's own flow, projected on
  the baseline; REF's from the backward flow) instead of SGBM's.
- `holes_without_dis_consistent_T`: the map minus the pixels whose DIS forward-backward error is
  under T flow-grid px (forward-backward consistency as a veto).
- `edge_snap_K`: each disparity step moved to the strongest luma edge within K px, shrinking the
  nearer side only (foreground fattening undone along the image's own edges;
  `stereo_occlusion.edge_snap`). Shipped with K = 3 (`shipped`); `maps_pass_5` is the map before.
- `p2_by_noise_S`: SGBM's large penalty scaled by the luma's noise (Immerkaer's MAD estimate),
  `32 n^2 sigma / S` clipped to 12..128 n^2.
- `rank_5`, `clahe`: SGBM on a rank transform (5x5) or CLAHE of the lumas (contrast in dark regions).
- `wt_gated_by_tt_steps_K_S` (W crop vs reference T only): the W crop vs main T `M_occ` OR-ed into
  the map only where the two Ts' SGBM disparity spans at least S flow-grid px in a K px square
  (a hidden strip needs a depth step).

The variants replace `stereo_occlusion.sgbm_disparities` inside a context (`_variant`); the
module itself is not changed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

import hzsr.qa.stereo_occlusion as so
from hzsr.qa.align import global_translation, shift_image, warp
from hzsr.qa.config import QAConfig
from hzsr.qa.maps import fb_error
from hzsr.qa.register import register_pair

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qa import SimConfig, _captures_with_truth, _tt_truth, simulate_session  # noqa: E402

CFG = QAConfig()
CALIBRATION = (2024, 2025)
SNAP_REACHES = (2, 3, 4, 6, 8, 12)  # edge_snap's reach, swept on the calibration seeds


# -- the disparity step's variants ---------------------------------------------------------------

def texture(img: np.ndarray, block: int = so.SGBM_BLOCK) -> np.ndarray:
    """RMS of the x-derivative (Sobel / 8: grey levels per px) over a ``block`` square."""
    gx = cv2.Sobel(img.astype(np.float32), cv2.CV_32F, 1, 0, ksize=3) / 8.0
    return np.sqrt(cv2.boxFilter(gx * gx, -1, (block, block)))


def rank_transform(img: np.ndarray, win: int = 5) -> np.ndarray:
    """Each pixel's rank among its ``win`` x ``win`` neighbours, scaled to 0..255 (uint8)."""
    r = win // 2
    f = img.astype(np.int16)
    p = cv2.copyMakeBorder(f, r, r, r, r, cv2.BORDER_REPLICATE)
    h, w = img.shape
    out = np.zeros((h, w), np.int16)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy or dx:
                out += p[r + dy:r + dy + h, r + dx:r + dx + w] < f
    return np.clip(out.astype(np.float32) * (255.0 / (win * win - 1)), 0, 255).astype(np.uint8)


def noise_sigma(y: np.ndarray) -> float:
    """Immerkaer's noise estimate from the median absolute Laplacian-of-differences response."""
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    c = cv2.filter2D(y.astype(np.float32), -1, k)[1:-1, 1:-1]
    return float(np.median(np.abs(c)) * 1.4826 / 6.0)


def _checked(left, right, inside, search, p2, min_texture=0.0, pre=None):
    """``so.sgbm_disparities`` with optional preprocessing and texture gate (both views)."""
    tl, tr = left, right
    if pre is not None:
        left, right = pre(left), pre(right)
    disp = so._sgbm(left, right, search, p2)
    disp_r = cv2.flip(so._sgbm(cv2.flip(right, 1), cv2.flip(left, 1), search, p2), 1)
    ok = so.lr_consistent(disp, disp_r, so.SGBM_LR_TOL, search[0])
    ok_r = cv2.flip(so.lr_consistent(cv2.flip(disp_r, 1), cv2.flip(disp, 1), so.SGBM_LR_TOL,
                                     search[0]).astype(np.uint8), 1) > 0
    if inside is not None:
        ok &= inside
        ok_r &= inside
    if min_texture > 0:
        ok &= texture(tl) >= min_texture
        ok_r &= texture(tr) >= min_texture
    return disp, disp_r, ok, ok_r


@contextmanager
def _variant(fn: Callable) -> Iterator[None]:
    """``stereo_occlusion.sgbm_disparities`` replaced by ``fn`` while the context lasts."""
    orig = so.sgbm_disparities
    so.sgbm_disparities = fn
    try:
        yield
    finally:
        so.sgbm_disparities = orig


def _to_frame(m: np.ndarray, inside: np.ndarray, quarter: int) -> np.ndarray:
    """A map of the flow grid in ``sgbm_fold``'s frame (quarter turns; margins as ``inside``'s)."""
    if quarter == 1:
        m = cv2.rotate(m, cv2.ROTATE_90_COUNTERCLOCKWISE)
    elif quarter == -1:
        m = cv2.rotate(m, cv2.ROTATE_90_CLOCKWISE)
    pad = int(np.argmax(inside.any(0)))
    return cv2.copyMakeBorder(m, 0, 0, pad, inside.shape[1] - pad - m.shape[1], cv2.BORDER_CONSTANT, value=0)


def dis_disparities(src, fwd, bwd, shape, d, baseline) -> tuple[np.ndarray, np.ndarray]:
    """DIS's disparities on the flow grid beyond the shift ``d``: SRC's ``-F.b`` and REF's ``B.b``
    (REF's grid is REF moved by ``d``, as ``grid_lumas``)."""
    gh, gw = shape
    g = gw / src.shape[1]
    b = np.asarray(baseline, np.float64)
    b = b / np.hypot(*b)
    f = cv2.resize(fwd, (gw, gh), interpolation=cv2.INTER_LINEAR) * g - d
    bb = shift_image(cv2.resize(bwd, (gw, gh), interpolation=cv2.INTER_LINEAR) * g, float(d[0]), float(d[1])) + d
    return ((-(f[..., 0] * b[0] + f[..., 1] * b[1])).astype(np.float32),
            (bb[..., 0] * b[0] + bb[..., 1] * b[1]).astype(np.float32))


def fold_candidates(src, ref, shift, baseline, flow, flow_bwd) -> dict[str, np.ndarray]:
    """Every candidate's map (bool, flow grid) for one pair: qa's map now (``shipped``: maps pass 6,
    the edge snap), maps pass 5's (``maps_pass_5``, no snap), and each candidate changed from maps
    pass 5's map, as they were measured."""
    # Maps pass 7 added a wide fill and a photometric check to alike_fold; both off here, so every
    # row is the map this pass measured ("shipped": maps pass 6's map; bench/occ_pass7.py has pass 7's).
    args = (src, ref, shift, baseline, CFG, flow)
    # Maps pass 8 matched the reference's disparity by full 8-path SGM; the 3-way pass here, as measured.
    p6 = {"fill_reach": 0, "min_residual": 0.0, "holes_window": 9, "ref_mode": cv2.STEREO_SGBM_MODE_SGBM_3WAY}
    out = {"shipped": so.alike_fold(*args, **p6), "maps_pass_5": so.alike_fold(*args, snap=0, **p6)}
    for k in SNAP_REACHES:
        out[f"edge_snap_{k}"] = so.alike_fold(*args, snap=k, **p6)
    args5 = (*args, so.ALIKE_P2, 9, so.ALIKE_MIN_COVER, 0, 0, 0.0,  # maps pass 5's window; snap, fill, residual 0
             cv2.STEREO_SGBM_MODE_SGBM_3WAY)

    def gated(min_texture=0.0, pre=None):
        def fn(left, right, inside=None, search=(so.SGBM_MIN_DISPARITY, so.SGBM_NUM_DISPARITIES), p2=so.SGBM_P2,
               fill_reach=0, ref_mode=None):
            disp, disp_r, ok, ok_r = _checked(left, right, inside, search, p2, min_texture, pre)
            return so._fill_background(disp, ok), so._fill_background(disp_r, ok_r)
        return fn

    for name, fn in (("min_texture_1", gated(1.0)), ("rank_5", gated(pre=rank_transform)),
                     ("clahe", gated(pre=lambda y: cv2.createCLAHE(2.0, (8, 8)).apply(y)))):
        with _variant(fn):
            out[name] = so.alike_fold(*args5)
    ys, yr, d = so.grid_lumas(src, ref, shift, CFG)
    dd, ddr = dis_disparities(src, flow, flow_bwd, ys.shape, d, baseline)
    b = np.asarray(baseline, float)
    quarter = round(float(np.degrees(np.arctan2(b[1], b[0]))) / 90.0)

    def dis_fill(left, right, inside=None, search=(so.SGBM_MIN_DISPARITY, so.SGBM_NUM_DISPARITIES), p2=so.SGBM_P2,
                 fill_reach=0, ref_mode=None):
        disp, disp_r, ok, ok_r = _checked(left, right, inside, search, p2)
        d_, dr_ = so._fill_background(disp, ok), so._fill_background(disp_r, ok_r)
        low, low_r = (texture(left) < 1.0) & inside, (texture(right) < 1.0) & inside
        return (np.where(low, _to_frame(dd, inside, quarter), d_).astype(np.float32),
                np.where(low_r, _to_frame(ddr, inside, quarter), dr_).astype(np.float32))

    with _variant(dis_fill):
        out["dis_fill_textureless_1"] = so.alike_fold(*args5)
    p2 = float(np.clip(so.SGBM_P2 * noise_sigma(ys) / 1.0, 12, 128))
    out["p2_by_noise_1"] = so.alike_fold(*args, p2=p2, snap=0, **p6)
    gh, gw = out["shipped"].shape
    e = cv2.resize(fb_error(flow, flow_bwd), (gw, gh), interpolation=cv2.INTER_LINEAR) * (gw / src.shape[1])
    for t in (0.25, 0.5, 1.0):
        out[f"holes_without_dis_consistent_{t}"] = out["maps_pass_5"] & ~(e < t)
    return out


def tt_disparity(src, ref, shift, baseline, flow) -> np.ndarray:
    """SRC's checked, filled SGBM disparity as maps pass 5's ``alike_fold`` computes it (before the
    edge snap and the opening), on the flow grid (quarter-turn baselines: the rig's mount)."""
    box = {}
    orig = so.sgbm_disparities

    def keep(*a, **k):
        box["d"], dr = orig(*a, **k)
        box["inside"] = a[2]
        return box["d"], dr

    with _variant(keep):
        fold = so.alike_fold(src, ref, shift, baseline, CFG, flow, snap=0, fill_reach=0, min_residual=0.0,
                             holes_window=9, ref_mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    cols = np.nonzero(box["inside"].any(0))[0]
    d = box["d"][:, cols[0]:cols[-1] + 1]
    b = np.asarray(baseline, float)
    quarter = round(float(np.degrees(np.arctan2(b[1], b[0]))) / 90.0)
    d = {1: cv2.rotate(d, cv2.ROTATE_90_CLOCKWISE), -1: cv2.rotate(d, cv2.ROTATE_90_COUNTERCLOCKWISE)}.get(quarter, d)
    if d.shape != fold.shape:
        raise ValueError(f"tt_disparity: {d.shape} against the fold's {fold.shape}")
    return d


def wt_gated(tt_fold, tt_disp, w_to_main, wt_hidden, k: int, s: float) -> np.ndarray:
    """``hidden_through_the_ts`` with the W crop vs main T map kept only near a T-vs-T step."""
    h, w = w_to_main.shape[:2]
    ker = np.ones((k, k), np.uint8)
    step = cv2.resize(cv2.dilate(tt_disp, ker) - cv2.erode(tt_disp, ker), (w, h), interpolation=cv2.INTER_LINEAR)
    near_step = warp(step, w_to_main, border=cv2.BORDER_CONSTANT) >= s
    full = cv2.resize(tt_fold.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return (warp(full, w_to_main, border=cv2.BORDER_CONSTANT) >= 0.5) | ((wt_hidden >= 0.5) & near_step)


# -- scoring -------------------------------------------------------------------------------------

def _add(c, pred, true):
    c[0] += int((pred & true).sum())
    c[1] += int(pred.sum())
    c[2] += int(true.sum())


def _pr(c) -> dict:
    return {"precision": round(c[0] / max(c[1], 1), 3), "recall": round(c[0] / max(c[2], 1), 3)}


class Registered(NamedTuple):
    """One capture of a seed's accuracy session, registered as ``qa check`` registers it, with its truth."""

    rec: Any  # the capture's record (capture_id, scene_id)
    img: dict  # main_T, ref_T, ... (uint8)
    rb: Any  # the W crop vs main T registration (RegisteredPair)
    rt: Any  # main T vs the reference T registration, along the rig's baseline
    wr_mask: np.ndarray  # where the W crop vs reference T is scored: registered, and the truth lands in REF's frame
    wr_true: np.ndarray  # truly hidden from the reference T there
    t_hid: np.ndarray  # main T's pixels truly hidden from the reference T
    tm: np.ndarray  # where main T vs reference T is scored (truth known, registered)
    hw: tuple[int, int]  # the truth's (height, width)


def registered_captures(seed: int, root: Path) -> Iterator[Registered]:
    """The 12 captures of seed ``seed`` (``bench/qa.py --part accuracy``'s session, rendered under
    ``root``), each registered and with the truth masks the maps passes score against."""
    size = (640, 480)
    sess = simulate_session(root / f"acc{seed}", SimConfig(
        captures=12, seed=seed, size=size, truth=True, kinds=("architecture", "landscape", "portrait", "night"),
        captures_per_scene=1), progress=False)
    pcfg = replace(CFG, maps=replace(CFG.maps, defocus_gamma=CFG.maps.defocus_gamma_ref,
                                     defocus_sigma_f=CFG.maps.defocus_sigma_f_ref))
    for rec, img, crop, rect, truth in _captures_with_truth(sess, size):
        g = global_translation(crop, img["main_T"], CFG, optical_scale=1 / rect.scale)
        rb = register_pair(crop, img["main_T"], CFG, optical_scale=1 / rect.scale, shift=g,
                           baseline=CFG.rig.wt_baseline_m)
        g2 = global_translation(crop, img["ref_T"], pcfg, optical_scale=1 / rect.scale)
        r2 = register_pair(crop, img["ref_T"], pcfg, optical_scale=1 / rect.scale, shift=g2)
        flow, vis = truth["flow_ref_T"], truth["valid_ref_T"]
        h, w = flow.shape[:2]
        gx, gy = np.meshgrid(np.arange(w), np.arange(h))
        tx, ty = gx + flow[..., 0], gy + flow[..., 1]
        wr_mask = r2.valid & (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
        rt = register_pair(img["main_T"], img["ref_T"], CFG, baseline=CFG.rig.ref_baseline_m)
        t_hid, t_known = _tt_truth(truth)
        yield Registered(rec, img, rb, rt, wr_mask, ~vis & wr_mask, t_hid, t_known & rt.valid, (h, w))


def seed_figures(seed: int, root: Path) -> dict:
    """Every candidate's precision / recall for main T vs the reference T and the W crop vs the
    reference T, pooled over the seed's 12 captures (``bench/qa.py --part accuracy``'s truth)."""
    tt: dict[str, list[int]] = {}
    wr: dict[str, list[int]] = {}
    for c in registered_captures(seed, root):
        img, rb, rt, wr_mask, wr_true, t_hid, tm = c.img, c.rb, c.rt, c.wr_mask, c.wr_true, c.t_hid, c.tm
        h, w = c.hw
        cands = fold_candidates(img["main_T"], img["ref_T"], rt.shift, CFG.rig.ref_baseline_m, rt.flow_fwd,
                                rt.flow_bwd)
        for name, fold in cands.items():
            up = cv2.resize(fold.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
            _add(tt.setdefault(name, [0, 0, 0]), up & tm, t_hid & tm)
            _add(wr.setdefault(name, [0, 0, 0]), so.hidden_through_the_ts(fold, rb.flow_fwd, rb.hidden) & wr_mask,
                 wr_true)
        e = fb_error(rt.flow_fwd, rt.flow_bwd) * rt.grid_scale
        for t in (4, 8):  # the simplest alternative, as --part accuracy's
            _add(tt.setdefault(f"plain_dis_fb_over_{t}px", [0, 0, 0]), (e > t) & tm, t_hid & tm)
        tdisp = tt_disparity(img["main_T"], img["ref_T"], rt.shift, CFG.rig.ref_baseline_m, rt.flow_fwd)
        for k, s in ((17, 2), (33, 2), (33, 4)):  # on maps pass 5's fold, as measured
            _add(wr.setdefault(f"wt_gated_by_tt_steps_{k}_{s}", [0, 0, 0]),
                 wt_gated(cands["maps_pass_5"], tdisp, rb.flow_fwd, rb.hidden, k, s) & wr_mask, wr_true)
    return {"main_T_vs_ref_T": {k: _pr(v) for k, v in tt.items()},
            "w_crop_vs_ref_T": {k: _pr(v) for k, v in wr.items()}}


def middlebury_pair() -> tuple:
    """Middlebury's motorcycle (right camera at +x) as ``--part middlebury`` scores it: ``(left, right,
    disp, true_occ, m, rb)``, ``m`` the pixels scored (in both frames and registered), ``rb`` the pair's
    registration."""
    import _stereo
    import skimage.data as data

    left, right, disp = data.stereo_motorcycle()
    true_occ, inframe, _ = _stereo.visibility(disp)
    rb = register_pair(left, right, CFG, baseline=(1.0, 0.0))
    return left, right, disp, true_occ, inframe & rb.valid, rb


def middlebury_scored(fold: np.ndarray, true_occ: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """A fold map on the lumas' grid, brought to the pair's size and kept where scored, and its
    counts for a ``_pr``: [flagged and truly occluded, flagged, truly occluded]."""
    h, w = true_occ.shape
    p = (cv2.resize(fold.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5) & m
    return p, [int((p & true_occ).sum()), int(p.sum()), int((true_occ & m).sum())]


def middlebury_figures() -> dict:
    """The candidates on Middlebury's motorcycle (right camera at +x), scored as ``--part middlebury``."""
    left, right, _, true_occ, m, rb = middlebury_pair()
    return {name: _pr(middlebury_scored(fold, true_occ, m)[1])
            for name, fold in fold_candidates(left, right, rb.shift, (1.0, 0.0), rb.flow_fwd, rb.flow_bwd).items()}


def _f1(pr: dict) -> float:
    p, r = pr["precision"], pr["recall"]
    return 2 * p * r / max(p + r, 1e-9)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=list(CALIBRATION))
    ap.add_argument("--middlebury", action="store_true")
    a = ap.parse_args(argv)
    out: dict = {"benchmark": "occ_pass6", "seeds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for s in a.seeds:
            out["seeds"][str(s)] = seed_figures(s, Path(tmp))
            sys.stderr.write(f"seed {s} done\n")
    # The choice rule (stated before the held-out seeds were scored): the mean F1 of both pairings
    # over the calibration seeds.
    cal = [str(s) for s in CALIBRATION if str(s) in out["seeds"]]
    if cal:
        names = set(out["seeds"][cal[0]]["main_T_vs_ref_T"]) & set(out["seeds"][cal[0]]["w_crop_vs_ref_T"])
        out["calibration_mean_f1"] = {n: round(float(np.mean(
            [_f1(out["seeds"][s][p][n]) for s in cal for p in ("main_T_vs_ref_T", "w_crop_vs_ref_T")])), 3)
            for n in sorted(names)}
        out["w_crop_vs_ref_T_calibration_mean_f1"] = {n: round(float(np.mean(
            [_f1(out["seeds"][s]["w_crop_vs_ref_T"][n]) for s in cal])), 3)
            for n in sorted(out["seeds"][cal[0]]["w_crop_vs_ref_T"])}
    if a.middlebury:
        out["middlebury"] = middlebury_figures()
    return out


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(), indent=2) + "\n")
