"""``hzsr dataset curate``: a subset by a query, without copying data; near-duplicates flagged.

The query is parsed and evaluated by ``hzsr.dataset.query`` (a grammar of its own, never run as
Python; ``docs/dataset.md`` describes it).

``SUBSET/manifest.csv`` holds the selected rows plus ``near_duplicate_of`` (the first capture, in
manifest order, of the near-duplicate cluster it belongs to; empty when unique) and
``phash_distance`` (to its nearest other selected capture). ``SUBSET/subset.json`` points at
the data set whose shards it reads, so ``ShardReader(SUBSET)`` works as on the full data set.
Captures a curator rejected (``labels.csv``, ``hzsr.dataset.labels``) are never selected.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hzsr.core.errors import ConfigError, DatasetError
from hzsr.core.fileio import atomic_write_json, sha256_file
from hzsr.dataset.labels import without_rejected
from hzsr.dataset.manifest import MANIFEST, load_manifest, write_manifest
from hzsr.dataset.phash import near_pairs, phash
from hzsr.dataset.query import parse_query, select_rows
from hzsr.dataset.reader import SUBSET, ShardReader


def query_manifest(df: pd.DataFrame, expr: str, option: str = "--query") -> pd.DataFrame:
    """The manifest rows ``expr`` selects, in order.

    Args:
        df: the manifest.
        expr: a query (``hzsr/dataset/query.py``); it is parsed, never run.
        option: the option it came from, the field of its errors.

    Returns:
        The selected rows.

    Raises:
        DatasetError: a bad expression: one line naming ``option``, what is wrong and where (exit 2).
    """
    return select_rows(df, expr, option)


def near_duplicates(ids: list[str], hashes: list[str], max_distance: int) -> tuple[list[str | None], list[float]]:
    """Cluster by pHash distance (single link); each member points at its cluster's first id.

    Identical hashes are merged before the pair search (``phash.near_pairs``), so a thousand
    shots of one unchanging view cost one hash, not half a million pairs.
    """
    n = len(ids)
    if n == 0:
        return [], []
    uniq, inv, counts = np.unique(np.asarray(hashes, dtype=str), return_inverse=True, return_counts=True)
    pi, pj, nearest_u = near_pairs(uniq.tolist(), max_distance)
    parent = list(range(len(uniq)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(pi.tolist(), pj.tolist(), strict=True):
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    first: dict[int, int] = {}  # cluster root -> its first capture, in the given order
    for k, u in enumerate(inv.tolist()):
        first.setdefault(find(u), k)
    nearest = np.where(counts[inv] > 1, 0.0, nearest_u[inv])
    flag = [ids[first[find(u)]] if nearest[k] <= max_distance else None for k, u in enumerate(inv.tolist())]
    return flag, [float(x) for x in nearest]


def curate(root: str | Path, query: str, out: str | Path, max_distance: int = 6) -> dict[str, Any]:
    root, out = Path(root), Path(out)
    if (out / MANIFEST).exists():
        raise ConfigError("a subset already exists here; choose another --out", file=out, field="--out")
    parsed = parse_query(query, "--query")  # a bad query is reported before the manifest is read
    man, rejected = without_rejected(load_manifest(root), ShardReader(root).shard_root)  # labels.csv
    sel = parsed.select(man).copy()
    hashes = list(sel["phash_main_W"]) if "phash_main_W" in sel.columns else [None] * len(sel)
    if any(not isinstance(h, str) for h in hashes):
        # Shards from before pHashes were stored: hash the W frames now.
        reader = ShardReader(root)
        hashes = [h if isinstance(h, str) else phash(reader.read(c).main_W)
                  for c, h in zip(sel["capture_id"], hashes, strict=True)]
        sel["phash_main_W"] = hashes
    flag, nearest = near_duplicates(sel["capture_id"].tolist(), hashes, max_distance)
    sel["near_duplicate_of"] = flag
    sel["phash_distance"] = nearest
    out.mkdir(parents=True, exist_ok=True)
    mpath = write_manifest(out, sel.reset_index(drop=True))
    spath = out / SUBSET
    src = ShardReader(root).shard_root.resolve()  # a subset of a subset reads the same shards
    atomic_write_json(spath, {
        "dataset": os.path.relpath(src, out.resolve()), "dataset_abs": str(src), "query": query,
        "source_manifest_sha256": sha256_file(root / MANIFEST),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "near_duplicate_max_distance": max_distance})
    if len(sel) and not (src / "shards").is_dir():
        raise DatasetError("no shards/ folder", file=src)
    return {"total": int(len(man)) + rejected, "selected": int(len(sel)), "rejected": rejected,
            "near_duplicates": int(sum(f is not None for f in flag)), "manifest": str(mpath), "subset": str(spath)}
