"""``hzsr sync check``: per-capture skew with error bounds, health flags and verdicts.

Writes ``<session>/sync/sync.csv`` (one ``SyncRow`` per complete capture), ``sync/summary.json``
(with the discarded, unfinished and abandoned captures counted) and two plots. Skew is judged by
the one skew rule (``hzsr.core.verdict.skew_reasons``). Bad captures are verdicts, not errors:
the command fails only when the session itself cannot be read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hzsr.core.clockmap import loose_trigger_text, skew_bound_ns
from hzsr.core.errors import SessionFormatError
from hzsr.core.fileio import atomic_write_bytes, atomic_write_json
from hzsr.core.records import CaptureRecord, SessionRecord, read_json
from hzsr.core.schema import parse_dataclass
from hzsr.core.session import CaptureState, SessionPaths, captures, count_states
from hzsr.core.tables import SYNC_TABLE, SyncRow
from hzsr.core.verdict import SkewThresholds, Verdict, skew_reasons
from hzsr.sync.pairing import pair_frames
from hzsr.sync.timebase import Timebase

VERDICTS = tuple(v.value for v in Verdict)
VERDICT_COLORS = {"pass": "tab:green", "warn": "tab:orange", "fail": "tab:red"}
#: Flags that fail a capture; every other flag warns. The skew rule's own levels are in core/verdict.py.
FAIL_FLAGS = {
    "bad_record", "timestamp_source_unknown", "no_clock_sync", "non_monotonic", "clock_jump",
    "skew_exceeds_max", "skew_exceeds_limit", "trigger_from_loose_sample", "pairing_unmatched",
    "pairing_ambiguous", "pairing_contested",
    "pairing_crossed", "missing_frame",
}


@dataclass
class SyncThresholds:
    """Thresholds of ``hzsr sync check``; every default lives here."""

    skew: SkewThresholds = field(default_factory=SkewThresholds)  # the one skew rule's levels
    max_drift_ppm: float = 100.0  # phone vs host; crystals are specified to tens of ppm
    min_jump_us: float = 1000.0  # smallest offset step reported as a clock jump
    wander_ppm: float = 0.5  # oscillator wander between syncs, for the mapping bound


def session_skew_thresholds(session: SessionRecord, th: SyncThresholds) -> SkewThresholds:
    """``th.skew`` with the pass limit of the rig the session was shot on (``rig.yaml``'s
    ``sync.pass_limit_us``, recorded in ``session.json``), unless ``th`` sets another."""
    rig = session.config.get("rig") if isinstance(session.config, dict) else None
    limit = (rig or {}).get("sync", {}).get("pass_limit_us") if isinstance(rig, dict) else None
    if th.skew.pass_limit_us != SkewThresholds().pass_limit_us or not isinstance(limit, int | float) \
            or isinstance(limit, bool) or not limit > 0:
        return th.skew
    return SkewThresholds(pass_limit_us=float(limit), max_skew_us=th.skew.max_skew_us)


def load_captures(root: Path) -> tuple[list[CaptureRecord], list[dict[str, Any]]]:
    """The session's complete captures: (parsed records, [{capture_id, reason}] of bad ones)."""
    good, bad = [], []
    for cap in captures(root, [CaptureState.COMPLETE]):
        path = cap.dir / "capture.json"
        try:
            data = read_json(path)
        except SessionFormatError as exc:
            bad.append({"capture_id": cap.capture_id, "reason": f"capture.json: {exc.field or '-'}: {exc.message}"})
            continue
        rec, problems = parse_dataclass(CaptureRecord, data)
        if problems:
            p = problems[0]
            more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
            bad.append({"capture_id": cap.capture_id, "reason": f"capture.json: {p.field}: {p.message}{more}"})
        else:
            good.append(rec)
    return good, bad


def _frame_period(recs: list[CaptureRecord], serial: str) -> float | None:
    """Median ``dts / dframe_number`` over consecutive captures of one device."""
    pts = sorted((f.frame_number, f.sensor_timestamp_ns) for r in recs for f in r.frames
                 if f.device == serial and f.frame_number is not None and f.slot != "main_T")
    pts = list(dict(pts).items())
    if len(pts) < 2:
        return None
    n = np.diff([p[0] for p in pts]).astype(np.float64)
    t = np.diff([p[1] for p in pts]).astype(np.float64)
    ok = n > 0
    return float(np.median(t[ok] / n[ok])) if ok.any() else None


