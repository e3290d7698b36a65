"""The shipped checkpoint's recorded figures reproduce (issue 20, item 8).

``weights/shipped.json`` names a small pinned simulated set and the mean Y PSNR of every
``model eval`` method on it; re-rendering and re-evaluating must give them back within 0.1 dB.
When a change moves them on purpose, `python bench/eval.py --record` (run from bench/) rewrites
the record, and the diff shows by how much.
"""

import hashlib

import pytest

from hzsr.baseline_model.checkpoint import read_checkpoint, shipped_checkpoint_path
from hzsr.baseline_model.evaluate import METHODS
from hzsr.baseline_model.record import TOLERANCE_DB, PinnedSet, pinned_figures, read_record
from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.sim.simsession import SimConfig, simulate_session


def render_pinned(pinned: PinnedSet, root):
    sess = simulate_session(root / "sess", SimConfig(captures=pinned.captures, seed=pinned.seed,
                                                     size=tuple(pinned.size), kinds=tuple(pinned.kinds)),
                            progress=False)
    pack_dataset([sess], root / "ds", PackConfig(progress=False))
    return root / "ds"


def test_recorded_figures_reproduce_within_tolerance(tmp_path):
    rec = read_record()
    assert {"config", "commands", "torch"} <= set(rec["recipe"])
    pin = rec["pinned_eval"]
    recorded = pin["mean_psnr_y_db"]
    assert set(recorded) == set(METHODS)
    pinned = PinnedSet(**{**pin["set"], "size": tuple(pin["set"]["size"]), "kinds": tuple(pin["set"]["kinds"])})
    got = pinned_figures(None, render_pinned(pinned, tmp_path), tmp_path)
    for m in METHODS:
        assert got[m] == pytest.approx(recorded[m], abs=TOLERANCE_DB), (m, got, recorded)
    # Not a tautology: the figures separate the methods by more than the tolerance.
    assert got["full"] - got["bicubic"] > 10 * TOLERANCE_DB


def test_record_is_of_the_weights_beside_it():
    """The record names shipped.pt's sha256 and its training provenance (what a retrain must give back)."""
    rec = read_record()["recipe"]
    ckpt = shipped_checkpoint_path()
    assert rec["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    prov = read_checkpoint(ckpt)["provenance"]
    assert rec["provenance"] == prov
    assert prov["data"]["captures"] and len(prov["data"]["inputs_sha256"]) == 64 and prov["code"]["commit"]
