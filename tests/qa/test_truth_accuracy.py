"""Dense alignment against the simulator's true flow (the full figures: ``bench/qa.py --part accuracy``)."""

from __future__ import annotations

import cv2
import numpy as np

from hzsr.core.records import CaptureRecord
from hzsr.qa.align import crop_w_to_t
from hzsr.qa.register import register_pair
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sim.truth import load_capture_truth


def _k(f):
    i = f.intrinsics
    return np.array([[i.fx, 0, i.cx], [0, i.fy, i.cy], [0, 0, 1]])


def test_epe_on_static_scenes_is_about_a_flow_grid_pixel(tmp_path):
    sess = simulate_session(tmp_path / "s", SimConfig(captures=2, seed=2026, size=(640, 480), truth=True,
                                                      kinds=("landscape", "architecture"), captures_per_scene=1),
                            progress=False)
    errs = []
    for cd in sorted((sess / "captures").iterdir()):
        rec = CaptureRecord.load(cd)
        fr = {f.slot: f for f in rec.frames}
        img = {s: cv2.cvtColor(cv2.imread(str(cd / fr[s].file)), cv2.COLOR_BGR2RGB) for s in fr}
        crop, rect = crop_w_to_t(img["main_W"], _k(fr["main_W"]), _k(fr["main_T"]), (640, 480))
        _, truth = load_capture_truth(sess, rec.capture_id)
        r = register_pair(crop, img["main_T"], optical_scale=1 / rect.scale)
        vis = truth["valid_main_T"] & r.valid
        errs.append(np.hypot(*(r.flow_fwd - truth["flow_main_T"]).transpose(2, 0, 1))[vis] * r.grid_scale)
        # The truth can tell a wrong flow: the same flow off by 2 px is far off.
        off = np.hypot(*(r.flow_fwd + np.float32([2, 0]) - truth["flow_main_T"]).transpose(2, 0, 1))[vis]
        assert np.median(off) * r.grid_scale > 1.2
    e = np.concatenate(errs)
    assert np.median(e) < 1.0, np.median(e)
    assert np.percentile(e, 95) < 8.0, np.percentile(e, 95)
