"""``hzsr dataset split``: leak-free, stratified, deterministic, stable train/val/test splits.

Every capture of a group (a scene, by default) goes to one split, so no scene leaks between
train and test. Groups are assigned one at a time, largest first (ties in a seeded hash order),
each to a split chosen by two deficits, where the deficit of split ``k`` is
``d_k = r_k * N - n_k`` (target minus captures already there):

1. among the splits the group *fits* (global ``d_k >= size``), the one whose deficit within the
   group's stratum (scene kind) is largest, so kinds are balanced as far as groups allow;
2. if it fits nowhere, the split with the largest global deficit.

This keeps every split within one group's size of its target: a split chosen by rule 1 never
overshoots, rule 2 overshoots by less than the group, and a split that ended more than the
largest group short would have fitted every group given elsewhere, which rule 1 forbids.

Stability: groups already in ``splits.csv`` keep their split (new captures of a known group
follow it); only unseen groups are assigned, against the counts so far. ``reassign=True``
starts over.

``hzsr dataset split`` leaves out the captures a curator rejected (``labels.csv``,
``hzsr.dataset.labels``): they get no split, so training never sees them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hzsr.core.errors import ConfigError, DatasetError
from hzsr.core.fileio import atomic_write_bytes

SPLIT_COLUMNS = ("capture_id", "split", "group", "stratum")


@dataclass
class SplitConfig:
    """Options of ``hzsr dataset split``; every default lives here."""

    by: str = "scene"  # group column: "scene" (scene_id), "session" (session_id), or any manifest column
    ratios: tuple[float, ...] = (0.8, 0.1, 0.1)
    names: tuple[str, ...] = ("train", "val", "test")
    stratify: str | None = "kind"  # "kind" (scene_kind), any manifest column, or None
    seed: int = 0
    reassign: bool = False  # ignore an existing splits.csv and assign every group afresh


_ALIASES = {"scene": "scene_id", "session": "session_id", "kind": "scene_kind"}


def parse_ratios(text: str, names: tuple[str, ...] | None = None) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """``"0.8,0.1,0.1"`` -> ratios and split names (train/val/test, or train/test for two)."""
    try:
        r = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise ConfigError(f"expected comma-separated numbers like 0.8,0.1,0.1, got {text!r}",
                          field="--ratios") from None
    if any(v < 0 or v != v for v in r) or abs(sum(r) - 1.0) > 1e-6 or len(r) < 2:
        raise ConfigError(f"need two or more non-negative ratios summing to 1, got {text!r}", field="--ratios")
    if names is None:
        names = ("train", "val", "test") if len(r) == 3 else ("train", "test") if len(r) == 2 else \
            tuple(f"split{i}" for i in range(len(r)))
    if len(names) != len(r):
        raise ConfigError(f"{len(r)} ratios for {len(names)} split names", field="--ratios")
    return r, tuple(names)


def _hash(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()


def assign_splits(manifest: pd.DataFrame, cfg: SplitConfig, existing: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return ``splits.csv`` rows (capture_id, split, group, stratum) for every manifest capture."""
    gcol = _ALIASES.get(cfg.by, cfg.by)
    scol = _ALIASES.get(cfg.stratify, cfg.stratify) if cfg.stratify else None
    for col, opt in ((gcol, "--by"), (scol, "--stratify")):
        if col is not None and col not in manifest.columns:
            raise ConfigError(f"no manifest column {col!r}", field=opt)
    if len(cfg.ratios) != len(cfg.names):
        raise ConfigError("one ratio per split name", field="--ratios")
    df = pd.DataFrame({
        "capture_id": manifest["capture_id"].astype(str),
        "group": manifest[gcol].astype(str),
        "stratum": manifest[scol].astype(str) if scol else "all",
    })
    # A group's stratum is its most common one (a scene has one kind; a session may have many).
    gstrat = df.groupby("group")["stratum"].agg(lambda s: s.value_counts().sort_index().idxmax())
    df["stratum"] = df["group"].map(gstrat)
    sizes = df.groupby("group").size()
    names = list(cfg.names)
    ratio = dict(zip(names, cfg.ratios, strict=True))
    split_of: dict[str, str] = {}
    if existing is not None and not cfg.reassign:
        known = existing[existing["capture_id"].isin(df["capture_id"])] if len(existing) else existing
        for g, s in zip(known["group"].astype(str), known["split"].astype(str), strict=True):
            if s not in ratio:
                raise ConfigError(f"splits.csv has split {s!r}, not among {names}; use --reassign",
                                  field="--ratios")
            split_of.setdefault(g, s)
    n_total = len(df)
    strata_n = df.groupby("stratum").size()
    have = {k: 0 for k in names}
    have_s: dict[tuple[str, str], int] = {}
    for g, s in split_of.items():
        if g in sizes.index:
            have[s] += int(sizes[g])
            key = (gstrat[g], s)
            have_s[key] = have_s.get(key, 0) + int(sizes[g])
    todo = sorted((g for g in sizes.index if g not in split_of), key=lambda g: (-int(sizes[g]), _hash(cfg.seed, g)))
    for g in todo:
        size, st = int(sizes[g]), gstrat[g]
        deficit = {k: ratio[k] * n_total - have[k] for k in names}
        fits = [k for k in names if deficit[k] >= size - 1e-9]
        if fits:
            best = max(fits, key=lambda k: (ratio[k] * strata_n[st] - have_s.get((st, k), 0), deficit[k],
                                            -names.index(k)))
        else:
            best = max(names, key=lambda k: (deficit[k], -names.index(k)))
        split_of[g] = best
        have[best] += size
        have_s[(st, best)] = have_s.get((st, best), 0) + size
    df["split"] = df["group"].map(split_of)
    return df[list(SPLIT_COLUMNS)].sort_values("capture_id").reset_index(drop=True)


def load_splits(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot parse: {exc}".splitlines()[0], file=path) from None
    for c in ("capture_id", "split", "group"):
        if c not in df.columns:
            raise DatasetError("missing column", file=path, field=c)
    return df


def write_splits(path: str | Path, df: pd.DataFrame) -> Path:
    path = Path(path)
    atomic_write_bytes(path, df.to_csv(index=False).encode("utf-8"))
    return path


def split_table(manifest: pd.DataFrame, splits: pd.DataFrame, by: str = "scene_kind") -> pd.DataFrame:
    """Captures per split and ``by`` value, for the summary."""
    m = splits.merge(manifest[["capture_id", by]], on="capture_id", how="left")
    return m.pivot_table(index=by, columns="split", values="capture_id", aggfunc="count", fill_value=0)
