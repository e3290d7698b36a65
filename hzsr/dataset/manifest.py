"""``DIR/manifest.csv``: one row per capture, always derived from the shards themselves.

The manifest is rebuilt from the intact shards after every pack (and by ``verify --repair``), so
it can never list a capture that no shard holds. Columns: id and place (``capture_id``,
``session_id``, ``source_capture_id``, ``shard``), scene (``scene_id``, ``scene_kind``,
``scene_tags`` joined by ``;``), ``status``, ``has_reference``, ``verdict`` (worst of sync and QA),
``sync_*`` and ``qa_*`` (every column of those rows, prefixed), per-slot facts (``<slot>_width``,
``_height``, ``_iso``, ``_exposure_time_ns``, ``_focus_distance_diopters``, ``_device``,
``_model``), and sizes (``bytes_raw``: decoded arrays, ``bytes_stored``: compressed on disk).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from hzsr.core.errors import DatasetError
from hzsr.core.fileio import atomic_write_bytes
from hzsr.dataset.schema import SLOTS
from hzsr.dataset.sources import combined_verdict

MANIFEST = "manifest.csv"
REQUIRED_COLUMNS = ("capture_id", "shard", "session_id", "scene_id", "scene_kind")
#: Columns read back as strings whatever they look like (a hex hash of digits only, an id "0001").
STR_COLUMNS = {c: str for c in ("capture_id", "shard", "session_id", "scene_id", "source_capture_id", "scene_tags",
                                "phash_main_W", "near_duplicate_of")}
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
    path = Path(root) / name
    atomic_write_bytes(path, df.to_csv(index=False).encode("utf-8"))
    return path


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
    if df["capture_id"].isna().any():
        raise DatasetError(f"empty capture_id in row {int(df['capture_id'].isna().idxmax()) + 2}",
                           file=path, field="capture_id")
    dup = df["capture_id"][df["capture_id"].duplicated()]
    if len(dup):
        raise DatasetError(f"capture {dup.iloc[0]!r} listed twice", file=path, field="capture_id")
    df["scene_tags"] = df["scene_tags"].fillna("") if "scene_tags" in df.columns else ""
    return df
