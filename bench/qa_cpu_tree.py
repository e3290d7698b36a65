"""One source tree's 12 MP QA CPU, for paired runs against another tree (helper issue18quick).

Run it once per tree and round with ``PYTHONPATH=<tree>``, the trees in turn (order swapped each
round), on captures rendered as ``bench/qa.py --part speed`` renders them (seed 2028, 4000x3000).
``cv2.setNumThreads(1)``; a warm-up pass first. Prints JSON.

- ``--mode pair``: per capture, full QA (``analyse_capture`` and ``_write_images``, the speed
  part's ``full``) then the quick verdict's analysis (``quick=True, thumbs=False,
  row_figures=False``, its ``quick``), ``time.process_time`` each (the quick one also
  ``thread_time``), in the speed part's order.
- ``--mode min``: the quick analysis alone, ``--reps`` times a capture; per capture the least
  ``thread_time`` (``mean_of_min``: their mean), which load disturbs less than a median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2

from hzsr.qa.capture_qa import analyse_capture
from hzsr.qa.check import _write_images
from hzsr.qa.config import QAConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("captures", type=Path, help="a session's captures/ folder")
    p.add_argument("--mode", choices=("pair", "min"), default="pair")
    p.add_argument("--reps", type=int, default=4)
    a = p.parse_args()
    cv2.setNumThreads(1)
    cfg = QAConfig()
    dirs = sorted(d for d in a.captures.iterdir() if d.is_dir())
    tmp = Path(tempfile.mkdtemp(prefix="qa_cpu_tree_"))

    def full(d: Path) -> None:
        _write_images(analyse_capture(d, cfg), tmp)

    def quick(d: Path) -> None:
        analyse_capture(d, cfg, quick=True, thumbs=False, row_figures=False)

    try:
        for d in dirs:
            if a.mode == "pair":
                full(d)
            quick(d)
        res: dict = {"mode": a.mode, "load0": os.getloadavg()[0]}
        if a.mode == "pair":
            res.update(full=[], quick=[], quick_thread=[])
            for d in dirs:
                c = time.process_time()
                full(d)
                res["full"].append(time.process_time() - c)
                c, t = time.process_time(), time.thread_time()
                quick(d)
                res["quick"].append(time.process_time() - c)
                res["quick_thread"].append(time.thread_time() - t)
        else:
            best = {d.name: float("inf") for d in dirs}
            for _ in range(a.reps):
                for d in dirs:
                    t = time.thread_time()
                    quick(d)
                    best[d.name] = min(best[d.name], time.thread_time() - t)
            res.update(per_capture=best, mean_of_min=sum(best.values()) / len(best))
        res["load1"] = os.getloadavg()[0]
        print(json.dumps(res))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
