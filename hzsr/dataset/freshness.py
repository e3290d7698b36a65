"""Fresh verdicts: which sync and QA results a capture was packed with, and whether they are stale.

Each capture's manifest row records ``results_sha256``: a short hash of the sync and QA rows (and
the capture's scene id, tags, notes and status) it was packed with. When ``hzsr sync check`` or
``hzsr qa check`` runs again (or for the first time) after a pack, the session's tables no longer
hash the same:

- ``dataset info`` reads each session's current ``sync/sync.csv`` and ``qa/qa.csv`` (the session
  folder is recorded in the shards) and flags the captures whose results changed;
- ``dataset pack`` of the same sessions rewrites those captures' ``sync``/``qa`` groups and
  attributes in a copy of their shard (the pixels are copied as stored bytes, never decoded or
  re-encoded), swaps it in atomically, and rebuilds the manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from hzsr.core.errors import DatasetError
from hzsr.core.fileio import commit_file
from hzsr.dataset.schema import CAPTURE_STR_FIELDS, put_attrs
from hzsr.dataset.sources import CaptureSource, SessionSource

#: The capture fields a re-pack refreshes besides sync and QA (all of them metadata, no pixels).
REFRESHED_FIELDS = ("scene_id", "scene_kind", "scene_tags", "notes", "status")
COLUMN = "results_sha256"


def _canon(v: Any) -> Any:
    """Numbers as a table reader may give them either way (3 and 3.0) hash the same."""
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    return v


def results_of(meta: dict[str, Any]) -> dict[str, Any]:
    """What a refresh compares and rewrites: the sync and QA rows, and the capture's scene fields."""
    return _canon({"sync": meta.get("sync") or None, "qa": meta.get("qa") or None,
                   **{k: meta.get(k) for k in REFRESHED_FIELDS}})


def results_sha256(meta: dict[str, Any]) -> str:
    """16 hex digits of sha256 over ``results_of(meta)`` as sorted JSON."""
    text = json.dumps(results_of(meta), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_fields(packed: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Which of sync, qa and the scene fields differ between a packed capture's meta and the session's."""
    a, b = results_of(packed), results_of(now)
    return [k for k in a if a[k] != b[k]]


def stale_in_shard(path: Path, by_id: dict[str, CaptureSource]) -> dict[str, list[str]]:
    """Captures of shard ``path`` whose session now has other results: id -> changed fields."""
    import h5py

    from hzsr.dataset.shard import read_meta, shard_header

    out: dict[str, list[str]] = {}
    with h5py.File(path, "r") as h5:
        for cid in shard_header(h5, path):
            src = by_id.get(cid)
            if src is None:
                continue
            diff = changed_fields(read_meta(h5, cid, path.name), src.meta)
            if diff:
                out[cid] = diff
    return out


def refresh_shard(path: Path, caps: list[CaptureSource], sessions: dict[str, SessionSource]) -> None:
    """Rewrite the metadata of ``caps`` in shard ``path``, crash-safely and without touching pixels.

    The shard is copied byte for byte to a temp file beside it, the copy's capture attributes and
    ``sync``/``qa`` groups (and the sessions' summaries) are rewritten, and the copy is fsync'd and
    renamed over the shard: a crash leaves the old shard or the new one, never half of each.
    """
    import h5py

    from hzsr.dataset.shard import TMP_PREFIX

    tmp = path.parent / f"{TMP_PREFIX}{path.name}.refresh.{os.getpid()}"
    try:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "r+") as h5:
            for src in caps:
                g = h5["captures"][src.dataset_id]
                m = src.meta
                for k in (*CAPTURE_STR_FIELDS, "scene_tags", "capture_json"):
                    if k in g.attrs:
                        del g.attrs[k]
                put_attrs(g, {k: m.get(k) for k in CAPTURE_STR_FIELDS})
                put_attrs(g, {"scene_tags": list(m["scene_tags"]), "capture_json": src.capture_json})
                for name in ("sync", "qa"):
                    if name in g:
                        del g[name]
                    if m.get(name):
                        put_attrs(g.create_group(name), m[name])
            for sid in sorted({c.session_id for c in caps}):
                sg = h5["sessions"][sid]
                for k in ("sync_summary_json", "qa_summary_json"):
                    if k in sg.attrs:
                        del sg.attrs[k]
                put_attrs(sg, {k: sessions[sid].attrs.get(k) for k in ("sync_summary_json", "qa_summary_json")})
        commit_file(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stale_report(root: str | Path) -> dict[str, Any]:
    """For ``dataset info``: captures whose session's sync/QA results changed since they were packed.

    Returns:
        ``{"checked": n, "stale": [{"capture_id", "changed"}], "sessions_missing": [dir], "unknown": reason}``;
        ``unknown`` is set (and nothing checked) for a manifest written before ``results_sha256``.
    """
    import h5py

    from hzsr.core.session import SessionPaths
    from hzsr.core.tables import QA_TABLE, SYNC_TABLE
    from hzsr.dataset.reader import ShardReader
    from hzsr.dataset.sources import _read_table

    rep: dict[str, Any] = {"checked": 0, "stale": [], "sessions_missing": [], "unknown": None}
    reader = ShardReader(root)
    man = reader.manifest
    if COLUMN not in man.columns:
        rep["unknown"] = f"the manifest predates {COLUMN}; re-pack the sessions to record it"
        return rep
    dirs: dict[str, str] = {}
    for shard in sorted(set(man["shard"].dropna())):
        path = reader.shard_root / "shards" / shard
        try:
            with h5py.File(path, "r") as h5:
                for sid, g in h5["sessions"].items():
                    d = g.attrs.get("session_dir")
                    if d is not None:
                        dirs.setdefault(sid, d.decode() if isinstance(d, bytes) else str(d))
        except (OSError, KeyError) as exc:
            raise DatasetError(f"cannot read shard: {str(exc).splitlines()[0]}", file=path, unreadable=True) from None
    for sid, sub in man.groupby("session_id"):
        d = dirs.get(sid)
        if d is None or not Path(d, "session.json").is_file():
            rep["sessions_missing"].append(d or sid)
            continue
        p = SessionPaths(Path(d))
        sync_rows, qa_rows = _read_table(SYNC_TABLE, p.sync_csv), _read_table(QA_TABLE, p.qa_csv)
        for row in sub.itertuples(index=False):
            rd = row._asdict()
            src_id = str(rd["source_capture_id"])
            meta = reader.meta(rd["capture_id"])
            now = {**meta, "sync": sync_rows.get(src_id), "qa": qa_rows.get(src_id)}
            rep["checked"] += 1
            if results_sha256(now) != rd[COLUMN]:
                rep["stale"].append({"capture_id": rd["capture_id"],
                                     "changed": [k for k in ("sync", "qa") if results_of(now)[k] != results_of(meta)[k]]
                                     or ["packed results"]})
    reader.close()
    return rep
