"""Benchmark: the rig's sync against the virtual phones' ground truth, per link profile (issue 10).

One JSON object per profile (``--link``, repeatable; default: loopback, usb2-hub, usb3, mixed
= ``main=usb2-hub,reference=usb3``, and mixed+bias100 = mixed with 100 us of extra asymmetry on
the reference link, ``--faults link_bias_us=100@reference``). Each runs its own virtual rig in its own process
(``hzsr rig up --virtual --background --link ... --scene sync-board``, 1280x960 so W resolves the
board), and measures, against the truth files the phones write outside their storage:

- ``clock_offset_error_us``: |SNTP estimate - true offset| of full 200-exchange rounds, p50/p95;
- ``true_skew_us_free_running`` / ``_phase_aligned``: |t(ref_T) - t(main_W)| of the frames really
  exposed, p50/p95 (phase alignment is the agent's iterative algorithm; nothing is drawn);
- ``reported_bound_us_p50`` and ``bound_coverage``: the fraction of captures whose reported skew is
  within its bound of the true skew (goal >= 0.99);
- ``optical_skew_error_us``: |hzsr sync optical - true skew|, p50/p95 (goal p95 <= 50 us);
- then ``hzsr sync calibrate`` from those aligned captures, and ``true_skew_us_after_calibration``
  p50/p95 of new captures (goal p95 <= 100 us), with their bound and coverage;
- ``sim_session``: the same link in a 300-capture ``hzsr sim session`` (timing only): bound
  coverage and median with many more captures than the rig can take in a benchmark.

``--host-overhead`` instead measures the full-resolution host overhead and the pull speed-up
(issue 4's figures). Medians and percentiles only; no timed assertions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from hzsr.capture.clocksync import sync_round
from hzsr.capture.link import RigLink
from hzsr.capture.rigfile import load_rig
from hzsr.capture.session_run import CaptureConfig, CaptureRun
from hzsr.sim.timing import PhoneClock

PROFILES = {"loopback": "loopback", "usb2-hub": "usb2-hub", "usb3": "usb3", "mixed": "main=usb2-hub,reference=usb3",
            "mixed+bias100": "main=usb2-hub,reference=usb3"}
#: Profiles with a fault: 100 us of extra asymmetry on the reference link, which SNTP cannot see.
FAULTS = {"mixed+bias100": ("link_bias_us=100@reference", 100.0)}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hzsr.cli", *args], capture_output=True, text=True, timeout=600)


class Rig:
    def __init__(self, tmp: Path, name: str, size: str, link: str = "loopback", scene: str = "", faults: str = ""):
        self.dir = tmp / name
        up = _cli("rig", "up", "--virtual", "--background", "--out", str(self.dir), "--size", size,
                  "--link", link, "--scene", scene, "--faults", faults)
        if up.returncode:
            raise SystemExit(up.stderr)
        self.yaml = self.dir / "rig.yaml"

    def true_clock(self, serial: str) -> PhoneClock:
        own = [json.loads(p.read_text()) for p in (self.dir / "truth").glob("*.clock.json")]
        rig = load_rig(self.yaml)
        idx = [p.serial for p in rig.phones].index(serial)
        return PhoneClock.from_truth(sorted(own, key=lambda x: x["serial"])[idx])

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


def _p50_p95(x) -> dict:
    return {"p50": _pct(x, 50), "p95": _pct(x, 95), "n": len(x)}


def offset_errors(rig: Rig, rounds: int) -> list[float]:
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


def session(rig: Rig, tmp: Path, name: str, phase_align: bool, n: int) -> pd.DataFrame:
    """``n`` captures; per capture the reported skew and bound, and the true skew."""
    run = CaptureRun(tmp / name, RigLink(load_rig(rig.yaml)), CaptureConfig(phase_align=phase_align),
                     rig_path=str(rig.yaml), say=lambda m: None)
    try:
        run.open()
        res = [run.capture("sync-board", ["bench"]) for _ in range(n)]
    finally:
        run.link.close()
    true = rig.true_skews_us(name)
    return pd.DataFrame({"capture_id": [r.capture_id for r in res], "reported_us": [r.skew_us for r in res],
                         "bound_us": [r.bound_us for r in res], "true_us": [true[r.capture_id] for r in res]})


def _coverage(df: pd.DataFrame) -> float:
    return round(float(((df["reported_us"] - df["true_us"]).abs() <= df["bound_us"]).mean()), 4)


def sim_coverage(spec: str, tmp: Path, n: int, seed: int, bias_us: float = 0.0) -> dict:
    """The same link in ``hzsr sim session`` (timing only): many more captures, for the bound."""
    from hzsr.sim.simsession import SimConfig, simulate_session
    from hzsr.sim.truth import load_session_truth
    from hzsr.sync.check import run_sync_check

    cfg = SimConfig(captures=n, seed=seed, size=(64, 48), images=False, truth=True, link=spec, link_bias_us=bias_us)
    d = simulate_session(tmp / f"sim-{seed}-{spec}-{bias_us:g}", cfg, progress=False)
    run_sync_check(d, plots=False)
    df = pd.read_csv(d / "sync" / "sync.csv")
    true = df["capture_id"].map({c["capture_id"]: c["skew_ref_minus_main_ns"] / 1e3
                                 for c in load_session_truth(d)["captures"]})
    return {"captures": n, "bound_coverage": round(float(((df["skew_ref_main_us"] - true).abs()
                                                           <= df["skew_bound_us"]).mean()), 4),
            "bound_us_p50": round(float(df["skew_bound_us"].median()), 1),
            "true_skew_us_phase_aligned": _p50_p95(true)}


def bench_profile(name: str, spec: str, tmp: Path, n: int, rounds: int) -> dict:
    t0 = time.perf_counter()
    out: dict = {"benchmark": "capture_sync", "link": name, "link_spec": spec, "captures_per_set": n}
    faults, bias = FAULTS.get(name, ("", 0.0))
    rig = Rig(tmp, name, "1280x960", spec, "sync-board", faults)
    try:
        errs = offset_errors(rig, rounds)
        out["clock_offset_error_us"] = {**_p50_p95(errs), "median_signed": round(float(np.median(errs)), 1)}
        free = session(rig, tmp, f"{name}-free", False, n)
        aligned = session(rig, tmp, f"{name}-aligned", True, n)
        out["true_skew_us_free_running"] = _p50_p95(free["true_us"])
        out["true_skew_us_phase_aligned"] = _p50_p95(aligned["true_us"])
        both = pd.concat([free, aligned])
        out["reported_bound_us_p50"] = round(float(both["bound_us"].median()), 1)
        out["bound_coverage"] = _coverage(both)
        out["reported_minus_true_us"] = _p50_p95(both["reported_us"] - both["true_us"])
        opt = _cli("sync", "optical", str(tmp / f"{name}-aligned"), "--json")
        if opt.returncode:
            raise SystemExit(opt.stderr)
        o = pd.read_csv(tmp / f"{name}-aligned" / "sync" / "optical.csv")
        o_err = o["optical_skew_us"] - o["capture_id"].map(dict(zip(aligned["capture_id"], aligned["true_us"],
                                                                     strict=True)))
        out["optical_skew_error_us"] = {**_p50_p95(o_err.dropna()), "decoded": int((o["status"] == "ok").sum()),
                                        "goal_p95": 50.0, "meets_goal": _pct(o_err.dropna(), 95) <= 50}
        out["clock_minus_optical_us_median"] = round(float(o["clock_minus_optical_us"].median()), 1)
        cal = _cli("sync", "calibrate", str(tmp / f"{name}-aligned"), "--rig", str(rig.yaml), "--json")
        if cal.returncode:
            raise SystemExit(cal.stderr)
        after = session(rig, tmp, f"{name}-calibrated", True, n)
        out["true_skew_us_after_calibration"] = {**_p50_p95(after["true_us"]), "goal_p95": 100.0,
                                                 "meets_goal": _pct(after["true_us"], 95) <= 100}
        out["after_calibration_bound_us_p50"] = round(float(after["bound_us"].median()), 1)
        out["after_calibration_bound_coverage"] = _coverage(after)
        out["coverage_goal"] = 0.99
        out["meets_coverage_goal"] = min(out["bound_coverage"], out["after_calibration_bound_coverage"]) >= 0.99
    finally:
        rig.down()
    out["sim_session"] = sim_coverage(spec, tmp, 300, seed=len(name), bias_us=bias)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def host_overhead(tmp: Path, n_full: int = 5) -> dict:
    out: dict = {"benchmark": "capture_host_overhead"}
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

        def timed(parallel: bool, k: int) -> float:
            d = tmp / f"pull_{parallel}_{k}"
            d.mkdir()
            t0 = time.perf_counter()
            if parallel:
                with ThreadPoolExecutor(2) as ex:
                    list(ex.map(lambda r: run._pull_role(r, cid, d), ("main", "reference")))
            else:
                for r in ("main", "reference"):
                    run._pull_role(r, cid, d)
            return time.perf_counter() - t0

        seq = statistics.median(timed(False, k) for k in range(5))
        par = statistics.median(timed(True, k) for k in range(5))
        out["full_res_pull_verify_both_phones_s"] = {"sequential_median": round(seq, 3),
                                                     "parallel_median": round(par, 3), "speedup": round(seq / par, 2)}
        run.link.close()
    finally:
        full.down()
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--link", action="append", choices=list(PROFILES),
                    help="profile to measure (repeatable; default: all)")
    ap.add_argument("--captures", type=int, default=30, help="captures per set (default: %(default)s)")
    ap.add_argument("--rounds", type=int, default=20, help="SNTP rounds per phone (default: %(default)s)")
    ap.add_argument("--host-overhead", action="store_true", help="measure full-res host overhead instead")
    args = ap.parse_args(argv)
    outs = []
    with tempfile.TemporaryDirectory() as t:
        if args.host_overhead:
            outs.append(host_overhead(Path(t)))
            print(json.dumps(outs[-1]), flush=True)
            return outs
        for name in args.link or list(PROFILES):
            outs.append(bench_profile(name, PROFILES[name], Path(t), args.captures, args.rounds))
            print(json.dumps(outs[-1]), flush=True)
    return outs


if __name__ == "__main__":
    main()
