"""The shipped checkpoint's record: how it was made, and figures anyone can reproduce.

``weights/shipped.json`` sits beside ``weights/shipped.pt``:

- ``recipe``: the commands, seeds, config and torch build that trained it (docs/model.md,
  "Reproduce the shipped model");
- ``pinned_eval``: a small simulated set (``PinnedSet``: a few seconds to render; the caller renders
  and packs it) and the mean Y
  PSNR of every ``model eval`` method on it. ``tests/baseline_model/test_shipped.py`` re-renders
  the set, re-evaluates the checkpoint and requires every figure within ``TOLERANCE_DB``: a change
  to the simulator, the alignment or the maps that moves the results cannot land silently; it
  must come with a new record (``python bench/eval.py --record``).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hzsr.baseline_model.checkpoint import shipped_checkpoint_path

TOLERANCE_DB = 0.1


@dataclass(frozen=True)
class PinnedSet:
    """``hzsr sim session`` options of the pinned evaluation set (every capture is evaluated)."""

    captures: int = 6
    seed: int = 5
    size: tuple[int, int] = (320, 240)
    kinds: tuple[str, ...] = ("architecture", "landscape", "moving")
    extra: dict[str, Any] = field(default_factory=dict)


def record_path() -> Path:
    return shipped_checkpoint_path().with_suffix(".json")


def read_record(path: Path | None = None) -> dict[str, Any]:
    return json.loads((path or record_path()).read_text())


def pinned_figures(ckpt: str | Path | None, dataset: Path, work: Path | None = None) -> dict[str, float]:
    """Mean Y PSNR of each ``model eval`` method over every capture of ``dataset``.

    ``dataset`` is ``PinnedSet`` rendered (``hzsr sim session`` with its options) and packed; the
    caller renders it, since this package may not import the simulator.
    """
    from hzsr.baseline_model.evaluate import METHODS, evaluate

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        res = evaluate(ckpt, dataset, None, Path(tmp) / "eval", progress=False)
    return {m: round(res["mean_psnr"][m], 3) for m in METHODS}


def write_record(recipe: dict[str, Any], figures: dict[str, float], pinned: PinnedSet,
                 path: Path | None = None) -> Path:
    from hzsr.core.fileio import atomic_write_json

    p = path or record_path()
    atomic_write_json(p, {"recipe": recipe, "pinned_eval": {"set": asdict(pinned), "mean_psnr_y_db": figures,
                                                            "tolerance_db": TOLERANCE_DB}})
    return p
