"""Two ``bench/eval_truth.py --json`` runs on the same captures, paired by capture.

Prints, per scene kind and over all captures, each run's full - bicubic and full - blend, and the
paired difference ``B - A`` of ``full`` (mean, standard error over captures, worst capture); and the
worst full - fusion of each on truly occluded / defocused pixels (the 0.2 dB rule).

Usage::

    python bench/pair_truth.py A.json[,A2.json ...] B.json[,B2.json ...] [--json OUT]

A side given as several comma-separated files (runs over different ``--kinds``) is their rows together.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def paired(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    """Per kind (and ``all``): A's and B's gains, and B - A of ``psnr_full`` paired by capture."""
    m = a.merge(b, on="capture", suffixes=("_a", "_b"))
    if len(m) != len(a) or len(m) != len(b):
        raise SystemExit(f"the runs hold different captures ({len(a)}, {len(b)}, {len(m)} in common)")
    out = {}
    groups = [*m.groupby("scene_kind_a"), ("all", m)]
    for kind, g in groups:
        d = g["psnr_full_b"] - g["psnr_full_a"]
        out[kind] = {
            "n": len(g),
            **{f"{s}_full_minus_bicubic": round(float((g[f"psnr_full_{s}"] - g[f"psnr_bicubic_{s}"]).mean()), 3)
               for s in "ab"},
            **{f"{s}_full_minus_blend": round(float((g[f"psnr_full_{s}"] - g[f"psnr_blend_{s}"]).mean()), 3)
               for s in "ab"},
            "b_minus_a": round(float(d.mean()), 3),
            "se": round(float(d.std(ddof=1) / len(d) ** 0.5), 3) if len(d) > 1 else float("nan"),
            "worst": round(float(d.min()), 3),
        }
    for region in ("occluded", "defocused"):
        for s in "ab":
            col, fus = f"psnr_full_{region}_{s}", f"psnr_fusion_{region}_{s}"
            sub = m[m[col].notna()]
            out.setdefault("worst_full_minus_fusion", {})[f"{region}_{s}"] = (
                round(float((sub[col] - sub[fus]).min()), 3) if len(sub) else None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="eval_truth JSON(s) of run A, comma-separated")
    ap.add_argument("b", help="eval_truth JSON(s) of run B, comma-separated")
    ap.add_argument("--json", type=Path)
    x = ap.parse_args(argv)
    rows = [pd.concat([pd.DataFrame(json.loads(Path(p).read_text())["rows"]) for p in side.split(",")],
                      ignore_index=True) for side in (x.a, x.b)]
    out = paired(*rows)
    print(json.dumps(out, indent=1))
    if x.json:
        x.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