def analyse(session: SessionRecord, recs: list[CaptureRecord], bad: list[dict[str, Any]],
            th: SyncThresholds) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Rows (one per capture) and the summary, without touching the disk."""
    timebases: dict[str, Timebase | None] = {}
    jumps: dict[str, list] = {}
    for d in session.devices:
        try:
            # Segments: the jumps capture recorded, plus steps found in the samples.
            timebases[d.serial] = Timebase.from_clock(d.clock, th.wander_ppm).with_detected_segments(
                th.min_jump_us * 1e3)
            jumps[d.serial] = timebases[d.serial].jumps(th.min_jump_us * 1e3)
        except ValueError:
            timebases[d.serial] = None
            jumps[d.serial] = []
    periods = {d.serial: _frame_period(recs, d.serial) for d in session.devices}
    main_dev = next((d for d in session.devices if d.role == "main"), None)
    wt_measurable = main_dev is not None and main_dev.sync_type == "CALIBRATED"

    def order_key(r: CaptureRecord):
        return (r.trigger_host_ns if r.trigger_host_ns is not None else 0, r.capture_id)

    recs = sorted(recs, key=order_key)
    skew_th = session_skew_thresholds(session, th)
    calibrated = all(d.clock.calibration is not None for d in session.devices)
    last_ts: dict[str, int] = {}
    rows = []
    for r in recs:
        flags: list[str] = []
        reasons: list[str] = []
        row: dict[str, Any] = {"capture_id": r.capture_id, "scene_id": r.scene_id}
        frames = {f.slot: f for f in r.frames}
        for slot in ("main_W", "ref_T"):
            if slot not in frames:
                flags.append("missing_frame")
                reasons.append(f"no {slot} frame")
        for f in r.frames:
            if f.timestamp_source != "REALTIME":
                flags.append("timestamp_source_unknown")
                reasons.append(f"{f.slot}: timestamp_source is {f.timestamp_source}: the sensor clock is "
                               "not boot time, so it cannot be mapped to the host (sub-ms sync impossible)")
            if f.slot != "main_T":
                prev = last_ts.get(f.device)
                if prev is not None and f.sensor_timestamp_ns <= prev:
                    flags.append("non_monotonic")
                    reasons.append(f"{f.slot}: sensor_timestamp_ns {f.sensor_timestamp_ns} <= previous {prev}")
                last_ts[f.device] = f.sensor_timestamp_ns
        mapped: dict[str, tuple[float, float]] = {}
        for slot, f in frames.items():
            tb = timebases.get(f.device)
            if tb is None:
                flags.append("no_clock_sync")
                reasons.append(f"{f.slot}: device {f.device} has no clock-sync samples")
                continue
            h, b = tb.to_host(np.array([f.sensor_timestamp_ns]), near_host_ns=r.trigger_host_ns)
            mapped[slot] = (float(h[0]), float(b[0]))
            when = r.trigger_host_ns if r.trigger_host_ns is not None else h[0]
            for j in jumps.get(f.device, []):
                if j.after_host_ns < when < j.before_host_ns:
                    flags.append("clock_jump")
                    reasons.append(f"{f.device}: clock stepped {j.jump_ns / 1e6:+.3f} ms between syncs "
                                   "around this capture; its mapping cannot be trusted")
        skew = bound = np.nan
        usable = "timestamp_source_unknown" not in flags
        if usable and "main_W" in mapped and "ref_T" in mapped:
            skew = (mapped["ref_T"][0] - mapped["main_W"][0]) / 1e3
            bound = skew_bound_ns(mapped["main_W"][1], mapped["ref_T"][1]) / 1e3
            row["main_W_host_ns"] = int(mapped["main_W"][0])
            row["ref_T_host_ns"] = int(mapped["ref_T"][0])
            loose = loose_trigger_text(r.trigger_samples)
            for reason in skew_reasons(skew, bound, skew_th, calibrated=calibrated, loose_trigger=loose):
                flags.append(reason.code)
                reasons.append(reason.message)
            ref_serial = frames["ref_T"].device
            period = periods.get(ref_serial)
            if period and abs(skew) * 1e3 > 0.5 * period:
                n = round(abs(skew) * 1e3 / period)
                if abs(abs(skew) * 1e3 - n * period) < 0.15 * period:
                    flags.append(f"off_by_{n}_frames")
                    reasons.append(f"ref_T is {n} frame period(s) ({period / 1e6:.1f} ms) "
                                   f"{'late' if skew > 0 else 'early'}")
        row["skew_ref_main_us"] = skew
        row["skew_bound_us"] = bound
        if wt_measurable and "main_W" in frames and "main_T" in frames:
            row["skew_wt_us"] = (frames["main_T"].sensor_timestamp_ns - frames["main_W"].sensor_timestamp_ns) / 1e3
            row["skew_wt_note"] = "CALIBRATED sync: from timestamps"
        else:
            row["skew_wt_us"] = np.nan
            row["skew_wt_note"] = ("not measurable from timestamps: APPROXIMATE multi-camera sync stamps "
                                   "W and T alike; only image content can show it")
        for d in session.devices:
            if d.clock.drift_ppm is not None and abs(d.clock.drift_ppm) > th.max_drift_ppm:
                flags.append("drift_high")
                reasons.append(f"{d.serial}: drift {d.clock.drift_ppm:.1f} ppm beyond {th.max_drift_ppm:.0f}")
        row["flags"] = flags
        row["reasons"] = reasons
        rows.append(row)
    for b in bad:
        rows.append({"capture_id": b["capture_id"], "flags": ["bad_record"], "reasons": [b["reason"]],
                     "skew_ref_main_us": np.nan, "skew_bound_us": np.nan, "skew_wt_us": np.nan})

    df = pd.DataFrame(rows, columns=[
        "capture_id", "scene_id", "main_W_host_ns", "ref_T_host_ns", "skew_ref_main_us",
        "skew_bound_us", "skew_wt_us", "skew_wt_note", "flags", "reasons"])
    _pairing_flags(df, th.skew.max_skew_us * 1e3)
    df["flags"] = df["flags"].apply(lambda fl: sorted(set(fl)))
    df["verdict"] = df["flags"].apply(
        lambda fl: "fail" if any(f in FAIL_FLAGS or f.startswith("off_by_") for f in fl)
        else ("warn" if fl else "pass"))
    df = df.sort_values("capture_id").reset_index(drop=True)
    return df, _summary(session, df, th, jumps)


def _pairing_flags(df: pd.DataFrame, tol_ns: float) -> None:
    """Pair every main_W with every ref_T by time; a capture's own pair must be each other."""
    ok = df.dropna(subset=["main_W_host_ns", "ref_T_host_ns"])
    if ok.empty:
        return
    main = pd.DataFrame({"key": ok["capture_id"], "host_ns": ok["main_W_host_ns"].astype(np.float64)})
    ref = pd.DataFrame({"key": ok["capture_id"], "host_ns": ok["ref_T_host_ns"].astype(np.float64)})
    pairs = pair_frames(main, ref, tol_ns)
    by_id = df.set_index("capture_id")
    for _, p in pairs.iterrows():
        if p["status"] == "orphaned":
            key, flag = p["ref_key"], "pairing_unmatched"
        elif p["status"] != "matched":
            key, flag = p["main_key"], f"pairing_{p['status']}"
        elif p["main_key"] != p["ref_key"]:
            key, flag = p["main_key"], "pairing_crossed"
        else:
            continue
        by_id.at[key, "flags"].append(flag)
        by_id.at[key, "reasons"].append(f"by timestamp, main_W/ref_T pairing is {flag.split('_')[1]}")


