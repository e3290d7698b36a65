"""Pinned simulated data for the model benchmarks (run as scripts, so imported by plain name).

One recipe, so every table in docs/model.md comes from the same captures:

- ``TRAIN_SEEDS`` (11-14): the data set the shipped model is trained and evaluated on
  (``hzsr sim session --captures 24 --seed S --textures train``, 640x480, all five scene kinds),
  rendered with ``--truth`` so the coarse-alignment bench can score against the true flow;
- ``EVAL_SEEDS`` (21-23): held-out sessions for the ideal-target evaluation, never trained on,
  rendered with ``--textures eval``: photographs and fine detail no training scene shows
  (``hzsr.sim.textures``).

Sessions are rendered once into ``HZSR_BENCH_DATA`` (default ``bench/.data``) and reused; the
renderer is deterministic per seed, so a cached session is the same as a fresh one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sim.truth import truth_dir

TRAIN_SEEDS = (11, 12, 13, 14)
EVAL_SEEDS = (21, 22, 23)
CAPTURES = 24
SIZE = (640, 480)


def pool(seed: int) -> str:
    """The texture pool of pinned session ``seed``: ``eval`` for held-out seeds, else ``train``."""
    return "eval" if seed in EVAL_SEEDS else "train"


def data_root() -> Path:
    return Path(os.environ.get("HZSR_BENCH_DATA", Path(__file__).resolve().parent / ".data"))


def session(seed: int, captures: int = CAPTURES) -> Path:
    """The pinned session of ``seed`` (with truth, in its texture pool), rendered on first use."""
    out = data_root() / f"s{seed}-{pool(seed)}"  # the pool in the name: no stale pre-pool cache
    if not (out / "session.json").is_file() or not (truth_dir(out) / "truth.json").is_file():
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(truth_dir(out), ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        simulate_session(out, SimConfig(captures=captures, seed=seed, size=SIZE, truth=True,
                                        textures=pool(seed)), progress=False)
    return out


def sessions(seeds: tuple[int, ...]) -> list[Path]:
    return [session(s) for s in seeds]


class TruthCapture(NamedTuple):
    """One rendered capture with its truth (``truth_captures``)."""

    session: Path
    capture: Path  # the capture folder (main_W.jpg, ref_T.jpg, capture.json, ...)
    meta: dict  # capture.json
    kind: str  # the scene kind (hzsr.dataset.schema.scene_kind)
    truth_meta: dict  # load_capture_truth's metadata (crop_rect, ...)
    truth: dict  # load_capture_truth's arrays (ideal_T, masks, ...)


def truth_captures(sessions: list[Path], kinds: list[str] | None = None) -> Iterator[TruthCapture]:
    """Every capture of ``sessions`` with truth beside it, of ``kinds`` (default all), in order: the
    loop the evaluation benches share."""
    import json

    from hzsr.dataset.schema import scene_kind
    from hzsr.sim.truth import captures_with_truth, load_capture_truth

    for sess in sessions:
        for cap in captures_with_truth(sess):
            meta = json.loads((cap / "capture.json").read_text())
            kind = scene_kind(str(meta.get("scene_id", "")), list(meta.get("scene_tags", [])))
            if kinds and kind not in kinds:
                continue
            tmeta, t = load_capture_truth(sess, cap.name)
            yield TruthCapture(Path(sess), cap, meta, kind, tmeta, t)
