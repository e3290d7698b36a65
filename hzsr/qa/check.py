"""``hzsr qa check SESSION``: every capture measured and judged; CSV, maps, summary and report.

Writes, under ``<session>/qa/`` (each file atomically; a rerun replaces them):

- ``qa.csv``: one row per capture (``docs/qa.md`` lists the columns);
- ``maps/<capture>/``: each map as a grey PNG (white = do not trust the reference) and thumbnails;
- ``summary.json``: verdict counts, reason counts, medians, the config used;
- ``report.html``: one self-contained page for curators (``hzsr.qa.report``).

Sync skew is joined from ``<session>/sync/sync.csv`` when ``hzsr sync check`` has run.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from hzsr.core.errors import SessionFormatError
from hzsr.core.fileio import atomic_write_bytes, atomic_write_json
from hzsr.core.schema import to_plain
from hzsr.qa.capture_qa import CaptureQA, analyse_capture
from hzsr.qa.config import QAConfig

#: Columns first in qa.csv, in this order; every other measured figure follows, sorted.
LEAD_COLUMNS = ["capture_id", "scene_id", "verdict", "reasons", "codes", "sync_skew_us", "sync_verdict"]


def _encode(img: np.ndarray, ext: str, quality: int = 85) -> bytes:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise RuntimeError(f"cannot encode {ext}")
    return buf.tobytes()


def overlay(base_rgb: np.ndarray, maps: dict[str, np.ndarray]) -> np.ndarray:
    """A grey version of ``base_rgb`` with occlusion in red, rejection in green, defocus in blue."""
    g = cv2.cvtColor(base_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) * 0.55
    out = np.stack([g, g, g], -1)
    h, w = g.shape
    for ch, key in ((0, "occlusion"), (1, "reject"), (2, "defocus")):
        m = maps.get(key)
        if m is not None:
            m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            out[..., ch] += m * (200.0 / 255.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def _write_derived(path: Path, data: bytes) -> None:
    """Atomic (temp file + rename) but not fsync'd: maps are derived and a rerun remakes them, and
    twenty fsyncs per capture would cost more than the QA itself on slow disks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_images(q: CaptureQA, maps_dir: Path) -> dict[str, bytes]:
    """Write ``q``'s maps and thumbnails; return the report's thumbnails as JPEG bytes."""
    d = maps_dir / q.capture_id
    thumbs: dict[str, bytes] = {}
    for name, img in q.images.items():
        if name.startswith("map_"):
            _write_derived(d / f"{name[4:]}.png", _encode(img, ".png"))
        else:
            data = _encode(img, ".jpg")
            _write_derived(d / f"{name[4:]}.jpg", data)
    small = {k: v for k, v in q.images.items() if k in ("img_main_W_crop", "img_main_T", "img_ref_T")}
    for k, v in small.items():
        thumbs[k[4:]] = _encode(_thumb(v, 240), ".jpg", 80)
    for pair in ("wt", "wr"):
        base = q.images.get("img_main_W_crop")
        if base is None:
            continue
        maps = {k.split("_", 2)[2]: v for k, v in q.images.items() if k.startswith(f"map_{pair}_")}
        if maps:
            ov = overlay(base, maps)
            _write_derived(d / f"{pair}_overlay.jpg", _encode(ov, ".jpg"))
            thumbs[f"{pair}_overlay"] = _encode(_thumb(ov, 240), ".jpg", 80)
    return thumbs


