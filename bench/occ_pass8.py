"""Maps pass 8 (issue 18 item 4): `M_occ` for two alike cameras, the matcher of each view.

`PYTHONPATH=. python bench/occ_pass8.py --seeds 2024 2025 2026 2027 2028 --middlebury > out.json`

Each candidate is `stereo_occlusion.alike_fold` (the map `qa check` uses for main T vs the
reference T, and, carried through main T, for the W crop vs the reference T,
`hidden_through_the_ts`) with OpenCV's SGBM mode set for SRC's disparity (`SGBM_MODE`) and REF's
(`ref_mode`); figures are pooled over a seed's 12 captures at 640x480 as `bench/qa.py --part
accuracy` pools them (`bench/occ_pass7.py`'s scoring; `maps_pass_7` reproduces that part's
`alike_fold` and `ref_T.hidden_with_baseline`, the shipped map; `shipped` below, the pass's
choice, is that part's `alike_fold_maps_pass_8_option`: not shipped, over the 12 MP budget). Candidates
(docs/qa.md, "maps pass 8"):

- `maps_pass_7`: the 3-way single pass for both views (main's map before this pass, and after it).
- `shipped`: REF's disparity by full 8-path SGM (`MODE_HH`), SRC's by the 3-way pass (the pass's
  choice, named as on its branch; measured, not shipped).
- `hh_both`: full SGM for both views (twice the cost of `shipped`'s extra).
- `src_hh`: full SGM for SRC alone.
- `hh4_both`, `sgbm5_both`: OpenCV's 4-path full SGM and 5-direction single pass for both views.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

import hzsr.qa.stereo_occlusion as so

sys.path.insert(0, str(Path(__file__).resolve().parent))
import occ_pass7  # noqa: E402  (the maps passes' shared scoring)

R3, HH = cv2.STEREO_SGBM_MODE_SGBM_3WAY, cv2.STEREO_SGBM_MODE_HH
# name: (SRC's mode, REF's mode)
MODES = {"shipped": (R3, HH), "maps_pass_7": (R3, R3), "hh_both": (HH, HH), "src_hh": (HH, R3),
         "hh4_both": (cv2.STEREO_SGBM_MODE_HH4, cv2.STEREO_SGBM_MODE_HH4),
         "sgbm5_both": (cv2.STEREO_SGBM_MODE_SGBM, cv2.STEREO_SGBM_MODE_SGBM)}


@contextmanager
def _src_mode(mode: int):
    """``stereo_occlusion.SGBM_MODE`` (SRC's matcher) set to ``mode`` while the context lasts."""
    old = so.SGBM_MODE
    so.SGBM_MODE = mode
    try:
        yield
    finally:
        so.SGBM_MODE = old


def _patched_alike_fold():
    """``so.alike_fold`` that reads a ``src_mode`` keyword (SRC's matcher) besides ``ref_mode``."""
    orig = so.alike_fold

    def fold(*a, src_mode=R3, **k):
        with _src_mode(src_mode):
            return orig(*a, **k)
    return orig, fold


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=list(occ_pass7.CALIBRATION))
    ap.add_argument("--middlebury", action="store_true")
    ap.add_argument("--only", nargs="*", default=[], help="score these candidates alone")
    a = ap.parse_args(argv)
    names = a.only or list(MODES)
    unknown = sorted(set(names) - set(MODES))
    if unknown:
        ap.error(f"--only: unknown candidate(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    # occ_pass7 scores whatever its candidates() returns, each through so.alike_fold(**kw).
    occ_pass7.candidates = lambda: {n: {"src_mode": MODES[n][0], "ref_mode": MODES[n][1]} for n in names}
    orig, fold = _patched_alike_fold()
    so.alike_fold = fold
    try:
        out: dict = {"benchmark": "occ_pass8", "candidates": {n: list(MODES[n]) for n in names}, "seeds": {}}
        if a.middlebury:
            mb = occ_pass7.middlebury_figures()
            mb.pop("where_the_truly_hidden_pixels_lie", None)
            out["middlebury"] = mb
        with tempfile.TemporaryDirectory() as tmp:
            for s in a.seeds:
                out["seeds"][str(s)] = occ_pass7.seed_figures(s, Path(tmp))
    finally:
        so.alike_fold = orig
    # The choice rule of maps passes 5-7: the mean F1 of both pairings over the calibration seeds.
    cal = [str(s) for s in occ_pass7.CALIBRATION if str(s) in out["seeds"]]
    if cal:
        out["calibration_mean_f1"] = {n: round(float(np.mean(
            [occ_pass7._f1(out["seeds"][s][p][n]) for s in cal for p in ("main_T_vs_ref_T", "w_crop_vs_ref_T")])), 3)
            for n in names}
    return out


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(), indent=2) + "\n")