def _pct(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if len(x) else None


def _summary(session: SessionRecord, df: pd.DataFrame, th: SyncThresholds, jumps) -> dict[str, Any]:
    skew = np.abs(df["skew_ref_main_us"].dropna().to_numpy())
    bound = df["skew_bound_us"].dropna().to_numpy()
    flag_counts: dict[str, int] = {}
    for fl in df["flags"]:
        for f in fl:
            flag_counts[f] = flag_counts.get(f, 0) + 1
    return {
        "session_id": session.session_id,
        "captures": int(len(df)),
        "verdicts": {v: int((df["verdict"] == v).sum()) for v in VERDICTS},
        "skew_abs_us": {"p50": _pct(skew, 50), "p95": _pct(skew, 95), "max": _pct(skew, 100),
                        "measured": int(len(skew))},
        "skew_bound_us": {"p50": _pct(bound, 50), "p95": _pct(bound, 95)},
        "devices": {d.serial: {"role": d.role, "drift_ppm": d.clock.drift_ppm,
                               "drift_ppm_stderr": d.clock.drift_ppm_stderr,
                               "clock_samples": len(d.clock.samples),
                               "clock_jumps": [asdict(j) for j in jumps.get(d.serial, [])],
                               "timestamp_sources": sorted({c.timestamp_source for c in d.cameras})}
                    for d in session.devices},
        "flags": flag_counts,
        "thresholds": {**asdict(th), "skew": asdict(session_skew_thresholds(session, th))},
        "calibrated": all(d.clock.calibration is not None for d in session.devices),
    }


def _plots(out: Path, session: SessionRecord, df: pd.DataFrame, th: SyncThresholds) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    d = df.dropna(subset=["skew_ref_main_us"])
    x = np.arange(len(d))
    ax.errorbar(x, d["skew_ref_main_us"], yerr=d["skew_bound_us"], fmt="none",
                ecolor="0.6", elinewidth=1, label="clock-sync error bound")
    for v in VERDICTS:  # one scatter per verdict, so the legend names each colour
        m = (d["verdict"] == v).to_numpy()
        ax.scatter(x[m], d["skew_ref_main_us"][m], c=VERDICT_COLORS[v], s=14, zorder=3,
                   label=f"{v} ({int(m.sum())})")
    m = th.skew.max_skew_us
    for k, y in enumerate((m, -m)):
        ax.axhline(y, color="tab:red", lw=0.8, ls="--", label=f"+-max_skew_us ({m:g})" if k == 0 else None)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("capture (in order)")
    ax.set_ylabel("ref_T - main_W skew (us)")
    ax.set_title(f"{session.session_id}: skew with error bound")
    ax.set_yscale("symlog", linthresh=max(th.skew.warn_skew_us, 1.0))
    fig.tight_layout()
    _save(fig, out / "skew.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    for dev in session.devices:
        s = dev.clock.samples
        if not s:
            continue
        h = np.array([x.host_ns for x in s], np.float64)
        o = np.array([x.offset_ns for x in s], np.float64)
        e = np.array([x.rtt_ns / 2 for x in s], np.float64)
        t = (h - h[0]) / 1e9
        pts = ax.errorbar(t, (o - o[0]) / 1e3, yerr=e / 1e3, fmt="o", ms=3, label=f"{dev.role} {dev.serial}")
        if dev.clock.drift_ppm is not None:  # the fit in its points' colour, so each line reads as theirs
            ax.plot(t, dev.clock.drift_ppm * t, lw=1, color=pts[0].get_color(),
                    label=f"{dev.role} fit {dev.clock.drift_ppm:+.2f} ppm")
    ax.set_xlabel("session time (s)")
    ax.set_ylabel("offset change since first sync (us)")
    ax.set_title("clock offset vs time, with drift fit")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, out / "offset.png")
    plt.close(fig)


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())


