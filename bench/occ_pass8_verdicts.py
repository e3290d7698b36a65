"""Maps pass 8: do the verdicts change with `alike_fold`'s REF matcher? Every capture of one
labelled session (`bench/qa.py`'s `labelled_session`) analysed with REF's disparity by full SGM
(the branch) and by the 3-way pass (maps pass 7, main's map); verdicts and reason lists compared.

`PYTHONPATH=. python bench/occ_pass8_verdicts.py --seed 1801 --captures 24 > out.json`
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
from pathlib import Path

import cv2

import hzsr.qa.capture_qa as cq
from hzsr.qa import stereo_occlusion as so
from hzsr.qa.capture_qa import analyse_capture
from hzsr.qa.config import QAConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qa import labelled_session  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1801)
    ap.add_argument("--captures", type=int, default=24)
    a = ap.parse_args(argv)
    cfg = QAConfig()
    fns = {"branch": functools.partial(so.alike_fold, ref_mode=cv2.STEREO_SGBM_MODE_HH),  # maps pass 8's option
           "main_map": functools.partial(so.alike_fold, ref_mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)}
    out: dict = {"benchmark": "occ_pass8_verdicts", "seed": a.seed, "captures": a.captures, "same": 0, "differ": []}
    with tempfile.TemporaryDirectory() as tmp:
        sess = labelled_session(Path(tmp), a.seed, a.captures, (480, 360))
        for d in sorted((sess / "captures").iterdir()):
            res = {}
            for name, fn in fns.items():
                cq.alike_fold = fn  # capture_qa calls the name it imported
                try:
                    q = analyse_capture(d, cfg)
                finally:
                    cq.alike_fold = so.alike_fold
                res[name] = [q.verdict.value, sorted([r.level.value, r.code] for r in q.reasons)]
            if res["branch"] == res["main_map"]:
                out["same"] += 1
            else:
                out["differ"].append({"capture": d.name, **res})
    return out


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(), indent=1) + "\n")
