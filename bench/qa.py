"""Benchmark and ground-truth evaluation of ``hzsr qa`` (issue 11). Prints JSON.

Parts (``--part``, default all):

- ``accuracy``: on simulated static scenes with ground truth (``<session>.truth/``), for the W crop
  vs each T: dense end-point error on non-occluded pixels (median, p95, in pixels of the
  384x512 flow grid), ``M_occ`` precision and recall against the true occlusions, ``M_defocus``
  IoU against the true out-of-focus planes (blur-circle diameter > 2 px in T).
- ``verdicts``: a session where every other capture carries one injected defect (second phone
  focused elsewhere, skew with a moving object, motion blur, rig bump, overexposure): the share of
  defective captures failed with the right reason, and of clean captures failed (and warned).
  Run after ``hzsr sync check`` (the pipeline's order), and again without ``sync/`` (image content
  only).
- ``speed``: full-resolution (4000x3000) captures on one core (``cv2.setNumThreads(1)``): full QA
  (analysis + maps written) and ``--quick``, medians; ``hzsr qa check --workers 2`` against
  ``--workers 1`` on the same captures. Baseline measured in the same run: decoding the three
  JPEGs at full resolution.

Every figure comes out of QA's algorithms meeting the simulator's imperfections (noise, JPEG, lens
and defocus blur, parallax, W/T exposure offsets); none is read from a number the simulator drew.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hzsr.core.records import CaptureRecord
from hzsr.qa.align import crop_w_to_t
from hzsr.qa.capture_qa import analyse_capture
from hzsr.qa.check import _write_images, run_check
from hzsr.qa.config import QAConfig
from hzsr.qa.register import register_pair
from hzsr.sim.defects import DEFECTS
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sim.truth import load_capture_truth

#: The defect each capture carries -> the reason codes that count as naming it.
RIGHT_REASON = {"refocus": {"focus_mismatch"}, "moving_skew": {"sync_skew", "moving_object"},
                "motion_blur": {"motion_blur"}, "rig_bump": {"large_shift", "no_overlap"},
                "overexposure": {"overexposed"}}
OUT_OF_FOCUS_BLUR_PX = 2.0  # true out-of-focus: blur-circle diameter above this many T pixels


def _k(f):
    i = f.intrinsics
    return np.array([[i.fx, 0, i.cx], [0, i.fy, i.cy], [0, 0, 1]])


def accuracy(root: Path, captures: int, seed: int, size: tuple[int, int]) -> dict:
    """EPE, M_occ precision/recall and M_defocus IoU against the simulator's truth."""
    sess = simulate_session(root / "acc", SimConfig(captures=captures, seed=seed, size=size, truth=True,
                                                    kinds=("architecture", "landscape", "portrait", "night"),
                                                    captures_per_scene=1), progress=False)
    cfg = QAConfig()
    per = {"main_T": {"epe": [], "occ": [0, 0, 0], "occ_or_bad": [0, 0], "iou": []},
           "ref_T": {"epe": [], "occ": [0, 0, 0], "occ_or_bad": [0, 0], "iou": []}}
    per_kind: dict[str, list[float]] = {}
    for cd in sorted((sess / "captures").iterdir()):
        rec = CaptureRecord.load(cd)
        fr = {f.slot: f for f in rec.frames}
        img = {s: cv2.cvtColor(cv2.imread(str(cd / fr[s].file)), cv2.COLOR_BGR2RGB) for s in fr}
        crop, rect = crop_w_to_t(img["main_W"], _k(fr["main_W"]), _k(fr["main_T"]), size)
        _, truth = load_capture_truth(sess, rec.capture_id)
        for slot in ("main_T", "ref_T"):
            pcfg = cfg
            if slot == "ref_T":
                from dataclasses import replace

                pcfg = replace(cfg, maps=replace(cfg.maps, defocus_gamma=cfg.maps.defocus_gamma_ref,
                                                 defocus_sigma_f=cfg.maps.defocus_sigma_f_ref))
            roi = fr[slot].af_roi
            from hzsr.qa.align import global_translation

            g = global_translation(crop, img[slot], pcfg, optical_scale=1 / rect.scale)
            r = register_pair(crop, img[slot], pcfg, optical_scale=1 / rect.scale, shift=g,
                              af_roi=[roi[0] - g.dx, roi[1] - g.dy, roi[2], roi[3]])
            flow, vis = truth[f"flow_{slot}"], truth[f"valid_{slot}"]
            err = np.hypot(*(r.flow_fwd - flow).transpose(2, 0, 1)) * r.grid_scale  # flow-grid px
            per[slot]["epe"].append(err[vis & r.valid])
            per_kind.setdefault(rec.scene_id.split("-")[0], []).append(float(np.median(err[vis & r.valid])))
            h, w = flow.shape[:2]
            gx, gy = np.meshgrid(np.arange(w), np.arange(h))
            tx, ty = gx + flow[..., 0], gy + flow[..., 1]
            inframe = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
            true_occ = ~vis & inframe & r.valid  # a different surface at the target, in frame
            pred = (r.occlusion >= 0.5) & r.valid & inframe
            o = per[slot]["occ"]
            o[0] += int((pred & true_occ).sum())
            o[1] += int(pred.sum())
            o[2] += int(true_occ.sum())
            bad = true_occ | (err > 3.0)  # what M_occ is for: where the warped reference is wrong
            per[slot]["occ_or_bad"][0] += int((pred & bad).sum())
            per[slot]["occ_or_bad"][1] += int(pred.sum())
            sigma = truth[f"defocus_sigma_{slot}"]
            true_oof = sigma * 2 * np.sqrt(2) > OUT_OF_FOCUS_BLUR_PX
            pd_ = r.defocus >= 0.5
            m = r.valid
            inter, union = (pd_ & true_oof & m).sum(), ((pd_ | true_oof) & m).sum()
            if (true_oof & m).sum() > 0.05 * m.sum():  # IoU means something only where T has blur to find
                per[slot]["iou"].append(float(inter / union))
                per[slot]["iou_pool"] = [a + b for a, b in zip(per[slot].get("iou_pool", [0, 0]), (inter, union),
                                                                strict=True)]
    out = {"captures": captures, "size": list(size), "flow_grid": list(cfg.align.flow_size),
           "scene_kinds": ["architecture", "landscape", "portrait", "night"],
           "epe_median_by_kind_px": {k: round(float(np.median(v)), 3) for k, v in per_kind.items()}}
    for slot, d in per.items():
        e = np.concatenate(d["epe"])
        o = d["occ"]
        out[slot] = {
            "epe_median_px": round(float(np.median(e)), 3), "epe_p95_px": round(float(np.percentile(e, 95)), 2),
            "occ_precision": round(o[0] / max(o[1], 1), 3), "occ_recall": round(o[0] / max(o[2], 1), 3),
            "occ_precision_vs_occluded_or_misaligned": round(d["occ_or_bad"][0] / max(d["occ_or_bad"][1], 1), 3),
            "true_occluded_frac": round(o[2] / max(sum(len(x) for x in d["epe"]), 1), 4),
            "defocus_iou_median": round(float(np.median(d["iou"])), 3) if d["iou"] else None,
            "defocus_iou_pooled": round(d["iou_pool"][0] / max(d["iou_pool"][1], 1), 3) if d["iou"] else None,
            "defocus_iou_captures": len(d["iou"]),
        }
    return out