def _not_checked(root: Path) -> dict[str, Any]:
    """The captures sync check leaves out, by state: discarded, unfinished and abandoned."""
    out: dict[str, Any] = {}
    for state in (CaptureState.DISCARDED, CaptureState.UNFINISHED, CaptureState.ABANDONED):
        ids = [c.capture_id for c in captures(root, [state])]
        out[state.value] = {"count": len(ids), "capture_ids": ids}
    return out


def _nan_none(v: Any) -> Any:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def sync_rows(df: pd.DataFrame) -> list[SyncRow]:
    """``analyse``'s frame as the table's typed rows."""
    out = []
    for r in df.to_dict("records"):
        ints = {k: (None if _nan_none(r.get(k)) is None else int(r[k])) for k in ("main_W_host_ns", "ref_T_host_ns")}
        out.append(SyncRow(
            capture_id=str(r["capture_id"]), scene_id=_nan_none(r.get("scene_id")), **ints,
            skew_ref_main_us=_nan_none(r.get("skew_ref_main_us")), skew_bound_us=_nan_none(r.get("skew_bound_us")),
            skew_wt_us=_nan_none(r.get("skew_wt_us")), skew_wt_note=_nan_none(r.get("skew_wt_note")) or "",
            flags=list(r["flags"]), reasons=list(r["reasons"]), verdict=Verdict(r["verdict"])))
    return out


def run_sync_check(session_dir: str | Path, th: SyncThresholds | None = None, plots: bool = True) -> dict:
    """Check ``session_dir`` and write ``sync/``; returns the summary."""
    th = th or SyncThresholds()
    root = Path(session_dir)
    paths = SessionPaths(root)
    session = SessionRecord.load(root)
    recs, bad = load_captures(root)
    df, summary = analyse(session, recs, bad, th)
    not_checked = _not_checked(root)
    summary["abandoned"] = not_checked["abandoned"]
    summary["not_checked"] = not_checked
    summary["states"] = count_states(captures(root))
    SYNC_TABLE.write(paths.sync_csv, sync_rows(df))
    atomic_write_json(paths.sync_dir / "summary.json", json.loads(json.dumps(summary, default=float)))
    if plots and len(df):
        _plots(paths.sync_dir, session, df, th)
    return summary
