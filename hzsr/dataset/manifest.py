"""``DIR/manifest.csv``: one row per capture, always derived from the shards themselves.

The manifest is rebuilt from the intact shards after every pack (and by ``verify --repair``), so
it can never list a capture that no shard holds. Columns: id and place (``capture_id``,
``session_id``, ``source_capture_id``, ``shard``), scene (``scene_id``, ``scene_kind``,
``scene_tags`` joined by ``;``), ``status``, ``has_reference``, ``verdict`` (worst of sync and QA),
``sync_*`` and ``qa_*`` (every column of those rows, prefixed), per-slot facts (``<slot>_width``,
``_height``, ``_iso``, ``_exposure_time_ns``, ``_focus_distance_diopters``, ``_device``,
``_model``), and sizes (``bytes_raw``: decoded arrays, ``bytes_stored``: compressed on disk).

``ManifestRow`` types the columns every reader relies on; ``write_manifest`` is the one writer
(it adds ``schema_version``) and ``load_manifest`` the one reader, which names the file, the row
and the column of a bad value. A manifest without ``schema_version`` predates it and reads as
version 1.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd

from hzsr.core.errors import DatasetError
from hzsr.core.fileio import atomic_write_bytes
from hzsr.core.tables import SCHEMA_COLUMN
from hzsr.core.verdict import Verdict
from hzsr.dataset.freshness import results_sha256
from hzsr.dataset.schema import SLOTS
from hzsr.dataset.sources import combined_verdict

MANIFEST = "manifest.csv"
MANIFEST_VERSION = 1


@dataclass
class ManifestRow:
    """The typed columns of a manifest row; the per-slot, sync_* and qa_* columns follow them."""

    capture_id: str  # "<session_id>/<capture_id>", unique
    shard: str | None  # shards/<name>.h5 that holds it (None while planning a pack)
    session_id: str
    scene_id: str
    scene_kind: str  # portrait, landscape, ... (the split stratifies by it)
    source_capture_id: str | None = None  # the capture's id in its session folder
    scene_tags: str = ""  # joined by ";"
    status: str | None = None
    source: str | None = None
    has_reference: bool | None = None
    verdict: Verdict | None = None  # worst of sync and QA
    results_sha256: str | None = None  # hash of the sync/QA rows and scene fields packed with (freshness.py)
    phash_main_W: str | None = None
    near_duplicate_of: str | None = None


REQUIRED_COLUMNS = tuple(f.name for f in fields(ManifestRow) if f.default is MISSING)
#: Columns read back as strings whatever they look like (a hex hash of digits only, an id "0001").
STR_COLUMNS = {f.name: str for f in fields(ManifestRow) if f.type in ("str", "str | None")}
_SLOT_COLS = ("width", "height", "iso", "exposure_time_ns", "focus_distance_diopters", "device", "model")


def manifest_row(meta: dict[str, Any], shard: str | None, bytes_raw: int | None = None,
                 bytes_stored: int | None = None) -> dict[str, Any]:
    """One manifest row from a capture's metadata (as the reader returns it)."""
    row: dict[str, Any] = {
        "capture_id": meta["capture_id"], "shard": shard, "session_id": meta["session_id"],
        "source_capture_id": meta.get("source_capture_id"), "scene_id": meta["scene_id"],
        "scene_kind": meta["scene_kind"], "scene_tags": ";".join(meta.get("scene_tags") or []),
        "status": meta.get("status"), "source": meta.get("source"),
        "has_reference": bool(meta.get("has_reference")), "verdict": combined_verdict(meta),
        "results_sha256": results_sha256(meta),  # the sync/QA results it was packed with (dataset/freshness.py)
    }
    for slot in SLOTS:
        fm = meta["frames"].get(slot) or {}
        for c in _SLOT_COLS:
            row[f"{slot}_{c}"] = fm.get(c)
    for name in ("sync", "qa"):
        for k, v in (meta.get(name) or {}).items():
            if k != "capture_id":
                row[f"{name}_{k}"] = v
    row["phash_main_W"] = meta.get("phash_main_W")
    row["bytes_raw"] = bytes_raw
    row["bytes_stored"] = bytes_stored
    return row


def rows_to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=list(REQUIRED_COLUMNS))
    return df.sort_values("capture_id", kind="stable").reset_index(drop=True)


def read_csv_text(text: str) -> pd.DataFrame:
    """Parse manifest CSV text with the manifest's column types."""
    import io

    df = pd.read_csv(io.StringIO(text), dtype=STR_COLUMNS)
    if "scene_tags" in df.columns:
        df["scene_tags"] = df["scene_tags"].fillna("")
    return df


def write_manifest(root: str | Path, df: pd.DataFrame, name: str = MANIFEST) -> Path:
    """Write ``df`` atomically as the manifest, with this version in its ``schema_version`` column."""
    path = Path(root) / name
    atomic_write_bytes(path, df.assign(**{SCHEMA_COLUMN: MANIFEST_VERSION}).to_csv(index=False).encode("utf-8"))
    return path


def _check_types(df: pd.DataFrame, path: Path) -> None:
    """Every typed column's values are of its type; the first bad one names its row (1-based)."""
    def bad(col: str, mask: pd.Series, what: str) -> None:
        if mask.any():
            i = int(mask.to_numpy().argmax())
            raise DatasetError(f"row {i + 1}: {df[col].iloc[i]!r} is not {what}", file=path, field=col)

    if SCHEMA_COLUMN in df.columns:
        ver = pd.to_numeric(df[SCHEMA_COLUMN], errors="coerce")
        bad(SCHEMA_COLUMN, ver.isna(), "a version number")
        newer = ver > MANIFEST_VERSION
        if newer.any():
            i = int(newer.to_numpy().argmax())
            raise DatasetError(f"row {i + 1}: version {int(ver.iloc[i])} is newer than this hzsr reads "
                               f"({MANIFEST_VERSION}); update hzsr or repack", file=path, field=SCHEMA_COLUMN)
    if "has_reference" in df.columns:
        v = df["has_reference"]
        bad("has_reference", v.notna() & ~v.astype(str).isin(["True", "False", "true", "false", "1", "0"]),
            "True or False")
    if "verdict" in df.columns:
        v = df["verdict"]
        bad("verdict", v.notna() & ~v.astype(str).str.lower().isin([x.value for x in Verdict] + ["ok"]),
            "a verdict (pass, warn or fail)")


def load_manifest(root: str | Path, name: str = MANIFEST) -> pd.DataFrame:
    """Read and check a manifest; a missing file or column is a one-line ``DatasetError``."""
    path = Path(root) / name
    if not path.is_file():
        raise DatasetError("manifest not found (run `hzsr dataset pack` or `verify --repair`)", file=path,
                           unreadable=True)
    try:
        df = pd.read_csv(path, dtype=STR_COLUMNS)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot parse: {exc}".splitlines()[0], file=path) from None
    for c in REQUIRED_COLUMNS:
        if c not in df.columns:
            raise DatasetError("missing column", file=path, field=c)
    for c in REQUIRED_COLUMNS:
        if c != "shard" and df[c].isna().any():
            raise DatasetError(f"row {int(df[c].isna().to_numpy().argmax()) + 1}: empty", file=path, field=c)
    dup = df["capture_id"][df["capture_id"].duplicated()]
    if len(dup):
        raise DatasetError(f"capture {dup.iloc[0]!r} listed twice", file=path, field="capture_id")
    _check_types(df, path)
    df = df.drop(columns=[SCHEMA_COLUMN], errors="ignore")
    df["scene_tags"] = df["scene_tags"].fillna("") if "scene_tags" in df.columns else ""
    return df
