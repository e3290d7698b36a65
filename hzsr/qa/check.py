"""``hzsr qa check SESSION``: every capture measured and judged; CSV, maps, summary and report.

Writes, under ``<session>/qa/`` (each file atomically; a rerun replaces them):

- ``qa.csv``: one row per capture (``docs/qa.md`` lists the columns);
- ``maps/<capture>/``: each map as a grey PNG (white = do not trust the reference) and thumbnails;
- ``summary.json``: verdict counts, reason counts, medians, the config used;
- ``report.html``: one self-contained page for curators (``hzsr.qa.report``).

Only complete captures are checked (``hzsr.core.session.captures``): discarded, unfinished and
abandoned ones are counted in the summary, never judged. Sync skew is joined from
``<session>/sync/sync.csv`` when ``hzsr sync check`` has run, with sync's verdict of it: qa never
judges skew again with numbers of its own.
"""

from __future__ import annotations

import importlib
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from hzsr.core.bulkio import release_freed_buffers, reuse_freed_buffers
from hzsr.core.errors import SessionFormatError
from hzsr.core.fileio import atomic_write_json
from hzsr.core.schema import to_plain
from hzsr.core.session import CaptureState, SessionPaths, captures, count_states
from hzsr.core.tables import QA_TABLE, SYNC_TABLE, QARow, SyncRow
from hzsr.core.verdict import Reason, Verdict, verdict_of
from hzsr.qa.capture_qa import (
    CaptureQA,
    focus_offsets_of,
    focus_plane_differs,
    grade_depth,
    grade_tt_shift,
    median_margin,
    session_tt_offset,
)
from hzsr.qa.config import QAConfig
from hzsr.qa.rig_offset import KEY as DEPTH_OFFSET_KEY
from hzsr.qa.rig_offset import depth_offset_record, main_device
from hzsr.qa.work import _init_worker, _mp_context, _work, _write_images, overlay  # noqa: F401 (their old home)

if TYPE_CHECKING:
    import pandas as pd


def _sync_rows(session: Path) -> dict[str, SyncRow]:
    p = SessionPaths(session).sync_csv
    return {r.capture_id: r for r in SYNC_TABLE.read(p)} if p.is_file() else {}


def _join_sync(row: dict, reasons: list[Reason], sync: SyncRow | None) -> None:
    """sync check's figures and verdict of this capture's skew, as a qa reason when not pass."""
    if sync is None:
        return
    row["sync_skew_us"] = sync.skew_ref_main_us
    row["sync_verdict"] = sync.verdict
    level = sync.skew_verdict
    if level is None or level is Verdict.PASS:
        return
    skew_msgs = [m for f, m in zip(sync.flags, sync.reasons, strict=False) if f.startswith(("skew_", "bound_"))]
    detail = "; ".join(skew_msgs) or "see sync/sync.csv"
    reasons.append(Reason(level, "sync_skew", f"reference T {sync.skew_ref_main_us / 1e3:+.2f} ms from main W "
                          f"(sync/sync.csv: {detail})"))


