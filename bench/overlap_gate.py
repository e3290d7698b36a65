"""Does the pipeline's overlap gate (``PipelineConfig.min_ncc``) separate true references from wrong ones?

For every third capture of the pinned train-pool sessions 11-14 (``bench/_data.py``), aligns the
main W with its own reference (``true``) and with the reference of a capture of another scene
(``other``, half the list away), with the gate off, and prints the structure correlation
(``align.structure_ncc``, the gate's statistic) and the keypoint inliers of each pair. A
threshold can only be lowered where every ``other`` pair stays below it.

Usage: ``python bench/overlap_gate.py [--json OUT]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import _data
import cv2
import numpy as np

from hzsr.baseline_model.align import align, camera_geometry
from hzsr.baseline_model.config import PipelineConfig


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def run() -> list[dict]:
    cfg = PipelineConfig()
    caps = [c for s in _data.TRAIN_SEEDS for c in sorted((_data.session(s) / "captures").iterdir())[::3]]
    rows = []
    for i, cap in enumerate(caps):
        meta = json.loads((cap / "capture.json").read_text())
        w = _rgb(cap / "main_W.jpg")
        for pair, rcap in (("true", cap), ("other", caps[(i + len(caps) // 2) % len(caps)])):
            ref = _rgb(rcap / "ref_T.jpg")
            geom = camera_geometry(meta, (w.shape[1], w.shape[0]), (ref.shape[1], ref.shape[0]), cfg.focal_ratio)
            al = align(w, ref, geom, cfg.qa, min_overlap=cfg.min_overlap, min_ncc=-1.0,
                       overlap_blur_w_px=cfg.overlap_blur_w_px)
            rows.append({"pair": pair, "capture": f"{cap.parent.parent.name}/{cap.name}",
                         "reference_of": f"{rcap.parent.parent.name}/{rcap.name}",
                         "ncc": round(float(al.overlap_ncc), 3), "inliers": int(al.shift.inliers)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the rows here")
    a = ap.parse_args(argv)
    rows = run()
    out = {}
    for pair in ("true", "other"):
        v = [r["ncc"] for r in rows if r["pair"] == pair]
        out[pair] = {"pairs": len(v), "min": min(v), "max": max(v),
                     "above_min_ncc": sum(x >= PipelineConfig().min_ncc for x in v)}
    print(json.dumps(out, indent=1))
    if a.json:
        a.json.write_text(json.dumps({**out, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
