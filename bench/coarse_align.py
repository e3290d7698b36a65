"""Coarse alignment against the simulator's true flow: how often does it move the framing wrongly?

For every capture of the given simulated sessions (rendered with ``--truth``), runs the
pipeline's coarse alignment (``hzsr.baseline_model.align.coarse_align``) with the capture's
metadata and compares its shift ``d`` (``REF(x + d) ~ I_src(x)``, T pixels) with the true flow
from the intrinsics' W crop into the reference (``<session>.truth/<id>.npz: flow_ref_T``).

A capture's framing is **wrong** when ``d`` lies further than ``tol_px`` from every true
displacement between the 5th and 95th percentile of the true flow (a scene with near and far
layers has a range of right answers). Two variants run on the same captures, paired:

- ``plain``: keypoints matched at T's scale and any shift used, however few its inliers (the
  shipped behaviour before issue 20);
- ``optical_only``: matched at W's optical scale, any shift used;
- ``optical`` (shipped): W's optical scale, and a shift with fewer than ``min_inliers`` inliers is
  kept only if it makes the images' structures agree better than the intrinsics' framing
  (``d = 0``), which it falls back to otherwise, with a warning.

The intrinsics-only framing (``d = 0``) is the simplest alternative and is scored too.

Usage: ``python bench/coarse_align.py [SESSION ...] [--tol-px 8] [--json OUT]``. Without
sessions it uses the pinned ones of docs/model.md (``bench/_data.py``: seeds 11-14, 24 captures,
640x480, rendered with ``--truth --textures train`` on first use).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from hzsr.baseline_model.align import camera_geometry, coarse_align
from hzsr.qa.config import QAConfig
from hzsr.sim.truth import truth_dir

VARIANTS = {
    "plain": {"optical": False, "min_inliers": 0},  # before issue 20
    "optical_only": {"min_inliers": 0},  # W's optical scale, any shift used
    "optical": {},  # shipped: optical scale + inlier gate + photometric check
}


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def framing_error(d: tuple[float, float], flow: np.ndarray, valid: np.ndarray) -> float:
    """Distance (T px) from ``d`` to the box of plausible true displacements (5th-95th pct)."""
    f = flow[valid]
    if len(f) < 100:
        return float("nan")
    lo, hi = np.percentile(f, 5, axis=0), np.percentile(f, 95, axis=0)
    dd = np.asarray(d, np.float64)
    gap = np.maximum(0.0, np.maximum(lo - dd, dd - hi))
    return float(np.hypot(*gap))


def run(sessions: list[Path], tol_px: float) -> dict:
    cfg = QAConfig()
    rows = []
    for sess in sessions:
        for cap in sorted((sess / "captures").iterdir()):
            tnpz = truth_dir(sess) / f"{cap.name}.npz"
            if not tnpz.is_file():
                continue  # sync-board captures carry timing truth only
            truth = np.load(tnpz)
            meta = json.loads((cap / "capture.json").read_text())
            w, ref = _rgb(cap / "main_W.jpg"), _rgb(cap / "ref_T.jpg")
            geom = camera_geometry(meta, (w.shape[1], w.shape[0]), (ref.shape[1], ref.shape[0]))
            row = {"capture": f"{sess.name}/{cap.name}", "scene_kind": meta.get("scene_kind")}
            for name, kw in VARIANTS.items():
                _, _, shift, _ = coarse_align(w, ref, geom, cfg, **kw)
                row[f"err_{name}"] = framing_error((shift.dx, shift.dy), truth["flow_ref_T"], truth["valid_ref_T"])
                row[f"inliers_{name}"] = shift.inliers
            row["err_intrinsics"] = framing_error((0.0, 0.0), truth["flow_ref_T"], truth["valid_ref_T"])
            rows.append(row)
    out = {"tol_px": tol_px, "captures": len(rows)}
    for name in (*VARIANTS, "intrinsics"):
        errs = np.array([r[f"err_{name}"] for r in rows])
        wrong = [r["capture"] for r, e in zip(rows, errs, strict=True) if e > tol_px]
        out[name] = {"wrong": len(wrong), "wrong_captures": wrong,
                     "median_err_px": float(np.nanmedian(errs)), "max_err_px": float(np.nanmax(errs))}
    out["rows"] = rows
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="*", type=Path, help="simulated sessions with truth (default: the pinned ones)")
    ap.add_argument("--tol-px", type=float, default=8.0)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    if not a.sessions:
        import _data

        a.sessions = _data.sessions(_data.TRAIN_SEEDS)
    res = run(a.sessions, a.tol_px)
    summary = {k: v for k, v in res.items() if k != "rows"}
    print(json.dumps(summary, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
