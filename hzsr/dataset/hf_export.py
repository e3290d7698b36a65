"""``hzsr dataset export --format hf``: a split as a Hugging Face ``datasets`` data set (Arrow on disk).

For researchers who live in the Hugging Face ecosystem: ``datasets.load_from_disk(OUT)`` gives one
row per capture::

    capture_id, session_id, scene_id, scene_kind, split, verdict, has_reference   typed columns
    main_W, main_T, ref_T     datasets.Image() (PNG inside the Arrow files: lossless; ref_T None
                              without a reference phone)
    manifest_json             the capture's manifest row (every sync_*, qa_*, per-slot column)
    meta_json                 ShardReader.meta: every frame field, the sync and QA rows

Pixels are read through ``ShardReader`` (checked reads: a damaged shard stops the export with one
line naming shard and capture). The Arrow files are built in a temp folder beside ``OUT`` and the
folder is renamed into place when complete. Needs the ``datasets`` package (extra ``[hf]``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from hzsr.core.errors import ConfigError
from hzsr.dataset.reader import ShardReader

COLUMNS = ("capture_id", "session_id", "scene_id", "scene_kind", "split", "verdict", "has_reference")


def _plain(v: Any) -> Any:
    return None if isinstance(v, float) and v != v else v


def export_hf(root: str | Path, out: str | Path, split: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Write captures of ``split`` (or all) as a ``datasets.Dataset`` saved to ``out``."""
    try:
        import datasets
    except ImportError:
        raise ConfigError("the datasets package is not installed; pip install 'hzsr[hf]'", field="--format",
                          unreadable=True) from None
    out = Path(out)
    if out.exists():
        raise ConfigError("already exists; choose another --out", file=out, field="--out")
    reader = ShardReader(root)
    ids = reader.ids(split)
    man = reader.manifest.set_index("capture_id")
    sp = reader.splits
    split_of = dict(zip(sp["capture_id"], sp["split"], strict=True)) if sp is not None else {}
    features = datasets.Features({
        "capture_id": datasets.Value("string"), "session_id": datasets.Value("string"),
        "scene_id": datasets.Value("string"), "scene_kind": datasets.Value("string"),
        "split": datasets.Value("string"), "verdict": datasets.Value("string"),
        "has_reference": datasets.Value("bool"),
        "main_W": datasets.Image(), "main_T": datasets.Image(), "ref_T": datasets.Image(),
        "manifest_json": datasets.Value("string"), "meta_json": datasets.Value("string"),
    })

    def rows():
        r = ShardReader(root)  # the generator may run in another process: its own reader
        for cid in ids:
            s = r.read(cid)
            row = {k: _plain(v) for k, v in man.loc[cid].to_dict().items()}
            yield {"capture_id": cid, "session_id": row.get("session_id"), "scene_id": row.get("scene_id"),
                   "scene_kind": row.get("scene_kind"), "split": split_of.get(cid), "verdict": row.get("verdict"),
                   "has_reference": s.ref_T is not None, "main_W": s.main_W, "main_T": s.main_T, "ref_T": s.ref_T,
                   "manifest_json": json.dumps({"capture_id": cid, **row}, sort_keys=True, default=str),
                   "meta_json": json.dumps(s.meta, sort_keys=True, default=str)}
        r.close()

    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    cache = out.parent / f".{out.name}.cache-{os.getpid()}"
    if not progress:
        datasets.disable_progress_bars()
    try:
        ds = datasets.Dataset.from_generator(rows, features=features, cache_dir=str(cache))
        ds.save_to_disk(str(tmp))
        del ds
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    reader.close()
    return {"out": str(out), "captures": len(ids), "split": split, "format": "hf",
            "load_with": f"datasets.load_from_disk({str(out)!r})"}


__all__ = ["export_hf", "COLUMNS"]