def _thumb(img: np.ndarray, n: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(1.0, n / max(h, w))
    return img if s >= 1 else cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


def _work(args: tuple[str, QAConfig, bool, str | None]) -> tuple[dict[str, Any], list[tuple[str, str, str]], dict]:
    """One capture, in a worker process: analyse, write its maps, return the row and thumbnails."""
    capture_dir, cfg, quick, maps_dir = args
    q = analyse_capture(capture_dir, cfg, quick=quick, thumbs=maps_dir is not None)
    thumbs = _write_images(q, Path(maps_dir)) if maps_dir is not None else {}
    q.row["verdict"] = q.verdict
    return q.row, [(r.level, r.code, r.message) for r in q.reasons], thumbs


def _mp_context():
    """A fork server with QA preloaded: workers start fast, and never fork a process whose
    OpenCV thread pool is running (a forked child would deadlock on its first parallel call)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["hzsr.qa.capture_qa"])
    return ctx


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core: OpenCV's own threads would only contend


def _sync_rows(session: Path) -> dict[str, dict[str, Any]]:
    p = session / "sync" / "sync.csv"
    if not p.is_file():
        return {}
    try:
        df = pd.read_csv(p)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SessionFormatError(f"cannot read: {exc}", file=p) from None
    if "capture_id" not in df or "skew_ref_main_us" not in df:
        raise SessionFormatError("expected columns capture_id and skew_ref_main_us", file=p)
    return {str(r["capture_id"]): r for r in df.to_dict("records")}


def _join_sync(row: dict, reasons: list, sync: dict[str, Any] | None, cfg: QAConfig) -> None:
    if sync is None:
        return
    skew = sync.get("skew_ref_main_us")
    row["sync_skew_us"] = skew
    row["sync_verdict"] = sync.get("verdict")
    if skew is None or not np.isfinite(skew):
        return
    th = cfg.thresholds
    for level, limit in (("fail", th.fail_skew_us), ("warn", th.warn_skew_us)):
        if abs(skew) > limit:
            reasons.append((level, "sync_skew", f"reference T {skew / 1e3:+.2f} ms from main W (sync/sync.csv); "
                            f"|skew| > {limit:g} us"))
            return


def run_check(session_dir: str | Path, cfg: QAConfig | None = None, *, workers: int = 1, quick: bool = False,
              report: bool = True, maps: bool = True, progress: bool = True) -> dict[str, Any]:
    """Run QA over a session folder; write ``<session>/qa/``; return the summary."""
    cfg = cfg or QAConfig()
    session = Path(session_dir)
    cap_root = session / "captures"
    if not session.is_dir():
        raise SessionFormatError("session folder not found", file=session)
    if not cap_root.is_dir():
        raise SessionFormatError("no captures/ folder", file=session)
    dirs = sorted(p for p in cap_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    out = session / "qa"
    maps_dir = out / "maps" if (maps and cfg.check.write_maps) else None
    sync = _sync_rows(session)
    t0 = time.perf_counter()
    jobs = [(str(d), cfg, quick, str(maps_dir) if maps_dir else None) for d in dirs]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(workers, mp_context=_mp_context(), initializer=_init_worker) as ex:
            results = list(tqdm(ex.map(_work, jobs), total=len(jobs), desc="qa", disable=not progress))
    else:
        results = [_work(j) for j in tqdm(jobs, desc="qa", disable=not progress)]
    wall = time.perf_counter() - t0

    rows, all_thumbs = [], {}
    for row, reasons, thumbs in results:
        reasons = list(reasons)
        _join_sync(row, reasons, sync.get(row["capture_id"]), cfg)
        levels = {r[0] for r in reasons}
        row["verdict"] = "fail" if "fail" in levels else ("warn" if "warn" in levels else "pass")
        row["reasons"] = " | ".join(f"{lv}: {code}: {msg}" for lv, code, msg in reasons)
        row["codes"] = ";".join(sorted({code for _, code, _ in reasons}))
        rows.append(row)
        all_thumbs[row["capture_id"]] = thumbs
    df = pd.DataFrame(rows)
    for c in LEAD_COLUMNS:
        if c not in df:
            df[c] = np.nan if c.startswith("sync_skew") else ""
    df = df[LEAD_COLUMNS + sorted(c for c in df.columns if c not in LEAD_COLUMNS)]
    atomic_write_bytes(out / "qa.csv", df.to_csv(index=False, float_format="%.6g").encode())
    summary = summarise(df, cfg, session, wall, workers, quick, bool(sync))
    atomic_write_json(out / "summary.json", summary)
    if report:
        from hzsr.qa.report import write_report

        write_report(out / "report.html", df, all_thumbs, summary, cfg)
    return summary


def summarise(df: pd.DataFrame, cfg: QAConfig, session: Path, wall: float, workers: int, quick: bool,
              synced: bool) -> dict[str, Any]:
    """The machine-readable summary of a run (``summary.json``)."""
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
    return pd.read_csv(Path(session_dir) / "qa" / "qa.csv")
