"""Benchmark: brightness match of target (main T) and reference (ref T) on the virtual rig (issue 9).

Captures N triplets with 3A free, with AE/AWB locked on each phone, and locked on the main phone
with its T exposure, ISO and gains copied to the reference T (``--lock-3a --match-exposure``).
For each capture the mean brightness difference over the two views' overlap is measured from
the JPEGs after aligning them densely (``three_a.overlap_brightness_difference``); the metadata
are only reported beside it.
Goal: with lock + match, every capture's difference is <= 2%. Prints JSON; medians and maxima.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from hzsr.capture.link import RigLink
from hzsr.capture.rigfile import load_rig
from hzsr.capture.session_run import CaptureConfig, CaptureRun
from hzsr.capture.three_a import ThreeAConfig, overlap_brightness_difference
from hzsr.core.records import CaptureRecord
from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig

MODES = {"auto": ThreeAConfig(), "locked": ThreeAConfig(lock_3a=True),
         "locked+matched": ThreeAConfig(lock_3a=True, match_exposure=True)}


def main(n: int = 8, seeds: tuple[int, ...] = (0, 3)) -> dict:
    out: dict = {"captures_per_mode_and_seed": n, "seeds": list(seeds), "size": "320x240"}
    rows: dict[str, list[dict]] = {m: [] for m in MODES}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp, \
                VirtualRig(Path(tmp) / "rig", VirtualRigConfig(size=(320, 240), seed=seed,
                                                                scene_duration_s=2.0)) as rig:
            for mode, cfg in MODES.items():
                link = RigLink(load_rig(rig.rig_yaml))
                run = CaptureRun(Path(tmp) / mode.replace("+", "_"), link, CaptureConfig(three_a=cfg),
                                 say=lambda m: None)
                run.open()
                for _ in range(n):
                    cid = run.capture("bench", []).capture_id
                    cdir = run.dir / "captures" / cid
                    rec = CaptureRecord.load(cdir)
                    t, r = rec.frame("main_T"), rec.frame("ref_T")
                    diff, share = overlap_brightness_difference(cdir / "main_T.jpg", cdir / "ref_T.jpg")
                    rows[mode].append({
                        "diff": diff, "overlap": share,
                        "exposure_ratio": (r.exposure_time_ns * r.iso) / (t.exposure_time_ns * t.iso),
                        "gains_equal": t.wb_gains == r.wb_gains})
                link.close()
    for mode, rs in rows.items():
        d = [x["diff"] for x in rs]
        out[mode] = {"brightness_diff_median": round(statistics.median(d), 4), "brightness_diff_max": round(max(d), 4),
                     "share_within_2pct": round(sum(x <= 0.02 for x in d) / len(d), 3),
                     "overlap_share_median": round(statistics.median(x["overlap"] for x in rs), 3),
                     "exposure_ratio_ref_over_main_median": round(
                         statistics.median(x["exposure_ratio"] for x in rs), 4),
                     "gains_equal_share": round(sum(x["gains_equal"] for x in rs) / len(rs), 3)}
    out["goal_met"] = out["locked+matched"]["brightness_diff_max"] <= 0.02
    return out


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 8), indent=1))
