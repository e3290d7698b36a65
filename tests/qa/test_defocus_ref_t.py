"""The reference T's ``M_defocus`` from the W crop vs main T flow (issue 18, defocus-map pass)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from hzsr.qa.align import GlobalShift
from hzsr.qa.capture_qa import analyse_capture, expected_parallax, focus_plane_differs
from hzsr.qa.config import QAConfig
from hzsr.qa.maps import plane_at_other_focus
from hzsr.qa.register import Registration, defocus_at_plane, plane_for_other_focus
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sim.truth import load_capture_truth


def test_plane_at_other_focus_follows_the_depth_flow_relation():
    # The rig's offset o cancels: F(D) = -f b D + o, so F(0.5) - F(0.25) = -f b 0.25.
    fx, b, o = 2000.0, (0.015, 0.0), np.array([3.0, -7.0])
    at = {d: expected_parallax(fx, b, d) + o for d in (0.25, 0.5)}
    assert plane_at_other_focus(at[0.25], fx, b, 0.25, 0.5) == pytest.approx(at[0.5], abs=1e-4)
    assert plane_at_other_focus(at[0.5], fx, b, 0.5, 0.5) == pytest.approx(at[0.5], abs=1e-6)


def _registration(flow: np.ndarray, plane) -> Registration:
    h, w = flow.shape[:2]
    z = np.zeros((h, w), np.float32)
    return Registration(GlobalShift(0.0, 0.0, 0, 0), flow, -flow, np.zeros((h, w, 3), np.uint8),
                        np.ones((h, w), bool), z, z, z, z, 1.0, {}, None, np.asarray(plane, np.float32), 1.0)


def test_defocus_at_plane_marks_what_the_other_cameras_focus_leaves():
    """Main T focused on the subject (flow -10 px), the reference T on the background 8 px of
    parallax away (0.1 D further at f b = 80 px/D): the reference T's map marks the subject."""
    h, w = 60, 80
    flow = np.zeros((h, w, 2), np.float32)
    flow[:, :40, 0] = -10.0  # subject
    flow[:, 40:, 0] = -2.0  # background
    reg = _registration(flow, (-10.0, 0.0))
    cfg = QAConfig()
    plane = plane_at_other_focus(reg.defocus_plane, 80.0 / 0.015, (0.015, 0.0), 0.125, 0.025)
    assert plane == pytest.approx([-2.0, 0.0], abs=1e-4)
    m = defocus_at_plane(reg, plane, cfg)
    assert m[:, :40].min() > 0.95 and m[:, 40:].max() < 0.05
    same = defocus_at_plane(reg, reg.defocus_plane, cfg)  # the same focus: main T's own map
    assert same[:, :40].max() < 0.05 and same[:, 40:].min() > 0.95


def test_plane_for_other_focus_keeps_the_cluster_the_other_focus_names():
    """Main T's AF ROI mostly shows a near layer at -8 px that main T's focus distance also
    explains (within sqrt(gamma) = 5.3 px); the reference phone focused on that layer, whose
    plane the focus difference puts 5 px further (-13): the cluster is that plane as DIS measured
    it and is kept. A plane 20 px away is another plane: the focus distances' plane is taken."""
    flow = np.zeros((40, 40, 2), np.float32)
    reg = replace(_registration(flow, (-8.0, 0.0)), stats={"subject_dx": -8.0, "subject_dy": 0.0})
    assert plane_for_other_focus(reg, (-13.0, 0.0)) == pytest.approx([-8.0, 0.0])
    assert plane_for_other_focus(reg, (-28.0, 0.0)) == pytest.approx([-28.0, 0.0])
    reg.flow_units = 4.0  # the quick check's flow in qa check's units: the radius is 4x smaller
    assert plane_for_other_focus(reg, (-13.0, 0.0)) == pytest.approx([-13.0, 0.0])


@pytest.fixture(scope="module")
def portraits(tmp_path_factory):
    root = tmp_path_factory.mktemp("defocus_ref")
    return simulate_session(root / "s", SimConfig(captures=2, seed=2030, size=(320, 240), truth=True,
                                                  kinds=("portrait",), captures_per_scene=2), progress=False)


def _iou_against_truth(sess, cid: str, cfg: QAConfig) -> float:
    out = analyse_capture(sess / "captures" / cid, cfg)
    _, truth = load_capture_truth(sess, cid)
    true_oof = truth["defocus_sigma_ref_T"] * 2 * np.sqrt(2) > 2.0  # blur circle over 2 px in the reference T
    h, w = true_oof.shape
    pred = cv2.resize(out.images["map_wr_defocus"], (w, h), interpolation=cv2.INTER_NEAREST) >= 128
    return float((pred & true_oof).sum() / max((pred | true_oof).sum(), 1))


def test_qa_checks_reference_t_defocus_matches_the_simulators_truth(portraits):
    """Against the simulator's true out-of-focus planes of the reference T: the map from the W crop
    vs main T flow, beside the map from the W crop vs reference T flow it replaces."""
    cfg = QAConfig()
    old = replace(cfg, maps=replace(cfg.maps, defocus_ref_from_main_t=False))
    for cid in ("c00000", "c00001"):
        new_iou, old_iou = _iou_against_truth(portraits, cid, cfg), _iou_against_truth(portraits, cid, old)
        assert new_iou >= 0.6 and new_iou > old_iou, (cid, new_iou, old_iou)


def test_a_switch_of_the_reference_ts_plane_alone_is_not_measured_again_when_main_t_gives_its_map(portraits):
    """review2: with ``maps.defocus_ref_from_main_t`` the reference T's map is measured from the W
    crop vs main T flow, so the W crop vs reference T flow's own plane (``focus_flow`` for "wr")
    changes nothing; ``focus_plane_differs`` asking for "wr" alone cost a whole second analysis
    (qa check's redo; the quick check's second look, at capture size) for the same map."""
    cfg = QAConfig()
    cap = portraits / "captures" / "c00000"
    out = analyse_capture(cap, cfg)
    assert out.row.get("wr_defocus_from_main_t") == 1
    # The switch would change nothing: the reference T's map with wr's plane moved 40 px is the same.
    again = analyse_capture(cap, cfg, focus_offsets={"wr": (40.0, 0.0)})
    assert again.row["wr_defocus_frac"] == out.row["wr_defocus_frac"]
    b = np.add(cfg.rig.wt_baseline_m, cfg.rig.ref_baseline_m)
    u = b / np.hypot(*b)
    row = {"wr_subject_dx": 200.0 * u[0], "wr_subject_dy": 200.0 * u[1], "wr_focus_expected_dx": 0.0,
           "wr_focus_expected_dy": 0.0, "wr_grid_scale": 1.0}
    assert focus_plane_differs(row, {"wr": (0.0, 0.0)}, cfg) == {"wr": (0.0, 0.0)}  # its own map: measured again
    assert focus_plane_differs({**row, "wr_defocus_from_main_t": 1}, {"wr": (0.0, 0.0)}, cfg) == {}
