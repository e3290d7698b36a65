"""``hzsr dataset pack``: session folders -> HDF5 shards and a manifest, resumable and parallel.

Plan, then write. The plan (``DIR/pack-plan.json``, written atomically before any shard) assigns
every capture to a shard: captures sorted by id, cut into shards of ``shard_size`` captures or
bytes. Each shard is then written independently (serially, by ``--workers`` processes, or as one
dask task each) under a temp name and renamed when complete. A rerun keeps the plan, skips shards
that exist, and plans captures it has not seen into new shards after the last one, so a killed
pack resumes with nothing duplicated, and packing the same input twice changes nothing. The
manifest is rebuilt from the shards last.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from hzsr.core.errors import ConfigError, DatasetError
from hzsr.core.fileio import atomic_write_json
from hzsr.core.records import read_json
from hzsr.dataset.codecs import CODECS, DEFAULT_CODEC
from hzsr.dataset.manifest import manifest_row, rows_to_frame, write_manifest
from hzsr.dataset.query import Query, parse_query
from hzsr.dataset.shard import TMP_PREFIX, shard_name, write_shard
from hzsr.dataset.sources import CaptureSource, SessionSource, session_sources

PLAN = "pack-plan.json"
_SHARD_RE = re.compile(r"^shard-(\d+)\.h5$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b)?\s*$", re.IGNORECASE)
_UNITS = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass
class PackConfig:
    """Options of ``hzsr dataset pack``; every default lives here."""

    shard_size: str = "1GiB"  # captures per shard ("64") or decoded bytes per shard ("1GiB", "500MB")
    filter: str | None = None  # a query (hzsr/dataset/query.py) over the manifest's columns: "verdict != 'fail'"
    compression: str = DEFAULT_CODEC  # one of CODECS; default chosen by bench/dataset.py
    workers: int | None = None  # cores to use: shards in parallel processes, else threads (None: all, one process)
    threads: int | None = None  # decode/hash threads per process; default: workers / processes
    scheduler: str | None = None  # dask.distributed scheduler address; one shard per task
    scheduler_timeout_s: float = 10.0  # give up connecting to the scheduler after this long
    wait_s: float = 0.0  # wait this long for another writer of the data set to finish; 0 = refuse at once
    truth: bool = False  # also store simulated captures' ground truth (<session>.truth/); hzsr/dataset/truth_arrays.py
    progress: bool = True


@dataclass
class PackResult:
    out: Path
    written: list[str] = field(default_factory=list)  # shards written by this run
    kept: list[str] = field(default_factory=list)  # shards already complete, skipped
    captures: int = 0  # captures in the data set after this run
    new_captures: int = 0
    filtered_out: int = 0
    skipped: list[str] = field(default_factory=list)  # captures not packed, with the reason
    refreshed: dict[str, list[str]] = field(default_factory=dict)  # packed capture -> results refreshed
    manifest: Path | None = None


def parse_shard_size(text: str) -> tuple[str, float]:
    """``"64"`` -> ("captures", 64); ``"1GiB"`` -> ("bytes", 2**30)."""
    m = _SIZE_RE.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"expected a capture count (64) or a size (1GiB, 500MB), got {text!r}",
                          field="--shard-size")
    if m.group(2) is None:
        if float(m.group(1)) != int(float(m.group(1))):
            raise ConfigError(f"a capture count must be whole, got {text!r}", field="--shard-size")
        return "captures", int(float(m.group(1)))
    return "bytes", float(m.group(1)) * _UNITS[m.group(2).lower()]


def _cut(caps: list[CaptureSource], size: tuple[str, float]) -> list[list[CaptureSource]]:
    kind, limit = size
    groups: list[list[CaptureSource]] = []
    cur: list[CaptureSource] = []
    acc = 0.0
    for c in caps:
        add = 1 if kind == "captures" else c.raw_bytes
        if cur and acc + add > limit:
            groups.append(cur)
            cur, acc = [], 0.0
        cur.append(c)
        acc += add
    if cur:
        groups.append(cur)
    return groups


def candidate_table(caps: list[CaptureSource]) -> pd.DataFrame:
    """The manifest rows these captures would get, for ``--filter``."""
    return rows_to_frame([manifest_row(c.meta, None) for c in caps])


def apply_filter(caps: list[CaptureSource], expr: str | Query | None) -> tuple[list[CaptureSource], int]:
    """The captures ``--filter`` keeps, and how many it dropped.

    The expression is parsed by ``hzsr.dataset.query`` (never run as Python) first, so a syntax
    error is reported even when there is nothing to filter; it is then evaluated over the manifest
    rows these captures would get.

    Args:
        caps: the captures found in the sessions.
        expr: the ``--filter`` expression, or it parsed; None or empty keeps every capture.

    Returns:
        The kept captures, in order, and the number filtered out.

    Raises:
        DatasetError: a bad expression (one line, field ``--filter``, exit 2).
    """
    if not expr:
        return caps, 0
    query = expr if isinstance(expr, Query) else parse_query(expr, option="--filter")
    if not caps:
        return caps, 0
    df = candidate_table(caps)
    keep = set(df["capture_id"][query.mask(df).to_numpy()])
    out = [c for c in caps if c.dataset_id in keep]
    return out, len(caps) - len(out)


def gather(sessions: Sequence[str | Path]) -> tuple[dict[str, SessionSource], list[CaptureSource], list[str]]:
    if not sessions:
        raise ConfigError("give at least one session folder", field="SESSION")
    sess: dict[str, SessionSource] = {}
    caps: list[CaptureSource] = []
    skipped: list[str] = []
    where: dict[str, Path] = {}
    for s in sessions:
        ss, cs, sk = session_sources(s)
        if ss.session_id in sess:
            raise DatasetError(f"session id {ss.session_id!r} also in {where[ss.session_id]}; "
                               "session ids must be unique in a data set", file=Path(s) / "session.json",
                               field="session_id")
        sess[ss.session_id] = ss
        where[ss.session_id] = Path(s)
        caps.extend(cs)
        skipped.extend(sk)
    caps.sort(key=lambda c: c.dataset_id)
    return sess, caps, skipped


def _shard_ids(path: Path) -> list[str] | None:
    """Capture ids of a complete shard, or None when it cannot be read."""
    import h5py

    from hzsr.dataset.shard import shard_header

    try:
        with h5py.File(path, "r") as h5:
            return shard_header(h5, path)
    except (OSError, DatasetError, KeyError):
        return None


def _load_plan(out: Path) -> list[dict[str, Any]]:
    p = out / PLAN
    if not p.is_file():
        return []
    data = read_json(p)
    if not isinstance(data, dict) or not isinstance(data.get("shards"), list):
        raise DatasetError("expected {'shards': [...]}", file=p, field="shards")
    return data["shards"]


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _task(args: tuple[str, list[CaptureSource], dict[str, SessionSource], str, int | None]) -> str:
    path, caps, sess, codec, threads = args
    write_shard(path, caps, sess, codec, threads)
    return Path(path).name


def pack_dataset(sessions: Sequence[str | Path], out: str | Path, cfg: PackConfig | None = None) -> PackResult:
    """Pack ``sessions`` into the data set folder ``out`` (created or resumed), as its one writer.

    Holds the data set's lock (``DatasetLock``) for the whole pack, and each session's lock
    (``SessionLock``) while it is read, so a second pack into ``out`` waits (``cfg.wait_s``) or is
    refused, and a session that ``hzsr capture`` is still writing is refused.

    Raises:
        DatasetBusyError: another process writes ``out`` (one line naming its PID).
        SessionBusyError: a session is being written by a capture.
    """
    from contextlib import ExitStack

    from hzsr.core.lock import DatasetLock

    cfg = cfg or PackConfig()
    _check_config(cfg)
    if not sessions:
        raise ConfigError("give at least one session folder", field="SESSION")
    for s in sessions:  # before the lock creates --out: a typo leaves nothing behind
        if not Path(s).is_dir():
            raise DatasetError("session folder not found", file=s, unreadable=True)
    with ExitStack() as stack:
        stack.enter_context(DatasetLock(out).acquire(cfg.wait_s))
        for s in sessions:
            stack.enter_context(_session_locked(Path(s)))
        return _pack_unlocked(sessions, out, cfg)


def _session_locked(session_dir: Path):
    """The session's capture lock while it is packed; a session hzsr cannot lock (read-only) is read as is."""
    from contextlib import nullcontext

    from hzsr.core.errors import SessionBusyError
    from hzsr.core.lock import SessionLock

    lock = SessionLock(session_dir)
    try:
        lock.acquire()
    except SessionBusyError as exc:
        raise SessionBusyError(f"{exc.message.split(';')[0]}: a capture is still being written; pack it when "
                               "the capture run has finished", file=session_dir) from None
    except PermissionError:  # a read-only session (another user's, a mounted archive): no capture writes it
        return nullcontext()
    except OSError as exc:
        if exc.errno == 30:  # EROFS
            return nullcontext()
        raise
    return lock


