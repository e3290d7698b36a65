"""Benchmark: the rig's sync against the virtual phones' ground truth, per link profile (issues 10, 17).

One JSON object per profile and run (``--link``, repeatable; default: loopback, usb2-hub, usb3,
mixed = ``main=usb2-hub,reference=usb3``, and mixed+bias100 = mixed with 100 us of extra asymmetry
on the reference link, ``--faults link_bias_us=100@reference``). Each runs its own virtual rig in
its own process (``hzsr rig up --virtual --background --link ... --scene sync-board --seed S
--profile P``, 1280x960 so W resolves the board), and measures, against the truth files the phones
write outside their storage:

- ``clock_offset_error_us``: |SNTP estimate - true offset| of full 200-exchange rounds, p50/p95;
- ``true_skew_us_free_running`` / ``_phase_aligned``: |t(ref_T) - t(main_W)| of the frames really
  exposed, p50/p95 (phase alignment is the agent's iterative algorithm; nothing is drawn);
- ``before_calibration``: the live verdicts (pass fraction), the median bound and the bound's
  coverage of the true skew's error;
- ``optical_skew_error_us``: |hzsr sync optical - true skew|, p50/p95 (goal p95 <= 50 us), the
  readout taken from each frame's ``rolling_shutter_skew_ns``;
- then ``hzsr sync calibrate`` from those aligned captures, and ``after_calibration``: pass
  fraction (goal >= 0.9), coverage (goal >= 0.95), median bound (goal <= 250 us), true skew p95,
  and ``false_passes`` (a pass whose true |skew| exceeds the pass limit; goal 0);
- ``live_equals_check``: the fraction of captures whose live verdict equals ``hzsr sync check``'s
  (goal >= 0.95), over every set;
- ``loadavg``: the 1-minute load average at the start and end (the machine may be shared).

``--load N`` runs N busy processes beside the rig (a loaded host); ``--runs K`` repeats every
profile K times with seeds ``seed .. seed + K - 1``, interleaved, and ends with one summary line
per profile: the median of each headline figure and its spread (min, max) over the runs.
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
    def __init__(self, tmp: Path, name: str, size: str, link: str = "loopback", scene: str = "", faults: str = "",
                 seed: int = 0, profile: str = "vphone-5x"):
        self.dir = tmp / name
        up = _cli("rig", "up", "--virtual", "--background", "--out", str(self.dir), "--size", size,
                  "--link", link, "--scene", scene, "--faults", faults, "--seed", str(seed), "--profile", profile)
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


LIMIT_US = 250.0  # rig.yaml's default sync.pass_limit_us (hzsr.core.verdict.SkewThresholds)


LEAD_MS = {"lead_ms": 150.0}  # --lead-ms: a loaded host needs more than the default to reach the phones in time


def session(rig: Rig, tmp: Path, name: str, phase_align: bool, n: int) -> pd.DataFrame:
    """``n`` captures; per capture the reported skew, bound and live verdict, the true skew, and
    the verdict ``hzsr sync check`` gives the same capture afterwards."""
    from hzsr.sync.check import run_sync_check

    run = CaptureRun(tmp / name, RigLink(load_rig(rig.yaml)),
                     CaptureConfig(phase_align=phase_align, lead_ms=LEAD_MS["lead_ms"]),
                     rig_path=str(rig.yaml), say=lambda m: None)
    try:
        run.open()
        res = [run.capture("sync-board", ["bench"]) for _ in range(n)]
    finally:
        run.link.close()
    true = rig.true_skews_us(name)
    run_sync_check(tmp / name, plots=False)
    check = pd.read_csv(tmp / name / "sync" / "sync.csv").set_index("capture_id")
    plain = plain_interpolation(tmp / name).set_index("capture_id")
    return pd.DataFrame({
        "plain_skew_us": [plain.at[r.capture_id, "plain_skew_us"] for r in res],
        "plain_bound_us": [plain.at[r.capture_id, "plain_bound_us"] for r in res],
        "capture_id": [r.capture_id for r in res], "reported_us": [r.skew_us for r in res],
                         "bound_us": [r.bound_us for r in res], "true_us": [true[r.capture_id] for r in res],
                         "verdict": [str(r.verdict) for r in res],
                         "check_verdict": [check.at[r.capture_id, "verdict"] for r in res],
                         "check_bound_us": [check.at[r.capture_id, "skew_bound_us"] for r in res],
                         "check_skew_us": [check.at[r.capture_id, "skew_ref_main_us"] for r in res]})


def plain_interpolation(session_dir: Path) -> pd.DataFrame:
    """The simplest alternative, on the same captures: each frame mapped by plain linear
    interpolation of the offsets between neighbouring samples (no weighting by their bounds),
    bound = interpolated rtt/2 (+ calibration) + 0.5 ppm wander + 2 x 10 us jitter (hzsr before issue 17)."""
    from hzsr.core.clockmap import sample_bounds
    from hzsr.core.records import CaptureRecord, SessionRecord

    s = SessionRecord.load(session_dir)
    maps = {}
    for d in s.devices:
        h = np.array([x.host_ns for x in d.clock.samples], np.float64)
        o = np.array([x.offset_ns for x in d.clock.samples], np.float64)
        e = sample_bounds(d.clock.samples, d.clock.calibration)
        order = np.argsort(h)
        maps[d.serial] = (h[order], o[order], e[order])
    rows = []
    for cdir in sorted((session_dir / "captures").iterdir()):
        rec = CaptureRecord.load(cdir)
        fr = {f.slot: f for f in rec.frames}
        out = {}
        for slot in ("main_W", "ref_T"):
            h, o, e = maps[fr[slot].device]
            p = float(fr[slot].sensor_timestamp_ns)
            t = p - o[-1]
            for _ in range(3):
                t = p - float(np.interp(t, h, o))
            i = int(np.clip(np.searchsorted(h, t), 1, len(h) - 1))
            out[slot] = (t, float(np.interp(t, h, e)) + 0.5e-6 * min(abs(t - h[i - 1]), abs(h[i] - t)))
        rows.append({"capture_id": rec.capture_id, "plain_skew_us": (out["ref_T"][0] - out["main_W"][0]) / 1e3,
                     "plain_bound_us": (out["ref_T"][1] + out["main_W"][1]) / 1e3 + 20.0})
    return pd.DataFrame(rows)


def _coverage(df: pd.DataFrame) -> float:
    return round(float(((df["reported_us"] - df["true_us"]).abs() <= df["bound_us"]).mean()), 4)


def _judged(df: pd.DataFrame) -> dict:
    """Verdict figures of one set of captures (live line and sync check)."""
    return {"pass_fraction": round(float((df["verdict"] == "pass").mean()), 3),
            "check_pass_fraction": round(float((df["check_verdict"] == "pass").mean()), 3),
            "bound_us_p50": round(float(df["bound_us"].median()), 1),
            "check_bound_us_p50": round(float(df["check_bound_us"].median()), 1),
            "bound_coverage": _coverage(df),
            "check_bound_coverage": round(float(((df["check_skew_us"] - df["true_us"]).abs()
                                                 <= df["check_bound_us"]).mean()), 4),
            "false_passes": int(((df["verdict"] == "pass") & (df["true_us"].abs() > LIMIT_US)).sum()),
            "check_error_us": _p50_p95(df["check_skew_us"] - df["true_us"]),
            "plain_interpolation": {"error_us": _p50_p95(df["plain_skew_us"] - df["true_us"]),
                                    "bound_us_p50": round(float(df["plain_bound_us"].median()), 1),
                                    "bound_coverage": round(float(((df["plain_skew_us"] - df["true_us"]).abs()
                                                                   <= df["plain_bound_us"]).mean()), 4)},
            "true_skew_us": _p50_p95(df["true_us"])}


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


def bench_profile(name: str, spec: str, tmp: Path, n: int, rounds: int, seed: int = 0, profile: str = "vphone-5x",
                  sim: bool = False) -> dict:
    import os

    t0 = time.perf_counter()
    out: dict = {"benchmark": "capture_sync", "link": name, "link_spec": spec, "captures_per_set": n,
                 "seed": seed, "profile": profile, "loadavg_start": round(os.getloadavg()[0], 2)}
    faults, bias = FAULTS.get(name, ("", 0.0))
    tag = f"{name}-s{seed}-{profile}"
    rig = Rig(tmp, tag, "1280x960", spec, "sync-board", faults, seed=seed, profile=profile)
    try:
        errs = offset_errors(rig, rounds)
        out["clock_offset_error_us"] = {**_p50_p95(errs), "median_signed": round(float(np.median(errs)), 1)}
        free = session(rig, tmp, f"{tag}-free", False, n)
        aligned = session(rig, tmp, f"{tag}-aligned", True, n)
        out["true_skew_us_free_running"] = _p50_p95(free["true_us"])
        out["true_skew_us_phase_aligned"] = _p50_p95(aligned["true_us"])
        out["before_calibration"] = _judged(pd.concat([free, aligned]))
        opt = _cli("sync", "optical", str(tmp / f"{tag}-aligned"), "--json")
        o = pd.read_csv(tmp / f"{tag}-aligned" / "sync" / "optical.csv")
        o_err = (o["optical_skew_us"] - o["capture_id"].map(dict(zip(aligned["capture_id"], aligned["true_us"],
                                                                      strict=True)))).dropna()
        covered = (o_err.abs() <= o.loc[o_err.index, "optical_uncertainty_us"]).mean() if len(o_err) else None
        out["optical_skew_error_us"] = {**(_p50_p95(o_err) if len(o_err) else {}), "decoded": int(len(o_err)),
                                        "exit_code": opt.returncode,
                                        "uncertainty_us_p50": round(float(o["optical_uncertainty_us"].median()), 1),
                                        "within_uncertainty": None if covered is None else round(float(covered), 3),
                                        "readout_sources": sorted(set(o["readout_source"].dropna())),
                                        "goal_p95": 50.0,
                                        "meets_goal": bool(len(o_err)) and _pct(o_err, 95) <= 50}
        out["clock_minus_optical_us_median"] = round(float(o["clock_minus_optical_us"].median()), 1)
        cal = _cli("sync", "calibrate", str(tmp / f"{tag}-aligned"), "--rig", str(rig.yaml), "--json")
        if cal.returncode:
            raise SystemExit(cal.stderr)
        out["calibration"] = json.loads(cal.stdout)["calibration"]
        after = session(rig, tmp, f"{tag}-calibrated", True, n)
        out["after_calibration"] = {**_judged(after), "goals": {"pass_fraction": 0.9, "bound_coverage": 0.95,
                                                                 "bound_us_p50": 250.0, "false_passes": 0}}
        both = pd.concat([free, aligned, after])
        out["live_equals_check"] = round(float((both["verdict"] == both["check_verdict"]).mean()), 3)
        out["calibration_lowers_true_p95"] = (out["after_calibration"]["true_skew_us"]["p95"]
                                              < out["true_skew_us_phase_aligned"]["p95"])
    finally:
        rig.down()
    if sim:
        out["sim_session"] = sim_coverage(spec, tmp, 300, seed=len(name) + seed, bias_us=bias)
    out["loadavg_end"] = round(os.getloadavg()[0], 2)
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


HEADLINE = [("after_calibration", "pass_fraction"), ("after_calibration", "bound_coverage"),
            ("after_calibration", "bound_us_p50"), ("after_calibration", "false_passes"),
            ("before_calibration", "pass_fraction"), ("before_calibration", "bound_coverage"),
            ("before_calibration", "bound_us_p50"), ("live_equals_check",),
            ("after_calibration", "check_error_us", "p95"),
            ("after_calibration", "plain_interpolation", "error_us", "p95"),
            ("optical_skew_error_us", "p95"), ("true_skew_us_phase_aligned", "p95"),
            ("after_calibration", "true_skew_us", "p95"), ("loadavg_start",)]


def summarise(runs: list[dict]) -> dict:
    """Median and spread (min, max) of each headline figure over runs of one profile."""
    out: dict = {"benchmark": "capture_sync_summary", "link": runs[0]["link"], "profile": runs[0]["profile"],
                 "runs": len(runs), "seeds": [r["seed"] for r in runs],
                 "calibration_lowers_true_p95_in": sum(bool(r.get("calibration_lowers_true_p95")) for r in runs)}
    for path in HEADLINE:
        vals = []
        for r in runs:
            v = r
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            if isinstance(v, int | float) and not isinstance(v, bool):
                vals.append(float(v))
        if vals:
            out[".".join(path)] = {"median": round(statistics.median(vals), 3), "min": round(min(vals), 3),
                                   "max": round(max(vals), 3)}
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
    ap.add_argument("--seed", type=int, default=0, help="first rig seed (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=1, help="runs per profile, seeds seed.. (default: %(default)s)")
    ap.add_argument("--profile", default="vphone-5x", help="phone profile of the virtual rig (default: %(default)s)")
    ap.add_argument("--load", type=int, default=0, help="busy processes beside the rig (default: %(default)s)")
    ap.add_argument("--lead-ms", type=float, default=150.0,
                    help="trigger lead (default: %(default)s, CaptureConfig's; 400 on a loaded host)")
    ap.add_argument("--sim", action="store_true", help="also a 300-capture hzsr sim session per profile")
    ap.add_argument("--host-overhead", action="store_true", help="measure full-res host overhead instead")
    args = ap.parse_args(argv)
    LEAD_MS["lead_ms"] = args.lead_ms
    outs = []
    busy = [subprocess.Popen([sys.executable, "-c", "while True:\n    sum(range(10000))"])
            for _ in range(args.load)]
    try:
        with tempfile.TemporaryDirectory() as t:
            if args.host_overhead:
                outs.append(host_overhead(Path(t)))
                print(json.dumps(outs[-1]), flush=True)
                return outs
            by_profile: dict[str, list[dict]] = {}
            for k in range(args.runs):  # interleaved: run k of every profile before run k + 1
                for name in args.link or list(PROFILES):
                    r = bench_profile(name, PROFILES[name], Path(t), args.captures, args.rounds, args.seed + k,
                                      args.profile, args.sim)
                    r["load_processes"], r["lead_ms"] = args.load, args.lead_ms
                    by_profile.setdefault(name, []).append(r)
                    outs.append(r)
                    print(json.dumps(r), flush=True)
            if args.runs > 1:
                for runs in by_profile.values():
                    outs.append({**summarise(runs), "load_processes": args.load})
                    print(json.dumps(outs[-1]), flush=True)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    return outs


if __name__ == "__main__":
    main()
