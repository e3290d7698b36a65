"""Ground truth of simulated captures, for tests and benchmarks only.

It lives beside the session folder, in ``<session>.truth/``, never inside it: no stage of the
toolkit may read it, and a session copied elsewhere carries none of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hzsr.core.fileio import atomic_write_bytes, atomic_write_json


def truth_dir(session_dir: str | Path) -> Path:
    p = Path(session_dir)
    return p.parent / f"{p.name}.truth"


def write_capture_truth(session_dir: str | Path, capture_id: str, meta: dict[str, Any],
                        arrays: dict[str, np.ndarray] | None) -> None:
    d = truth_dir(session_dir)
    atomic_write_json(d / f"{capture_id}.json", meta)
    if arrays:
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(d / f"{capture_id}.npz", buf.getvalue())


def write_session_truth(session_dir: str | Path, meta: dict[str, Any]) -> None:
    atomic_write_json(truth_dir(session_dir) / "truth.json", meta)


def load_session_truth(session_dir: str | Path) -> dict[str, Any]:
    return json.loads((truth_dir(session_dir) / "truth.json").read_text())


def load_capture_truth(session_dir: str | Path, capture_id: str) -> tuple[dict, dict[str, np.ndarray]]:
    d = truth_dir(session_dir)
    meta = json.loads((d / f"{capture_id}.json").read_text())
    npz = d / f"{capture_id}.npz"
    arrays = dict(np.load(npz)) if npz.exists() else {}
    return meta, arrays


def captures_with_truth(session_dir: str | Path) -> Iterator[Path]:
    """The capture folders of a rendered session that have truth arrays beside them, in order
    (``load_capture_truth`` reads them)."""
    d = truth_dir(session_dir)
    for cap in sorted((Path(session_dir) / "captures").iterdir()):
        if (d / f"{cap.name}.npz").is_file():
            yield cap