def run_check(session_dir: str | Path, cfg: QAConfig | None = None, *, workers: int = 1, quick: bool = False,
              report: bool = True, maps: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run QA over a session folder; write ``<session>/qa/``; return the summary."""
    cfg = cfg or QAConfig()
    session = Path(session_dir)
    paths = SessionPaths(session)
    if not session.is_dir():
        raise SessionFormatError("session folder not found", file=session, unreadable=True)
    if not paths.captures.is_dir():
        raise SessionFormatError("no captures/ folder", file=session)
    all_caps = list(captures(session))
    dirs = [c.dir for c in all_caps if c.state is CaptureState.COMPLETE]
    out = paths.qa_dir
    maps_dir = out / "maps" if (maps and cfg.check.write_maps) else None
    sync = _sync_rows(session)
    t0 = time.perf_counter()
    jobs = [(str(d), cfg, quick, str(maps_dir) if maps_dir else None) for d in dirs]
    # One pool for both passes (the focus-plane pass below reuses its warm workers). Workers=1
    # analyses in this process, its freed 12 MP buffers kept for reuse as a worker keeps them
    # (work._init_worker), so that one and two workers do the same work per capture; the heap is
    # trimmed when the run is done.
    pool = (ProcessPoolExecutor(workers, mp_context=_mp_context(), initializer=_init_worker)
            if workers > 1 and len(jobs) > 1 else None)
    tuned = pool is None and bool(jobs) and reuse_freed_buffers()
    try:
        if pool is not None:
            done_iter = pool.map(_work, jobs)  # every capture submitted: the workers start
            # pandas (the CSV and the summary; ~0.5 s of CPU) imported while they analyse, not
            # before them (a fresh `hzsr qa check`'s longest import) nor after them.
            importlib.import_module("pandas")
            results = list(tqdm(done_iter, total=len(jobs), desc="qa", disable=not progress))
        else:
            results = [_work(j) for j in tqdm(jobs, desc="qa", disable=not progress)]
        # M_defocus's plane in focus from the depth-flow relation (issue 18, defocus pass): the
        # session's offset of each W-crop pairing, then the few captures whose AF ROI's largest flow
        # cluster is another plane than the focus distance's (a near foreground at its centre) are
        # measured again from that plane.
        foffs = focus_offsets_of([r for r, _, _ in results], cfg.rig.min_captures_for_offset)
        switch = {i: focus_plane_differs(r, foffs, cfg) for i, (r, _, _) in enumerate(results)} if foffs else {}
        again = [i for i, sw in switch.items() if sw]
        if again:
            redo = [(*jobs[i], switch[i]) for i in again]
            done = list(pool.map(_work, redo)) if pool is not None else [_work(j) for j in redo]
            for i, res in zip(again, done, strict=True):
                res[0]["defocus_from_focus_distance"] = 1
                results[i] = res
    finally:
        if pool is not None:
            pool.shutdown()
        if tuned:
            release_freed_buffers()
    for r, _, _ in results:
        for name, off in foffs.items():
            r[f"{name}_session_focus_offset_dx"], r[f"{name}_session_focus_offset_dy"] = off
    wall = time.perf_counter() - t0

    # The mount's rotation reads as a depth offset shared by the whole session: its median over
    # the session's captures (most are focused on their subject) is removed before `defocused`
    # is graded again (capture_qa.grade_depth).
    deps = [r["subject_depth_departure_d"] for r, _, _ in results
            if np.isfinite(r.get("subject_depth_departure_d", np.nan))]
    # Too few captures for a median: each keeps its own farthest-plane estimate (capture_qa).
    offset = float(np.median(deps)) if len(deps) >= cfg.rig.min_captures_for_offset else None
    # Likewise the two Ts' relative rotation reads as a shift of every capture's T vs T: its median
    # is removed before large_shift is graded again (capture_qa.grade_tt_shift).
    tt_offset = session_tt_offset([r for r, _, _ in results], cfg.rig.min_captures_for_offset)
    rows, all_thumbs = [], {}
    for row, reasons, thumbs in results:
        reasons = [Reason(Verdict(lv), code, msg) for lv, code, msg in reasons]
        q = CaptureQA(row["capture_id"], row, reasons)
        if offset is not None:
            grade_depth(q, offset, cfg)
            row["session_depth_offset_d"] = offset
        if tt_offset is not None:
            grade_tt_shift(q, cfg, tt_offset)
        reasons = q.reasons
        _join_sync(row, reasons, sync.get(row["capture_id"]))
        row.pop("verdict", None)
        rows.append(QARow(
            capture_id=row.pop("capture_id"), scene_id=row.pop("scene_id", None), verdict=verdict_of(reasons),
            reasons=[r.text() for r in reasons], codes=sorted({r.code for r in reasons}),
            sync_skew_us=_finite(row.pop("sync_skew_us", None)), sync_verdict=row.pop("sync_verdict", None),
            figures={k: v for k, v in row.items() if v is not None}))
        all_thumbs[rows[-1].capture_id] = thumbs
    QA_TABLE.write(paths.qa_csv, rows)
    df = QA_TABLE.read_frame(paths.qa_csv)  # columns: QARow's fields in order, then every figure, sorted
    summary = summarise(df, cfg, session, wall, workers, quick, bool(sync))
    summary["not_checked"] = {s.value: [c.capture_id for c in all_caps if c.state is s]
                              for s in (CaptureState.DISCARDED, CaptureState.UNFINISHED, CaptureState.ABANDONED)}
    summary["states"] = count_states(all_caps)
    if offset is not None and dirs:  # for the quick check of this phone's later sessions (rig_offset)
        width = float(np.nanmedian([r.get("analysis_width", np.nan) for r, _, _ in results]))
        foc = {}
        for name, (dx, dy) in foffs.items() if np.isfinite(width) and width > 0 else ():
            d = np.asarray([(r[f"{name}_subject_dx"] - r[f"{name}_focus_expected_dx"],
                             r[f"{name}_subject_dy"] - r[f"{name}_focus_expected_dy"]) for r, _, _ in results
                            if all(np.isfinite(r.get(f"{name}_{k}", np.nan)) for k in
                                   ("subject_dx", "subject_dy", "focus_expected_dx", "focus_expected_dy"))])
            m = max(median_margin(list(d[:, 0])), median_margin(list(d[:, 1])))
            foc[name] = (dx / width, dy / width, m / width)
        rec = depth_offset_record(main_device(dirs[0]), offset,
                                  median_margin(deps, sigma_floor=cfg.rig.depth_scatter_d), len(deps), foc)
        if rec is not None:
            summary[DEPTH_OFFSET_KEY] = rec
    atomic_write_json(out / "summary.json", summary)
    if report:
        from hzsr.qa.report import write_report

        write_report(out / "report.html", df, all_thumbs, summary, cfg)
    return summary


def summarise(df: pd.DataFrame, cfg: QAConfig, session: Path, wall: float, workers: int, quick: bool,
              synced: bool) -> dict[str, Any]:
    """The machine-readable summary of a run (``summary.json``)."""
    import pandas as pd

    counts = df["verdict"].value_counts().to_dict() if len(df) else {}
    codes: dict[str, int] = {}
    for cs in df.get("codes", pd.Series(dtype=str)).fillna(""):
        for c in filter(None, str(cs).split(";")):
            codes[c] = codes.get(c, 0) + 1
    med = {}
    for c in ("wt_psnr_db", "wr_psnr_db", "wr_occluded_frac", "wr_rejected_frac", "main_T_defocus_frac",
              "ref_T_defocus_frac", "seconds"):
        if c in df and df[c].notna().any():
            med[c] = float(df[c].median())
    out = session / "qa"
    return {
        "session": str(session), "captures": int(len(df)),
        "verdicts": {k: int(counts.get(k, 0)) for k in ("pass", "warn", "fail")},
        "reason_counts": dict(sorted(codes.items(), key=lambda kv: -kv[1])),
        "medians": med, "wall_seconds": round(wall, 3), "workers": workers, "quick": quick,
        "sync_joined": synced, "config": to_plain(cfg),
        "outputs": {"csv": str(out / "qa.csv"), "summary": str(out / "summary.json"),
                    "report": str(out / "report.html"), "maps": str(out / "maps")},
    }


def summary_line(summary: dict[str, Any]) -> str:
    v = summary["verdicts"]
    top = ", ".join(f"{k} x{n}" for k, n in list(summary["reason_counts"].items())[:5])
    return (f"{summary['captures']} captures: {v['pass']} pass, {v['warn']} warn, {v['fail']} fail"
            f"{' (top reasons: ' + top + ')' if top else ''} in {summary['wall_seconds']:.1f} s")


def load_qa_csv(session_dir: str | Path) -> pd.DataFrame:
    """``qa.csv`` of a session as a DataFrame, read and checked by its one reader."""
    return QA_TABLE.read_frame(SessionPaths(Path(session_dir)).qa_csv)


def _finite(v: Any) -> float | None:
    return None if v is None or not np.isfinite(v) else float(v)