def verdicts(root: Path, captures: int, seed: int, size: tuple[int, int], workers: int) -> dict:
    """Share of defective captures failed with the right reason, and of clean ones failed."""
    from hzsr.sync.check import run_sync_check

    defects = {k: DEFECTS[(k // 2) % len(DEFECTS)] for k in range(1, captures, 2)}
    sess = simulate_session(root / "ver", SimConfig(captures=captures, seed=seed, size=size, truth=True,
                                                    defects=defects), progress=False)
    result = {"captures": captures, "defective": len(defects), "size": list(size), "seed": seed}
    import pandas as pd

    for mode in ("content_only", "with_sync"):
        if mode == "with_sync":
            run_sync_check(sess, plots=False)
        run_check(sess, QAConfig(), workers=workers, report=False, maps=False, progress=False)
        df = pd.read_csv(sess / "qa" / "qa.csv").set_index("capture_id")
        hits, clean_fail, clean_warn, misses = 0, 0, 0, []
        per_defect: dict[str, list[int]] = {d: [0, 0] for d in DEFECTS}
        for k in range(captures):
            cid = f"c{k:05d}"
            row = df.loc[cid]
            fail_codes = {r.split(": ")[1] for r in str(row["reasons"]).split(" | ") if r.startswith("fail: ")}
            if k in defects:
                ok = row["verdict"] == "fail" and bool(fail_codes & RIGHT_REASON[defects[k]])
                hits += ok
                per_defect[defects[k]][0] += ok
                per_defect[defects[k]][1] += 1
                if not ok:
                    misses.append({"capture": cid, "defect": defects[k], "verdict": row["verdict"],
                                   "codes": row["codes"]})
            else:
                clean_fail += row["verdict"] == "fail"
                clean_warn += row["verdict"] == "warn"
                if row["verdict"] == "fail":
                    misses.append({"capture": cid, "defect": None, "verdict": "fail", "codes": row["codes"]})
        n_clean = captures - len(defects)
        result[mode] = {
            "defective_failed_with_right_reason": round(hits / len(defects), 3),
            "by_defect": {d: f"{a}/{b}" for d, (a, b) in per_defect.items()},
            "clean_failed": round(clean_fail / n_clean, 3), "clean_warned": round(clean_warn / n_clean, 3),
            "misses": misses[:20],
        }
    return result


def speed(root: Path, captures: int, seed: int) -> dict:
    """Full-resolution timings on one core, and the --workers 2 speed-up."""
    cv2.setNumThreads(1)
    load0 = round(os.getloadavg()[0], 2)
    sess = simulate_session(root / "speed", SimConfig(captures=captures, seed=seed, size=(4000, 3000)),
                            progress=False)
    dirs = sorted((sess / "captures").iterdir())
    cfg = QAConfig()

    def decode_all(d):
        for s in ("main_W", "main_T", "ref_T"):
            cv2.imread(str(d / f"{s}.jpg"))

    def full(d):
        q = analyse_capture(d, cfg)
        _write_images(q, root / "speed_maps")

    cpu: dict[str, list[float]] = {}

    def timed(fn, name="x"):
        ts = []
        for d in dirs:
            t0, c0 = time.perf_counter(), time.process_time()
            fn(d)
            ts.append(time.perf_counter() - t0)
            cpu.setdefault(name, []).append(time.process_time() - c0)
        return ts

    timed(full)  # warm-up: imports, caches
    base = timed(decode_all, "decode")
    t_full = timed(full, "full")
    t_quick = timed(lambda d: analyse_capture(d, cfg, quick=True, thumbs=False), "quick")
    cv2.setNumThreads(0)
    w1 = w2 = None
    reps = []
    for _ in range(2):
        t0 = time.perf_counter()
        run_check(sess, cfg, workers=1, progress=False, report=False)
        w1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_check(sess, cfg, workers=2, progress=False, report=False)
        w2 = time.perf_counter() - t0
        reps.append(w1 / w2)
    return {
        "captures": captures, "size": [4000, 3000], "cpu_count": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "baseline_decode_3_jpegs_median_s": round(statistics.median(base), 3),
        "full_qa_one_core_median_s": round(statistics.median(t_full), 3),
        "full_qa_min_s": round(min(t_full), 3), "full_qa_max_s": round(max(t_full), 3),
        "quick_one_core_median_s": round(statistics.median(t_quick), 3),
        "cpu_seconds_median": {k: round(statistics.median(v), 3) for k, v in cpu.items() if k != "x"},
        "load_average_1min_at_start": load0,
        "ratio_full_to_decode": round(statistics.median(t_full) / statistics.median(base), 2),
        "check_workers1_s": round(w1, 2), "check_workers2_s": round(w2, 2),
        "workers2_speedup_runs": [round(r, 2) for r in reps], "workers2_speedup_best": round(max(reps), 2),
        "goals": {"full_qa_s": 1.5, "quick_s": 0.3, "workers2_speedup": 1.7},
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("accuracy", "verdicts", "speed", "all"), default="all")
    p.add_argument("--accuracy-captures", type=int, default=12)
    p.add_argument("--verdict-captures", type=int, default=100)
    p.add_argument("--speed-captures", type=int, default=6)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--workers", type=int, default=2, help="workers for the verdict run")
    a = p.parse_args(argv)
    out: dict = {"benchmark": "qa"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if a.part in ("accuracy", "all"):
            out["accuracy"] = accuracy(root, a.accuracy_captures, a.seed, (640, 480))
        if a.part in ("verdicts", "all"):
            out["verdicts"] = verdicts(root, a.verdict_captures, a.seed + 1, (640, 480), a.workers)
        if a.part in ("speed", "all"):
            out["speed"] = speed(root, a.speed_captures, a.seed + 2)
    return out


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main(), indent=2) + "\n")