def _refresh_stale(shard_dir: Path, existing: dict[str, list[str]], found: dict[str, CaptureSource],
                   sess: dict[str, SessionSource]) -> dict[str, list[str]]:
    """Rewrite the sync/QA results and scene fields of packed captures whose session changed them.

    Pixels are not touched (``freshness.refresh_shard``). Returns capture id -> fields refreshed.
    """
    from hzsr.dataset.freshness import refresh_shard, stale_in_shard

    done: dict[str, list[str]] = {}
    for name, ids in sorted(existing.items()):
        if not any(i in found for i in ids):
            continue
        stale = stale_in_shard(shard_dir / name, found)
        if stale:
            refresh_shard(shard_dir / name, [found[i] for i in sorted(stale)], sess)
            done.update(stale)
    return done


def _check_config(cfg: PackConfig) -> None:
    if cfg.compression not in CODECS:
        raise ConfigError(f"unknown codec {cfg.compression!r}; known: {', '.join(CODECS)}", field="--compression")
    if cfg.workers is not None and cfg.workers < 1:
        raise ConfigError("must be >= 1", field="--workers")
    if not 0 <= cfg.wait_s <= 86400:
        raise ConfigError(f"must be in 0 .. 86400 seconds, got {cfg.wait_s:g}", field="--wait")
    parse_shard_size(cfg.shard_size)
    if cfg.filter:
        parse_query(cfg.filter, option="--filter")


