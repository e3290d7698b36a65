"""Render the example scenes of docs/model.md ("Texture pools"): W, T and reference of one capture.

For each texture pool and scene kind below, renders one 640x480 capture
(``hzsr sim session --captures 1 --seed SEED --kinds KIND --textures POOL``) and writes
``docs/img/scenes-POOL.png``: one row per kind of four 200x150 panels: W (whole, downscaled),
T (whole, downscaled), the reference T (whole, downscaled) and T's centre at 1:1 (no resampling),
where the fine detail below the photographs' resolution shows.

Usage: ``python bench/scene_examples.py [--out docs/img]``. Deterministic: same seeds, same PNGs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from hzsr.sim.simsession import SimConfig, simulate_session

ROOT = Path(__file__).resolve().parents[1]
#: pool -> (seed, kinds): the pinned seeds of bench/_data.py (train 11, eval 21).
EXAMPLES = {"all": (11, ("portrait",)), "train": (11, ("portrait", "landscape")), "eval": (21, ("portrait", "moving"))}
PANEL = (200, 150)


def render_rows(pool: str, seed: int, kinds: tuple[str, ...], tmp: Path) -> np.ndarray:
    rows = []
    for kind in kinds:
        sess = simulate_session(tmp / f"{pool}-{kind}", SimConfig(captures=1, seed=seed, kinds=(kind,), textures=pool),
                                progress=False)
        cap = sess / "captures" / "c00000"
        imgs = {s: cv2.imread(str(cap / f"{s}.jpg")) for s in ("main_W", "main_T", "ref_T")}
        panels = [cv2.resize(imgs[s], PANEL, interpolation=cv2.INTER_AREA) for s in ("main_W", "main_T", "ref_T")]
        h, w = imgs["main_T"].shape[:2]
        y0, x0 = (h - PANEL[1]) // 2, (w - PANEL[0]) // 2
        panels.append(imgs["main_T"][y0:y0 + PANEL[1], x0:x0 + PANEL[0]])
        rows.append(np.hstack(panels))
    return np.vstack(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for pool, (seed, kinds) in EXAMPLES.items():
            path = a.out / f"scenes-{pool}.png"
            cv2.imwrite(str(path), render_rows(pool, seed, kinds, Path(tmp)), [cv2.IMWRITE_PNG_COMPRESSION, 9])
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
