"""Every output of ``analyse_capture`` for a set of sessions, as JSON to diff between two trees.

For each capture of each session given, full (with thumbnails and maps) and quick
(``quick=True, thumbs=False``): the row (but ``seconds``), the reasons, the graded figures, the
quick spread and decided verdict, and a SHA-1 of each image's pixels. A change meant to make QA
cheaper without changing it (issue 18's 12 MP cost) must leave this output equal: run it on both
trees (``PYTHONPATH=<tree> python bench/qa_outputs_digest.py SESSION ... > tree.json``) and diff.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from hzsr.qa.capture_qa import analyse_capture
from hzsr.qa.config import QAConfig


def _plain(v):
    """JSON-able and exact: floats by their repr (NaN spelled out), numpy scalars as Python's."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v if isinstance(v, int | str | bool) or v is None else str(v)


def digest(capture_dir: Path, cfg: QAConfig) -> dict:
    out = {}
    for quick in (False, True):
        q = analyse_capture(capture_dir, cfg, quick=quick, thumbs=not quick)
        v = q.decided()
        out["quick" if quick else "full"] = _plain({
            "row": {k: x for k, x in q.row.items() if k != "seconds"},
            "reasons": [(r.level.value, r.code, r.message) for r in q.reasons],
            "graded": q.graded, "spread": q.spread, "verdict": q.verdict.value,
            "decided": v.value if v is not None else "undecided",
            "images": {k: f"{img.shape} {hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()}"
                       for k, img in sorted(q.images.items())},
        })
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sessions", nargs="+", help="session folders (their captures/ are read)")
    a = p.parse_args(argv)
    cv2.setNumThreads(1)
    cfg = QAConfig()
    return {str(d): digest(d, cfg) for s in a.sessions for d in sorted((Path(s) / "captures").iterdir())}


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(), indent=1, sort_keys=True) + "\n")
