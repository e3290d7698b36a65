"""``hzsr dataset verify``: every shard opens, every array's sha256 matches, the manifest agrees.

Each problem is one line naming the shard and capture (``shards/shard-00001.h5: sA/c00003: main_T:
sha256 mismatch``). A truncated or foreign file is reported, never crashed on. ``--repair`` moves
damaged shards to ``DIR/quarantine/`` (nothing is deleted) and rebuilds ``manifest.csv`` from the
intact ones; packing the same sessions again then rewrites the missing captures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from hzsr.core.errors import DatasetError
from hzsr.core.fileio import fsync_dir
from hzsr.dataset.manifest import MANIFEST, manifest_row, read_csv_text, rows_to_frame, write_manifest
from hzsr.dataset.schema import SLOTS
from hzsr.dataset.shard import TMP_PREFIX, array_sha256, read_meta, shard_header
from hzsr.dataset.truth_arrays import check_truth

QUARANTINE = "quarantine"


@dataclass
class VerifyReport:
    root: Path
    shards: int = 0
    shards_ok: int = 0
    captures_ok: int = 0
    problems: list[str] = field(default_factory=list)  # one line each, naming shard and capture
    warnings: list[str] = field(default_factory=list)
    bad_shards: list[str] = field(default_factory=list)
    bad_captures: list[str] = field(default_factory=list)
    manifest_problems: list[str] = field(default_factory=list)
    repaired: Path | None = None
    quarantined: list[str] = field(default_factory=list)

    @property
    def unrepairable(self) -> bool:
        """Data was lost (not just the manifest): the sessions must be packed again."""
        return bool(self.bad_shards or self.bad_captures)

    @property
    def verdict(self) -> str:
        return "fail" if self.problems else ("warn" if self.warnings else "pass")

    def to_json(self) -> dict[str, Any]:
        return {"dataset": str(self.root), "verdict": self.verdict, "shards": self.shards,
                "shards_ok": self.shards_ok, "captures_ok": self.captures_ok, "problems": self.problems,
                "warnings": self.warnings, "bad_shards": self.bad_shards, "bad_captures": self.bad_captures,
                "repaired": str(self.repaired) if self.repaired else None, "quarantined": self.quarantined}


def _check_shard(path: Path, rel: str, rep: VerifyReport, rows: list[dict], seen: dict[str, str]) -> bool:
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        rep.problems.append(f"{rel}: cannot open (truncated or not HDF5): {str(exc).splitlines()[0]}")
        return False
    ok = True
    with h5:
        try:
            ids = shard_header(h5, path)
        except DatasetError as exc:
            rep.problems.append(f"{rel}: {exc.field}: {exc.message}")
            return False
        for cid in ids:
            where = f"{rel}: {cid}"
            try:
                g = h5["captures"][cid]
                meta = read_meta(h5, cid, path.name)
            except (KeyError, OSError, ValueError) as exc:
                rep.problems.append(f"{where}: cannot read capture: {str(exc).splitlines()[0]}")
                rep.bad_captures.append(cid)
                ok = False
                continue
            cap_ok = True
            raw = stored = 0
            for slot in SLOTS:
                if slot not in g:
                    if slot != "ref_T" or meta["has_reference"]:
                        rep.problems.append(f"{where}: {slot}: array missing")
                        cap_ok = False
                    continue
                d = g[slot]
                want = d.attrs.get("array_sha256")
                try:
                    arr = d[()]
                except (OSError, ValueError, RuntimeError) as exc:
                    rep.problems.append(f"{where}: {slot}: cannot decode array data: {str(exc).splitlines()[0]}")
                    cap_ok = False
                    continue
                if want is None or array_sha256(arr) != (want.decode() if isinstance(want, bytes) else want):
                    rep.problems.append(f"{where}: {slot}: sha256 mismatch (image data changed on disk)")
                    cap_ok = False
                raw += arr.size
                stored += d.id.get_storage_size()
            truth_problems = check_truth(g, where)  # optional arrays (pack --truth); not in the manifest's bytes
            rep.problems.extend(truth_problems)
            cap_ok = cap_ok and not truth_problems
            if cid in seen:
                rep.problems.append(f"{where}: also in {seen[cid]} (duplicate capture)")
                cap_ok = False
            seen[cid] = rel
            if cap_ok:
                rep.captures_ok += 1
                rows.append(manifest_row(meta, path.name, int(raw), int(stored)))
            else:
                rep.bad_captures.append(cid)
                ok = False
    return ok


def _compare_manifest(root: Path, rebuilt: pd.DataFrame, damaged: set[str], rep: VerifyReport) -> None:
    from hzsr.dataset.manifest import load_manifest

    try:
        man = load_manifest(root)
    except DatasetError as exc:
        rep.manifest_problems.append(exc.one_line())
        return
    # Round-trip the rebuilt rows through CSV so both sides have the same types.
    rb = read_csv_text(rebuilt.to_csv(index=False)).set_index("capture_id")
    mi = man.set_index("capture_id")
    name = root / MANIFEST
    for cid in sorted(set(mi.index) - set(rb.index)):
        if cid in damaged:
            continue  # already reported against its shard
        rep.manifest_problems.append(f"{name}: {cid}: listed in the manifest but in no intact shard")
    for cid in sorted(set(rb.index) - set(mi.index)):
        rep.manifest_problems.append(f"{name}: {cid}: in {rb.at[cid, 'shard']} but missing from the manifest")
    common = sorted(set(mi.index) & set(rb.index))
    cols = [c for c in rb.columns if c in mi.columns]
    for c in [c for c in rb.columns if c not in mi.columns]:
        if c == "results_sha256":  # added after the first data sets were packed: not damage
            rep.warnings.append(f"{name}: column {c} missing (written by an older hzsr); `verify --repair` adds it")
            continue
        rep.manifest_problems.append(f"{name}: column {c} missing")
    for cid in common:
        for c in cols:
            a, b = mi.at[cid, c], rb.at[cid, c]
            if (pd.isna(a) and pd.isna(b)) or a == b:
                continue
            try:
                if float(a) == float(b):
                    continue
            except (TypeError, ValueError):
                pass
            rep.manifest_problems.append(f"{name}: {cid}: {c}: manifest says {a!r}, shard says {b!r}")


def verify_dataset(root: str | Path, repair: bool = False, progress: bool = True) -> VerifyReport:
    """Check ``root`` (see the module doc); with ``repair``, quarantine damage and rewrite the manifest.

    With ``repair`` it holds the data set's lock (``core.lock.DatasetLock``), so it never moves a
    shard a pack is writing; a plain verify only reads.
    """
    if repair and Path(root, "shards").is_dir():
        from hzsr.core.lock import DatasetLock

        with DatasetLock(root):
            return _verify(root, repair, progress)
    return _verify(root, repair, progress)


def _verify(root: str | Path, repair: bool, progress: bool) -> VerifyReport:
    from hzsr.dataset.codecs import register_plugins

    register_plugins()
    root = Path(root)
    shard_dir = root / "shards"
    if not shard_dir.is_dir():  # nothing to read: exit 2, as every verb for a missing folder
        raise DatasetError("not a data set: no shards/ folder" if root.is_dir() else "folder not found",
                           file=root, unreadable=True)
    rep = VerifyReport(root)
    for tmp in sorted(shard_dir.glob(f"{TMP_PREFIX}*")):
        rep.warnings.append(f"shards/{tmp.name}: temp file of an interrupted pack; rerun pack to finish")
    rows: list[dict] = []
    seen: dict[str, str] = {}
    paths = sorted(shard_dir.glob("shard-*.h5"))
    rep.shards = len(paths)
    for p in tqdm(paths, desc="verify shards", unit="shard", disable=not progress):
        ok = _check_shard(p, f"shards/{p.name}", rep, rows, seen)
        rep.shards_ok += ok
        if not ok:
            rep.bad_shards.append(p.name)
    rebuilt = rows_to_frame(rows)
    damaged = set(rep.bad_captures)
    _compare_manifest(root, rebuilt, damaged, rep)
    rep.problems.extend(rep.manifest_problems)
    if repair:
        if rep.bad_shards:
            q = root / QUARANTINE
            q.mkdir(exist_ok=True)
            for name in rep.bad_shards:
                os.replace(shard_dir / name, q / name)
                rep.quarantined.append(name)
            fsync_dir(shard_dir)
            # Captures of quarantined shards that were intact are dropped from the manifest too,
            # so that a later pack rewrites the whole shard.
            rebuilt = rebuilt[~rebuilt["shard"].isin(rep.bad_shards)] if len(rebuilt) else rebuilt
        rep.repaired = write_manifest(root, rows_to_frame(rebuilt.to_dict("records")))
    return rep
