"""What the gallery shows: a data set's captures, filtered and paged, and one capture's details.

The index is the manifest joined with ``splits.csv`` and the curation file (``labels.csv``);
each is re-read only when its file changes (size or mtime), so a label written by another tab,
another server or the CLI shows up on the next request. Filters (each an exact value; ``(none)``
matches an empty cell):

==========  ====================================================================
verdict     the manifest's ``verdict`` (worst of sync and QA): pass, warn, fail
reason      a reason code in ``qa_codes`` or ``sync_flags`` (``motion_blur``, ...)
kind        ``scene_kind``
tag         one of ``scene_tags``
split       the capture's split in ``splits.csv``
label       the curator's label: accepted, rejected, ``(none)``
dup         ``1``: only captures with a near-duplicate (pHash within ``dup_distance`` bits),
            one cluster after another, so its members sit side by side
q           a query in ``hzsr/dataset/query.py``'s language over the manifest's columns plus
            ``split``, ``label`` and ``label_reason`` (parsed, never run)
==========  ====================================================================
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from hzsr.core.errors import DatasetError
from hzsr.dataset.curate import near_duplicates
from hzsr.dataset.labels import COLUMNS as LABEL_COLUMNS
from hzsr.dataset.labels import read_labels, set_label
from hzsr.dataset.manifest import MANIFEST, load_manifest
from hzsr.dataset.query import parse_query
from hzsr.dataset.reader import SPLITS, ShardReader
from hzsr.dataset.splits import load_splits

NONE = "(none)"
#: Filter name -> the index column it matches; tag and reason match one of a ";"-joined list.
FILTERS = {"verdict": "verdict", "reason": "reasons", "kind": "scene_kind", "tag": "scene_tags",
           "split": "split", "label": "label"}
LIST_FILTERS = ("reason", "tag")
MAX_PAGE = 500
MAX_CLUSTER_SHOWN = 48  # a capture's near-duplicates listed (a thousand shots of one view are one cluster)


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


def _joined(df: pd.DataFrame, *cols: str) -> pd.Series:
    """The ";"-joined union of some ";"-separated columns, empty where none has a value."""
    parts = [df[c].fillna("").astype(str) if c in df.columns else pd.Series("", index=df.index) for c in cols]
    out = parts[0]
    for p in parts[1:]:
        out = out.str.cat(p, sep=";")
    return out.str.split(";").map(lambda xs: ";".join(sorted({x for x in xs if x})))


class Gallery:
    """The gallery's model over one data set (or subset) folder.

    Args:
        root: the folder with ``manifest.csv``; labels go beside its shards (``labels.py``).
        dup_distance: pHash bits within which two captures are near-duplicates (as ``curate``).
    """

    def __init__(self, root: str | Path, dup_distance: int = 6):
        self.root = Path(root)
        self.data_root = ShardReader(self.root).shard_root
        self.dup_distance = int(dup_distance)
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._manifest = pd.DataFrame()
        self._index = pd.DataFrame()
        self._labels_key: tuple | None = None
        self._labels = pd.DataFrame(columns=list(LABEL_COLUMNS))
        self._revision = "0"
        self._clusters: dict[str, list[str]] | None = None
        self._snapshot: tuple[pd.DataFrame, str] | None = None  # index + labels, until either file changes
        self._ids: frozenset[str] = frozenset()
        self._facets: dict[str, dict[str, int]] = {}

    # -- loading --------------------------------------------------------------------------------
    def _splits_path(self) -> Path:
        p = self.root / SPLITS
        return p if p.is_file() else self.data_root / SPLITS

    def _refresh(self) -> None:
        key = (_file_key(self.root / MANIFEST), _file_key(self._splits_path()))
        if key != self._key:
            man = load_manifest(self.root)
            idx = pd.DataFrame({"capture_id": man["capture_id"].astype(str),
                                "scene_id": man["scene_id"].astype(str),
                                "scene_kind": man["scene_kind"].astype(str),
                                "scene_tags": _joined(man, "scene_tags"),
                                "verdict": man["verdict"].fillna("").astype(str).str.lower().replace("ok", "pass")
                                if "verdict" in man.columns else "",
                                "reasons": _joined(man, "qa_codes", "sync_flags")})
            sp = self._splits_path()
            split_of = dict(zip(*(load_splits(sp)[c] for c in ("capture_id", "split")), strict=True)) \
                if sp.is_file() else {}
            idx["split"] = idx["capture_id"].map(split_of).astype(object).fillna("")
            self._manifest, self._index, self._key, self._clusters = man, idx, key, None
            self._ids, self._snapshot = frozenset(idx["capture_id"]), None
        lkey = _file_key(self.data_root / "labels.csv")
        if lkey != self._labels_key:
            self._labels, self._revision = read_labels(self.data_root)
            self._labels_key, self._snapshot = lkey, None

    def snapshot(self) -> tuple[pd.DataFrame, str]:
        """The index with each capture's ``label`` and ``label_reason``, and the labels' revision."""
        with self._lock:
            self._refresh()
            if self._snapshot is None:
                lab = self._labels.set_index("capture_id")
                cid = self._index["capture_id"]
                idx = self._index.assign(label=cid.map(lab["label"]).astype(object).fillna(""),
                                         label_reason=cid.map(lab["reason"]).astype(object).fillna(""))
                self._snapshot = (idx, self._revision)
                self._facets = _facets(idx)
            return self._snapshot

    def has(self, capture_id: str) -> bool:
        """Whether the manifest lists ``capture_id`` (read nothing for anything else)."""
        with self._lock:
            self._refresh()
            return capture_id in self._ids

    def revision(self) -> str:
        with self._lock:
            self._refresh()
            return self._revision

    def clusters(self) -> dict[str, list[str]]:
        """Near-duplicate clusters (``curate``'s single-link pHash clustering), member -> members."""
        with self._lock:
            self._refresh()
            if self._clusters is None:
                man = self._manifest
                has = man["phash_main_W"].notna() if "phash_main_W" in man.columns else pd.Series(False, man.index)
                ids = man.loc[has, "capture_id"].astype(str).tolist()
                first, _ = near_duplicates(ids, man.loc[has, "phash_main_W"].astype(str).tolist(), self.dup_distance)
                groups: dict[str, list[str]] = {}
                for cid, f in zip(ids, first, strict=True):
                    if f is not None:
                        groups.setdefault(f, []).append(cid)
                self._clusters = {m: g for g in groups.values() for m in g}
            return self._clusters

    # -- answers --------------------------------------------------------------------------------
    def page(self, params: dict[str, str]) -> dict[str, Any]:
        """One page of captures that pass the filters, with the counts of every filter's values.

        Args:
            params: filter name -> value (see the module docstring), ``offset``, ``limit``.
        """
        idx, rev = self.snapshot()
        mask = pd.Series(True, index=idx.index)
        for name, col in FILTERS.items():
            v = params.get(name)
            if not v:
                continue
            cell = idx[col].astype(str)
            if v == NONE:
                mask &= cell == ""
            elif name in LIST_FILTERS:
                mask &= (";" + cell + ";").str.contains(f";{v};", regex=False)
            else:
                mask &= cell == v
        if params.get("dup") == "1":
            mask &= idx["capture_id"].isin(self.clusters().keys())
        if params.get("q"):
            query = parse_query(params["q"], "q")
            extra = idx[["split", "label", "label_reason"]]
            mask &= query.mask(pd.concat([self._manifest.drop(columns=list(extra.columns), errors="ignore"),
                                          extra], axis=1)).to_numpy()
        offset = _int(params.get("offset"), "offset", 0, 10**9, 0)
        limit = _int(params.get("limit"), "limit", 1, MAX_PAGE, 60)
        sel = idx[mask.to_numpy()]
        if params.get("dup") == "1":  # clusters side by side: ordered by each cluster's first member
            clusters = self.clusters()
            sel = sel.assign(cluster=sel["capture_id"].map(lambda c: clusters[c][0]),
                             cluster_size=sel["capture_id"].map(lambda c: len(clusters[c])))
            sel = sel.sort_values(["cluster", "capture_id"], kind="stable")
        rows = sel.iloc[offset:offset + limit]
        stale = int(((idx["label"] == "rejected") & (idx["split"] != "")).sum())
        return {"total": int(len(idx)), "matched": int(len(sel)), "offset": offset, "limit": limit,
                "revision": rev, "rejected_in_splits": stale, "facets": self._facets,
                "rows": rows.to_dict("records")}

    def capture(self, capture_id: str) -> dict[str, Any]:
        """One capture's index row, manifest facts, reasons in words and near-duplicate cluster."""
        idx, rev = self.snapshot()
        hit = idx[idx["capture_id"] == capture_id]
        if hit.empty:
            raise DatasetError(f"unknown capture {capture_id!r}", field="id")
        row = hit.iloc[0].to_dict()
        m = self._manifest.loc[hit.index[0]]
        facts = {k: _plain(v) for k, v in m.items()
                 if not k.startswith("qa_") or k in ("qa_reasons", "qa_wt_psnr_db", "qa_wt_ssim", "qa_tt_shift_px")}
        cluster = [c for c in self.clusters().get(capture_id, []) if c != capture_id]
        return {**row, "facts": facts, "cluster": cluster[:MAX_CLUSTER_SHOWN], "cluster_others": len(cluster),
                "revision": rev}

    def label(self, capture_id: str, label: str | None, reason: str) -> str:
        """Write a curator's label (``labels.set_label``); return the new revision."""
        self.snapshot()
        return set_label(self.data_root, capture_id, label, reason, known_ids=self._ids)


def _plain(v: Any) -> Any:
    """A manifest cell as JSON can carry it: None for empty, NaN or infinite."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    v = v.item() if hasattr(v, "item") else v
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _int(text: str | None, name: str, lo: int, hi: int, default: int) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise DatasetError(f"expected a whole number from {lo} to {hi}, got {text[:40]!r}", field=name)
    return int(text)


def _facets(idx: pd.DataFrame) -> dict[str, dict[str, int]]:
    """For every filter, each value's number of captures in the whole data set."""
    out: dict[str, dict[str, int]] = {}
    for name, col in FILTERS.items():
        s = idx[col].astype(str)
        if name in LIST_FILTERS:
            s = s.str.split(";").explode()
        counts = s.replace("", NONE).value_counts()
        out[name] = {str(k): int(v) for k, v in sorted(counts.items())}
    return out
