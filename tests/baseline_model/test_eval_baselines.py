"""``model eval``'s no-network blend baseline (issue 20, item 6): the network must keep earning its place."""

import numpy as np
import pytest

from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.config import PipelineConfig
from hzsr.baseline_model.evaluate import METHODS, evaluate, evaluate_capture
from hzsr.baseline_model.pipeline import HZSRPipeline
from hzsr.dataset.reader import ShardReader


def _samples(ds):
    r = ShardReader(ds)
    try:
        return [r.read(c) for c in r.ids(None)]
    finally:
        r.close()


def test_blend_is_reported_beside_the_network_and_checked(tiny_run, tiny_dataset, tmp_path):
    res = evaluate(tiny_run / "model.pt", tiny_dataset, "test", tmp_path / "ev", progress=False)
    assert "blend" in METHODS and np.isfinite(res["mean_psnr"]["blend"])
    assert "blend PSNR" in res["table_md"]
    check = next(c for c in res["checks"] if "no-network blend" in c["name"])
    assert check["verdict"] in ("pass", "fail") and "captures" in check["detail"]


def test_blend_follows_the_blend_map(tiny_run, tiny_dataset):
    # All maps off: M_blend = 1 wherever the reference has a pixel, so the blend is the warped
    # reference; with the maps on it lies between bicubic and the warped reference.
    model = load_model(tiny_run / "model.pt").model
    on, off = HZSRPipeline(model, PipelineConfig()), HZSRPipeline(
        model, PipelineConfig(use_occ=False, use_defocus=False, use_flow=False, use_reject=False))
    rows = [(evaluate_capture(on, s), evaluate_capture(off, s)) for s in _samples(tiny_dataset) if s.ref_T is not None]
    used = [(a, b) for a, b in rows if a["used_reference"] and b["used_reference"]]
    assert used
    for a, b in used:
        assert b["psnr_blend"] == pytest.approx(b["psnr_warped_ref"], abs=0.05)
        assert min(a["psnr_bicubic"], a["psnr_warped_ref"]) - 0.5 <= a["psnr_blend"]
    for a, _ in rows:
        if not a["used_reference"]:
            assert a["psnr_blend"] == pytest.approx(a["psnr_bicubic"])
