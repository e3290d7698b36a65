"""Maps pass 7 (issue 18 item 4): `M_occ` for two alike cameras, the wide fill and the match check.

`PYTHONPATH=. python bench/occ_pass7.py --seeds 2024 2025 2026 2027 2028 --middlebury > out.json`
(blind seeds: `--seeds 2029 2030 --only shipped maps_pass_6`)

Each candidate is `stereo_occlusion.alike_fold` with other settings (the map `qa check` uses for
main T vs the reference T, and, carried through main T, for the W crop vs the reference T,
`hidden_through_the_ts`); figures are pooled over a seed's 12 captures at 640x480 as `bench/qa.py
--part accuracy` pools them (same truth and masks: `maps_pass_6` reproduces that part's
`main_T_vs_ref_T.alike_fold_before_maps_pass_7` and `ref_T.hidden_with_baseline_before_maps_pass_7`).
Candidates (docs/qa.md, "maps pass 7"):

- `maps_pass_6`: main's map before this pass (`fill_reach=0, min_residual=0`).
- `fill_R` (window 9 px): pixels the left-right check rejects take the farthest checked disparity within R px
  along the baseline (`_fill_background`'s reach), instead of the nearer of their two neighbours'.
- `residual_T` (window 9 px): a flag is kept only where the lumas differ by more than T grey levels at SRC's
  final disparity (`match_residual`, 3x3 mean).
- `fill_R_residual_T` (the holes' window 9 px, maps pass 5's), and `..._window_W`: both, the window at
  W px. `shipped` is `fill_32_residual_12_window_33`.
- `plain_dis_fb_over_4px` / `_8px`: the simplest alternative (DIS's forward-backward error).

`--middlebury` scores the same candidates on `skimage.data.stereo_motorcycle` as `--part middlebury`
does, and breaks the truly hidden pixels the shipped map and maps pass 6's miss down by where they
lie (`middlebury_misses`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

import hzsr.qa.stereo_occlusion as so
from hzsr.qa.config import QAConfig
from hzsr.qa.maps import fb_error

sys.path.insert(0, str(Path(__file__).resolve().parent))
from occ_pass6 import _add, _f1, middlebury_pair, middlebury_scored, registered_captures  # noqa: E402  (the maps passes' shared per-capture truth)

CFG = QAConfig()
CALIBRATION = (2024, 2025)
R3 = cv2.STEREO_SGBM_MODE_SGBM_3WAY  # maps pass 8 matched the reference's disparity by full SGM; this pass by 3-way
P6 = {"fill_reach": 0, "min_residual": 0.0, "holes_window": 9}


ONLY: tuple[str, ...] = ()  # --only: these candidates alone (the blind seeds: shipped and maps_pass_6)


def candidates() -> dict[str, dict]:
    """``alike_fold`` keyword arguments of every candidate (``shipped``: the module's defaults), or of
    those named in ``ONLY``."""
    out: dict[str, dict] = {"shipped": {}, "maps_pass_6": dict(P6)}
    for r in (16, 32, 64):
        out[f"fill_{r}"] = {"fill_reach": r, "min_residual": 0.0, "holes_window": 9}
    for t in (4, 8, 12, 16):
        out[f"residual_{t}"] = {"fill_reach": 0, "min_residual": float(t), "holes_window": 9}
    for r, t in ((32, 8), (32, 12), (32, 16), (64, 12)):
        out[f"fill_{r}_residual_{t}"] = {"fill_reach": r, "min_residual": float(t), "holes_window": 9}
    for r, t, w in ((32, 12, 17), (32, 8, 33), (32, 16, 33), (64, 12, 33), (0, 12, 33), (0, 0, 33), (32, 0, 33)):
        out[f"fill_{r}_residual_{t}_window_{w}"] = {"fill_reach": r, "min_residual": float(t), "holes_window": w}
    # Every candidate as this pass measured it (REF's disparity by the 3-way pass); "shipped" is the
    # module's defaults (maps pass 8's map since then), "maps_pass_7" this pass's shipped settings.
    out = {k: v if k == "shipped" else {**v, "ref_mode": R3} for k, v in out.items()}
    out["maps_pass_7"] = {"ref_mode": R3}
    return {k: v for k, v in out.items() if k in ONLY} if ONLY else out


def _pr(c) -> dict:
    return {"precision": round(c[0] / max(c[1], 1), 3), "recall": round(c[0] / max(c[2], 1), 3), "true_px": c[2]}


def seed_figures(seed: int, root: Path) -> dict:
    """Every candidate's precision / recall for main T vs the reference T and the W crop vs the
    reference T, pooled over the seed's 12 captures (``bench/qa.py --part accuracy``'s truth)."""
    tt: dict[str, list[int]] = {}
    wr: dict[str, list[int]] = {}
    per_capture = []
    for c in registered_captures(seed, root):
        rec, img, rb, rt, wr_mask, wr_true, t_hid, tm = c.rec, c.img, c.rb, c.rt, c.wr_mask, c.wr_true, c.t_hid, c.tm
        h, w = c.hw
        row = {"capture": rec.capture_id, "scene": rec.scene_id, "tt_true_px": int((t_hid & tm).sum()),
               "wr_true_px": int(wr_true.sum())}
        for name, kw in candidates().items():
            fold = so.alike_fold(img["main_T"], img["ref_T"], rt.shift, CFG.rig.ref_baseline_m, CFG, rt.flow_fwd,
                                 **kw)
            up = cv2.resize(fold.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
            _add(tt.setdefault(name, [0, 0, 0]), up & tm, t_hid & tm)
            pw = so.hidden_through_the_ts(fold, rb.flow_fwd, rb.hidden) & wr_mask
            _add(wr.setdefault(name, [0, 0, 0]), pw, wr_true)
            if name in ("shipped", "maps_pass_6"):
                row[name] = {"tt_tp": int((up & tm & t_hid).sum()), "tt_flagged": int((up & tm).sum()),
                             "wr_tp": int((pw & wr_true).sum()), "wr_flagged": int(pw.sum())}
        per_capture.append(row)
        e = fb_error(rt.flow_fwd, rt.flow_bwd) * rt.grid_scale
        for t in (4, 8):  # the simplest alternative, as --part accuracy's
            _add(tt.setdefault(f"plain_dis_fb_over_{t}px", [0, 0, 0]), (e > t) & tm, t_hid & tm)
        sys.stderr.write(f"seed {seed} {rec.capture_id}\n")
    return {"main_T_vs_ref_T": {k: _pr(v) for k, v in tt.items()},
            "w_crop_vs_ref_T": {k: _pr(v) for k, v in wr.items()}, "per_capture": per_capture}


def _runs_along_rows(mask: np.ndarray) -> np.ndarray:
    """Each pixel of ``mask``: the length of its run along the row (0 off the mask)."""
    out = np.zeros(mask.shape, np.int32)
    for y in range(mask.shape[0]):
        m = np.concatenate([[0], mask[y].astype(np.int8), [0]])
        d = np.diff(m)
        for a, b in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0], strict=True):
            out[y, a:b] = b - a
    return out


def middlebury_misses(left, right, disp, true_occ, m, rb, maps: dict[str, np.ndarray]) -> dict:
    """Where the truly hidden pixels lie that each map finds or misses (Middlebury, left view).

    Regions: the true strip's run length along the row (input px), the luma's texture (RMS of the
    x-derivative over 7x7, grey levels), the image's left/right 40 columns; and SGBM's checked
    disparity there (maps pass 6's pipeline up to the left-right check, on the flow grid): rejected
    by the check, accepted but more than 2 flow-grid px nearer than the truth (the near surface
    carried over the strip), or within 2 px.
    """
    h, w = disp.shape
    ys, yr, d = so.grid_lumas(left, right, rb.shift, CFG)
    g = ys.shape[1] / w
    sub = rb.flow_fwd[::4, ::4].reshape(-1, 2).astype(np.float64) * g - d
    dd = sub[:, 0]
    dd = -dd[np.isfinite(dd)]
    search = so.disparity_search(*np.percentile(dd, [0.5, 99.5]), base=so.ALIKE_SEARCH)
    pad = max(0, search[0] + search[1], -search[0])
    lp, rp = (cv2.copyMakeBorder(im, 0, 0, pad, pad, cv2.BORDER_CONSTANT, value=0) for im in (ys, yr))
    raw = so._sgbm(lp, rp, search)
    raw_r = cv2.flip(so._sgbm(cv2.flip(rp, 1), cv2.flip(lp, 1), search), 1)
    ok = so.lr_consistent(raw, raw_r, so.SGBM_LR_TOL, search[0])[:, pad:pad + ys.shape[1]]
    raw = raw[:, pad:pad + ys.shape[1]]
    ok_f = cv2.resize(ok.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    raw_f = cv2.resize(raw, (w, h), interpolation=cv2.INTER_NEAREST)
    truth_grid = np.where(np.isfinite(disp), disp, np.nan) * g + d[0]  # flow-grid px beyond the shift
    err = raw_f - truth_grid
    runs = _runs_along_rows(true_occ & m)
    gx = cv2.Sobel(cv2.cvtColor(left, cv2.COLOR_RGB2GRAY).astype(np.float32), cv2.CV_32F, 1, 0) / 8.0
    tex = np.sqrt(cv2.boxFilter(gx * gx, -1, (7, 7)))
    xs = np.repeat(np.arange(w)[None, :], h, axis=0)
    t = true_occ & m
    regions = {
        "strip_run_1_2px": (runs >= 1) & (runs <= 2), "strip_run_3_8px": (runs >= 3) & (runs <= 8),
        "strip_run_9_16px": (runs >= 9) & (runs <= 16), "strip_run_over_16px": runs > 16,
        "texture_under_3": tex < 3, "texture_3_10": (tex >= 3) & (tex < 10), "texture_over_10": tex >= 10,
        "left_or_right_40_columns": (xs < 40) | (xs >= w - 40),
        "sgbm_rejected_by_the_lr_check": ~ok_f,
        "sgbm_checked_over_2px_too_near": ok_f & (err > 2),
        "sgbm_checked_within_2px": ok_f & (np.abs(err) <= 2),
    }
    out = {}
    for name, mp in maps.items():
        mp = mp & m
        out[name] = {k: {"true_px": int((t & r).sum()),
                         "found": round(float((t & r & mp).sum() / max((t & r).sum(), 1)), 3),
                         "missed_px": int((t & r & ~mp).sum())} for k, r in regions.items()}
        out[name]["false_px"] = int((mp & ~t).sum())
    return out


def middlebury_figures() -> dict:
    """The candidates on Middlebury's motorcycle (right camera at +x), scored as ``--part middlebury``."""
    left, right, disp, true_occ, m, rb = middlebury_pair()
    out, maps = {}, {}
    for name, kw in candidates().items():
        fold = so.alike_fold(left, right, rb.shift, (1.0, 0.0), CFG, rb.flow_fwd, **kw)
        p, counts = middlebury_scored(fold, true_occ, m)
        out[name] = _pr(counts)
        if name in ("shipped", "maps_pass_6"):
            maps[name] = p
    out["where_the_truly_hidden_pixels_lie"] = middlebury_misses(left, right, disp, true_occ, m, rb, maps)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=list(CALIBRATION))
    ap.add_argument("--middlebury", action="store_true")
    ap.add_argument("--only", nargs="*", default=[], help="score these candidates alone")
    a = ap.parse_args(argv)
    unknown = sorted(set(a.only) - set(candidates()))
    if unknown:
        ap.error(f"--only: unknown candidate(s) {', '.join(unknown)}; known: {', '.join(candidates())}")
    global ONLY
    ONLY = tuple(a.only)
    out: dict = {"benchmark": "occ_pass7", "candidates": candidates(), "seeds": {}}
    if a.middlebury:
        out["middlebury"] = middlebury_figures()
    with tempfile.TemporaryDirectory() as tmp:
        for s in a.seeds:
            out["seeds"][str(s)] = seed_figures(s, Path(tmp))
    # The choice rule (maps passes 5 and 6, stated before the held-out seeds were scored): the mean
    # F1 of both pairings over the calibration seeds.
    cal = [str(s) for s in CALIBRATION if str(s) in out["seeds"]]
    if cal:
        out["calibration_mean_f1"] = {n: round(float(np.mean(
            [_f1(out["seeds"][s][p][n]) for s in cal for p in ("main_T_vs_ref_T", "w_crop_vs_ref_T")])), 3)
            for n in candidates()}
    return out


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(), indent=2) + "\n")
