"""The scene and camera simulator: ground-truth flow, optics, metadata, timing."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from hzsr.core.geometry import tele_crop_rect
from hzsr.core.records import CaptureRecord
from hzsr.sim.profiles import VPHONE_5X
from hzsr.sim.render import CameraPose, render_radiance, true_flow
from hzsr.sim.rig import RigGeometry, render_frame
from hzsr.sim.scene import SCENE_KINDS, make_scene
from hzsr.sim.truth import captures_with_truth, load_capture_truth, load_session_truth, write_capture_truth

SIZE = (480, 360)
FX_T = VPHONE_5X.camera("T").fx_native()


def _setup(kind, seed=3):
    rng = np.random.default_rng(seed)
    rig = RigGeometry.random(VPHONE_5X, SIZE, rng)
    scene = make_scene(kind, 0, rng, FX_T)
    src = rig.pose("main_W")
    cr = tele_crop_rect(src.K, rig.pose("main_T").K, SIZE, SIZE)
    crop_pose = CameraPose(cr.crop_intrinsics(src.K), src.R, src.C, SIZE)
    return rng, rig, scene, cr, crop_pose


def _gray8(rgb_lin):
    return np.clip(cv2.cvtColor(rgb_lin, cv2.COLOR_RGB2GRAY) ** (1 / 2.2) * 255, 0, 255).astype(np.uint8)


def _residual_epe(a8, b8, valid):
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    r = dis.calc(a8, b8, None)
    m = cv2.erode(valid.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    return float(np.median(np.linalg.norm(r, axis=2)[m])), m


def _warp(img, flow):
    h, w = flow.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(img, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR)


@pytest.mark.parametrize("kind", SCENE_KINDS)
@pytest.mark.parametrize("slot", ["main_T", "ref_T"])
def test_true_flow_aligns_tele_to_w_crop(kind, slot):
    """Warping T by the true flow lands on the W crop: residual flow < 0.5 px where not occluded."""
    _, rig, scene, _, crop_pose = _setup(kind)
    a = render_radiance(scene, crop_pose, rig.camera("main_T"), 0.0, 0.0, optics=False)
    b = render_radiance(scene, rig.pose(slot), rig.camera(slot), 0.002, 0.0, optics=False)
    flow, valid = true_flow(scene, crop_pose, 0.0, rig.pose(slot), 0.002)
    assert valid.mean() > 0.6
    epe, m = _residual_epe(_gray8(a), _gray8(_warp(b, flow)), valid)
    assert epe < 0.5, f"{kind}/{slot}: residual {epe:.3f} px"
    # The check can fail: a flow off by 2 px is caught.
    epe_bad, _ = _residual_epe(_gray8(a), _gray8(_warp(b, flow + np.float32([2.0, 0.0]))), valid)
    assert epe_bad > 1.5


def test_true_flow_against_real_w_crop():
    """The same with the W image as rendered (low resolution, lens blur) and cropped by cv2.

    W and T differ in detail and exposure, which makes per-pixel flow noisy, so this checks the
    systematic offset (median residual vector), which is what a wrong crop convention or a wrong
    flow would show, plus that the cv2 crop matches the ideal crop camera to 0.2 px.
    """
    rng, rig, scene, cr, crop_pose = _setup("architecture", seed=11)
    focus = 1 / scene.layer(scene.subject).depth_m
    _, _, w_rgb = render_frame(rig, scene, "main_W", 0.0, focus, rng, noise=False)
    _, _, t_rgb = render_frame(rig, scene, "main_T", 0.0, focus, rng, noise=False)
    w_crop = cv2.warpAffine(w_rgb, np.linalg.inv(cr.crop_to_w())[:2], SIZE, flags=cv2.INTER_CUBIC)
    ideal = render_radiance(scene, crop_pose, rig.camera("main_T"), 0.0, focus, optics=False)
    g = lambda x: cv2.GaussianBlur(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), (0, 0), 2.0)  # noqa: E731
    ideal8 = cv2.cvtColor(_gray8(ideal), cv2.COLOR_GRAY2RGB)
    (dx, dy), _ = cv2.phaseCorrelate(g(ideal8).astype(np.float32), g(w_crop).astype(np.float32))
    assert np.hypot(dx, dy) < 0.2
    flow, valid = true_flow(scene, crop_pose, 0.0, rig.pose("main_T"), 0.0)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    r = dis.calc(g(w_crop), g(_warp(t_rgb, flow)), None)
    m = cv2.erode(valid.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    bias = np.median(r[m], axis=0)
    assert np.hypot(*bias) < 0.5, bias


def _sharpness(gray, mask):
    lap = cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F)
    return float(lap[mask].var())


def test_tele_is_sharper_than_upsampled_w_crop():
    rng, rig, scene, cr, crop_pose = _setup("architecture", seed=5)
    focus = 1 / scene.layer(scene.subject).depth_m
    _, _, w_rgb = render_frame(rig, scene, "main_W", 0.0, focus, rng, noise=False)
    _, _, t_rgb = render_frame(rig, scene, "main_T", 0.0, focus, rng, noise=False)
    w_crop = cv2.warpAffine(w_rgb, np.linalg.inv(cr.crop_to_w())[:2], SIZE, flags=cv2.INTER_CUBIC)
    mask = np.ones(SIZE[::-1], bool)
    ratio = _sharpness(cv2.cvtColor(t_rgb, cv2.COLOR_RGB2GRAY), mask) / _sharpness(
        cv2.cvtColor(w_crop, cv2.COLOR_RGB2GRAY), mask)
    assert ratio > 4, ratio


def test_tele_blurs_out_of_focus_planes_and_w_barely():
    """Portrait: T focused on the subject blurs the near foreground plane; W hardly does."""
    rng, rig, scene, _, _ = _setup("portrait", seed=2)
    focus = 1 / scene.layer("subject").depth_m
    fg = scene.layers.index(scene.layer("foreground"))
    for slot, max_ratio, min_ratio in (("main_T", 0.2, 0.0), ("main_W", 1.01, 0.5)):
        pose = rig.pose(slot)
        from hzsr.sim.render import visible_layer_map

        mask = cv2.erode((visible_layer_map(scene, pose, 0.0) == fg).astype(np.uint8), np.ones((15, 15))) > 0
        assert mask.sum() > 200, slot
        sharp = render_radiance(scene, pose, rig.camera(slot), 0.0, focus, optics=False)
        real = render_radiance(scene, pose, rig.camera(slot), 0.0, focus, optics=True)
        r = _sharpness(_gray8(real), mask) / _sharpness(_gray8(sharp), mask)
        assert min_ratio <= r <= max_ratio, (slot, r)


def test_moving_objects_move_between_instants_static_ones_do_not():
    _, rig, scene, _, _ = _setup("moving", seed=4)
    pose, cam = rig.pose("ref_T"), rig.camera("ref_T")
    a = render_radiance(scene, pose, cam, 0.0, 0.0, optics=False)
    b = render_radiance(scene, pose, cam, 0.0333, 0.0, optics=False)
    assert np.abs(a - b).mean() > 0.01
    _, rig, scene, _, _ = _setup("architecture", seed=4)
    pose, cam = rig.pose("ref_T"), rig.camera("ref_T")
    a = render_radiance(scene, pose, cam, 0.0, 0.0, optics=False)
    b = render_radiance(scene, pose, cam, 0.0333, 0.0, optics=False)
    assert np.abs(a - b).max() == 0


def test_session_metadata_consistent_with_truth(sim_session):
    truth = load_session_truth(sim_session)
    for cap in truth["captures"]:
        rec = CaptureRecord.load(sim_session / "captures" / cap["capture_id"])
        w, t, r = rec.frame("main_W"), rec.frame("main_T"), rec.frame("ref_T")
        # APPROXIMATE multi-camera: W and T carry the same timestamp whatever the true offset.
        assert w.sensor_timestamp_ns == t.sensor_timestamp_ns
        subject = next(lay for lay in cap["layers"] if lay["name"] == cap["subject"])
        assert abs(t.focus_distance_diopters - 1 / subject["depth_m"]) < 0.15 / subject["depth_m"]
        for f in (w, t, r):
            x, y, bw, bh = f.af_roi
            assert 0 <= x and x + bw <= f.width and 0 <= y and y + bh <= f.height
            assert f.exposure_time_ns > 0 and 50 <= f.iso <= 6400
        assert w.intrinsics.fx * 4.9 < t.intrinsics.fx < w.intrinsics.fx * 5.1
        _, arrays = load_capture_truth(sim_session, cap["capture_id"])
        assert arrays["flow_main_T"].shape == (240, 320, 2)
    # The truth's skew is the difference of the instants the frames were really exposed.
    for c in truth["captures"]:
        inst = c["instants_host_ns"]
        assert abs(c["skew_ref_minus_main_ns"] - (inst["ref_T"] - inst["main_W"])) <= 1


def test_night_scenes_have_high_iso_and_long_exposure(tmp_path):
    from hzsr.sim.simsession import SimConfig, simulate_session

    d = simulate_session(tmp_path / "n", SimConfig(captures=1, size=(160, 120), kinds=("night",)), progress=False)
    rec = CaptureRecord.load(d / "captures" / "c00000")
    assert "night" in rec.scene_tags
    assert all(f.iso >= 400 for f in rec.frames)
    assert rec.frame("main_W").exposure_time_ns >= 30_000_000


def test_cli_sim_session(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "hzsr.cli", "sim", "session", "--out", str(out), "--captures", "2",
           "--seed", "1", "--size", "160x120", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("simulated 2 captures at 160x120") and f"\nwrote {out}\n" in proc.stdout
    js = subprocess.run(cmd[:6] + [str(tmp_path / "js")] + cmd[7:] + ["--json"], capture_output=True, text=True)
    assert json.loads(js.stdout)["captures"] == 2
    assert subprocess.run([sys.executable, "-m", "hzsr.cli", "session", "validate", str(out)]).returncode == 0
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "--out: a session already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    bad = subprocess.run(cmd[:5] + [str(tmp_path / "x"), "--size", "big"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--size: expected WxH" in bad.stderr


def test_captures_with_truth_lists_only_captures_with_truth_arrays(sim_session, tmp_path):
    every = sorted((sim_session / "captures").iterdir())
    assert list(captures_with_truth(sim_session)) == every  # a --truth render: every capture
    sess = tmp_path / "s"
    for name in ("c00001", "c00000", "c00002"):
        (sess / "captures" / name).mkdir(parents=True)
    write_capture_truth(sess, "c00002", {"crop_rect": [0, 0, 1, 1]}, {"a": np.zeros(1)})
    write_capture_truth(sess, "c00000", {"crop_rect": [0, 0, 1, 1]}, None)  # meta only: no arrays
    assert [c.name for c in captures_with_truth(sess)] == ["c00002"]
