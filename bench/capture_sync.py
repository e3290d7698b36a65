"""Benchmark: capture against the virtual rig's ground truth (issue 4). Prints JSON; medians.

The rig runs in its own process (``hzsr rig up --virtual --background``), as phones would be
separate devices, so the host's figures are not slowed by the phones' rendering. The default link
model is on (jitter and asymmetry). Measured:

- clock-offset error |measured - true| over many sync rounds, p50/p95 (goal p95 <= 100 us);
- trigger skew |t(ref_T) - t(main_W)| between the frames really captured, with phase alignment
  on and off, p50/p95 (goal p95 <= 250 us with it on);
- host overhead per full-resolution capture: clock sync, trigger, pull and verify, with the
  phones' own exposure and rendering time excluded (goal <= 300 ms);
- pulling a full-res capture from both phones, sequential vs parallel.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hzsr.capture.clocksync import sync_round
from hzsr.capture.link import RigLink
from hzsr.capture.rigfile import load_rig
from hzsr.capture.session_run import CaptureConfig, CaptureRun
from hzsr.sim.timing import PhoneClock


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hzsr.cli", *args], capture_output=True, text=True, timeout=300)


class Rig:
    def __init__(self, tmp: Path, name: str, size: str):
        self.dir = tmp / name
        up = _cli("rig", "up", "--virtual", "--background", "--dir", str(self.dir), "--size", size)
        if up.returncode:
            raise SystemExit(up.stderr)
        self.yaml = self.dir / "rig.yaml"

    def true_clock(self, serial: str) -> PhoneClock:
        own = [json.loads(p.read_text()) for p in (self.dir / "truth").glob("*.clock.json")]
        rig = load_rig(self.yaml)
        idx = [p.serial for p in rig.phones].index(serial)
        d = sorted(own, key=lambda x: x["serial"])[idx]
        return PhoneClock(d["offset_ns"], d["drift_ppm"], d["epoch_ns"], [tuple(j) for j in d["jumps"]])

    def true_skews_us(self, session: str) -> dict[str, float]:
        t: dict[str, dict] = {}
        for f in (self.dir / "truth").glob("*.jsonl"):
            for line in f.read_text().splitlines():
                d = json.loads(line)
                if d["session"] == session:
                    t.setdefault(d["capture_id"], {})[(d["role"], d["camera"])] = d["true_host_ns"]
        return {c: (v[("reference", "T")] - v[("main", "W")]) / 1e3 for c, v in t.items()}

    def down(self) -> None:
        _cli("rig", "down", "--rig", str(self.yaml))


def _pct(x, q):
    return round(float(np.percentile(np.abs(x), q)), 1)


def offset_errors(rig: Rig, rounds: int = 40) -> list[float]:
    link = RigLink(load_rig(rig.yaml))
    errs = []
    try:
        for role in ("main", "reference"):
            clock = rig.true_clock(link.rig.serial(role))
            for _ in range(rounds):
                s = sync_round(link.agent(role), 200)
                errs.append((s.offset_ns - (clock.phone_ns(s.host_ns) - s.host_ns)) / 1e3)
    finally:
        link.close()
    return errs


def skews(rig: Rig, tmp: Path, name: str, phase_align: bool, n: int) -> list[float]:
    run = CaptureRun(tmp / name, RigLink(load_rig(rig.yaml)), CaptureConfig(phase_align=phase_align),
                     say=lambda m: None)
    try:
        run.open()
        for _ in range(n):
            run.capture("bench", [])
    finally:
        run.link.close()
    return list(rig.true_skews_us(name).values())


def main(n_skew: int = 30, n_full: int = 5) -> dict:
    out: dict = {"benchmark": "capture_sync", "link": "default LinkModel (jitter 60 us, asymmetry 20 us)"}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        small = Rig(tmp, "small", "320x240")
        try:
            errs = offset_errors(small)
            out["clock_offset_error_us"] = {"p50": _pct(errs, 50), "p95": _pct(errs, 95), "rounds": len(errs),
                                            "goal_p95": 100.0, "meets_goal": _pct(errs, 95) <= 100}
            # Free-running first: once aligned, a stream stays aligned (as on real phones).
            off = skews(small, tmp, "free", False, n_skew)
            on = skews(small, tmp, "aligned", True, n_skew)
            out["trigger_skew_us_phase_aligned"] = {"p50": _pct(on, 50), "p95": _pct(on, 95), "n": len(on),
                                                    "goal_p95": 250.0, "meets_goal": _pct(on, 95) <= 250}
            out["trigger_skew_us_free_running"] = {"p50": _pct(off, 50), "p95": _pct(off, 95), "n": len(off)}
        finally:
            small.down()
        full = Rig(tmp, "full", "4000x3000")
        try:
            run = CaptureRun(tmp / "fullsess", RigLink(load_rig(full.yaml)), CaptureConfig(), say=lambda m: None)
            run.open()
            res = [run.capture("bench", []) for _ in range(n_full)]
            over = [r.timings_s["host_overhead"] for r in res]
            phone = [r.timings_s["phone"] for r in res]
            total = [r.timings_s["total"] for r in res]
            out["full_res_host_overhead_s"] = {
                "median": round(statistics.median(over), 3), "max": round(max(over), 3),
                "phone_time_median_s": round(statistics.median(phone), 3),
                "total_median_s": round(statistics.median(total), 3),
                "ratio_overhead_to_phone_time": round(statistics.median(over) / statistics.median(phone), 3),
                "goal_s": 0.3, "meets_goal": statistics.median(over) <= 0.3, "n": len(res)}
            cid = res[-1].capture_id

            def pull(role, d):
                run._pull_role(role, cid, d)

            def timed(parallel: bool, k: int) -> float:
                d = tmp / f"pull_{parallel}_{k}"
                d.mkdir()
                t0 = time.perf_counter()
                if parallel:
                    with ThreadPoolExecutor(2) as ex:
                        list(ex.map(lambda r: pull(r, d), ("main", "reference")))
                else:
                    for r in ("main", "reference"):
                        pull(r, d)
                return time.perf_counter() - t0

            seq = statistics.median(timed(False, k) for k in range(5))
            par = statistics.median(timed(True, k) for k in range(5))
            out["full_res_pull_verify_both_phones_s"] = {"sequential_median": round(seq, 3),
                                                         "parallel_median": round(par, 3),
                                                         "speedup": round(seq / par, 2)}
            run.link.close()
        finally:
            full.down()
    return out


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