def _pack_unlocked(sessions: Sequence[str | Path], out: str | Path, cfg: PackConfig | None = None) -> PackResult:
    """Pack ``sessions`` into the data set folder ``out`` (created or resumed)."""
    cfg = cfg or PackConfig()
    if cfg.compression not in CODECS:
        raise ConfigError(f"unknown codec {cfg.compression!r}; known: {', '.join(CODECS)}", field="--compression")
    if cfg.workers is not None and cfg.workers < 1:
        raise ConfigError("must be >= 1", field="--workers")
    workers = cfg.workers or _usable_cores()
    size = parse_shard_size(cfg.shard_size)
    query = parse_query(cfg.filter, option="--filter") if cfg.filter else None  # before reading anything
    out = Path(out)
    sess, caps, skipped = gather(sessions)
    found = {c.dataset_id: c for c in caps}  # before --filter: a packed capture's results refresh regardless
    caps, n_filtered = apply_filter(caps, query)
    if cfg.truth:  # read and checked before any shard is written: a bad truth file leaves nothing behind
        from hzsr.dataset.truth_arrays import attach_truth

        attach_truth(caps, sess)
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    for tmp in shard_dir.glob(f"{TMP_PREFIX}*"):
        tmp.unlink()  # left by a killed pack; never visible as a shard

    # What is already packed: complete shards are the truth, whatever the plan says.
    existing: dict[str, list[str]] = {}
    for p in sorted(shard_dir.glob("shard-*.h5")):
        ids = _shard_ids(p)
        if ids is None:
            raise DatasetError("shard unreadable; run `hzsr dataset verify --repair` or remove it", file=p)
        existing[p.name] = ids
    packed = {i for ids in existing.values() for i in ids}
    by_id = {c.dataset_id: c for c in caps}
    refreshed = _refresh_stale(shard_dir, existing, found, sess)

    plan = _load_plan(out)
    kept_plan = []
    for entry in plan:
        name, ids = entry["shard"], list(entry["captures"])
        if name in existing or all(i in by_id for i in ids):
            kept_plan.append({"shard": name, "captures": existing.get(name, ids)})
    in_plan = {e["shard"] for e in kept_plan}
    kept_plan += [{"shard": n, "captures": ids} for n, ids in existing.items() if n not in in_plan]
    planned = {i for e in kept_plan for i in e["captures"]}
    fresh = [c for c in caps if c.dataset_id not in packed and c.dataset_id not in planned]
    used = [int(m.group(1)) for e in kept_plan if (m := _SHARD_RE.match(e["shard"]))]
    nxt = max(used) + 1 if used else 0
    for k, group in enumerate(_cut(fresh, size)):
        kept_plan.append({"shard": shard_name(nxt + k), "captures": [c.dataset_id for c in group]})
    kept_plan.sort(key=lambda e: e["shard"])
    atomic_write_json(out / PLAN, {"shards": kept_plan})

    todo = [e for e in kept_plan if e["shard"] not in existing]
    res = PackResult(out=out, kept=sorted(existing), skipped=skipped, filtered_out=n_filtered,
                     new_captures=sum(len(e["captures"]) for e in todo))
    # --workers N is N cores' worth of work: N processes when there are that many shards to write,
    # else fewer processes with the decode/hash threads making up the rest (a 12 MP data set of a
    # few dozen captures is one or two 1 GiB shards, so threads are what a small pack can use).
    # The default (no --workers) stays one process: every usable core as threads.
    procs = min(workers, len(todo)) if cfg.workers and workers > 1 and len(todo) > 1 else 1
    threads = cfg.threads or max(1, workers // procs)
    tasks = [(str(shard_dir / e["shard"]), [by_id[i] for i in e["captures"]],
              {s: sess[s] for s in {by_id[i].session_id for i in e["captures"]}}, cfg.compression, threads)
             for e in todo]
    if threads > 1 and procs == 1 and not cfg.scheduler:
        from hzsr.core.bulkio import share_one_heap

        # Before the progress bar's monitor thread takes an arena of its own: write_shard's call
        # would come too late, and the decode threads would be handed that arena in turn.
        share_one_heap()
    bar = tqdm(total=len(tasks), desc="pack shards", unit="shard", disable=not cfg.progress)
    if cfg.scheduler:
        res.written = _run_dask(cfg.scheduler, tasks, bar, cfg.scheduler_timeout_s)
    elif procs > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        with cf.ProcessPoolExecutor(max_workers=procs,
                                    mp_context=mp.get_context("spawn")) as ex:
            for name in ex.map(_task, tasks):
                res.written.append(name)
                bar.update()
    else:
        for t in tasks:
            res.written.append(_task(t))
            bar.update()
    bar.close()
    res.refreshed = refreshed
    df = build_manifest(out)
    res.manifest = write_manifest(out, df)
    res.captures = len(df)
    return res


def _run_dask(address: str, tasks: list, bar, timeout_s: float) -> list[str]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:  # pragma: no cover
        raise ConfigError("dask.distributed is not installed (pip install 'dask[distributed]')",
                          field="--scheduler") from None
    try:
        client = Client(address, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot reach scheduler {address!r}: {exc}", field="--scheduler") from None
    written = []
    try:
        futures = client.map(_task, tasks, pure=False)
        for fut in as_completed(futures):
            written.append(fut.result())
            bar.update()
    finally:
        client.close()
    return sorted(written)


def build_manifest(root: str | Path, on_error: Callable[[Path, str], None] | None = None) -> pd.DataFrame:
    """Manifest rows for every capture of every readable shard (unreadable shards reported)."""
    import h5py

    from hzsr.dataset.codecs import register_plugins
    from hzsr.dataset.shard import read_meta, shard_header

    register_plugins()
    rows = []
    for p in sorted((Path(root) / "shards").glob("shard-*.h5")):
        try:
            with h5py.File(p, "r") as h5:
                for cid in shard_header(h5, p):
                    g = h5["captures"][cid]
                    raw = sum(g[s].size for s in g if isinstance(g[s], h5py.Dataset))
                    stored = sum(g[s].id.get_storage_size() for s in g if isinstance(g[s], h5py.Dataset))
                    rows.append(manifest_row(read_meta(h5, cid, p.name), p.name, int(raw), int(stored)))
        except (OSError, KeyError, DatasetError) as exc:
            if on_error is None:
                raise DatasetError(f"cannot read shard: {exc}".splitlines()[0], file=p, unreadable=True) from None
            on_error(p, str(exc).splitlines()[0])
    return rows_to_frame(rows)


def plan_summary(out: str | Path) -> dict[str, Any]:
    return json.loads((Path(out) / PLAN).read_text())
