"""The sync board: decoding board time from rolling-shutter frames, hzsr sync optical and calibrate."""

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml

from hzsr.capture.rigfile import load_rig
from hzsr.cli import main
from hzsr.core.errors import BoardNotFound
from hzsr.core.records import SessionRecord
from hzsr.sim.profiles import get_profile
from hzsr.sim.rig import RigGeometry
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sim.syncboard import BoardPlacement, board_scene, render_board, render_board_slot
from hzsr.sim.truth import load_session_truth
from hzsr.sync.check import run_sync_check
from hzsr.sync.optical import OpticalConfig, decode_frame, wrap_us

SIZE = (1280, 960)


def _grey(jpg):
    return cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_GRAYSCALE)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decoder_reads_board_time_at_the_first_row(seed):
    rig = RigGeometry.random(get_profile("vphone-5x"), SIZE, np.random.default_rng(seed))
    scene = board_scene(0, np.random.default_rng(seed + 10))
    spec, place = scene.extra["board"], scene.extra["placement"]
    for slot in ("main_W", "main_T", "ref_T"):
        host = 1e12 + seed * 1.234567e9 + 333_333 * len(slot)
        jpg, exp = render_board_slot(rig, scene, slot, host, np.random.default_rng(seed), 10_000_000)
        r = decode_frame(_grey(jpg), spec, exp.exposure_time_ns, OpticalConfig(), readout_ns=10_000_000)
        err = wrap_us(r.t0_us - float(place.board_us(host)), spec.period_us)
        assert abs(err) < 5 and abs(err) < 3 * r.sigma_us + r.readout_term_us and r.readout_source == "frame"
        # A readout far from the true one: read within its (wider) uncertainty, or not at all.
        try:
            r2 = decode_frame(_grey(jpg), spec, exp.exposure_time_ns, OpticalConfig(readout_ms=5.0))
        except BoardNotFound:
            continue
        err2 = wrap_us(r2.t0_us - float(place.board_us(host)), spec.period_us)
        assert abs(err2) > 200  # the rolling-shutter correction is what made the first right ...
        assert r2.readout_source == "assumed" and r2.readout_term_us > 0


def test_board_out_of_frame_is_not_found():
    rig = RigGeometry.random(get_profile("vphone-5x"), SIZE, np.random.default_rng(0))
    scene = board_scene(0, np.random.default_rng(1))
    spec = scene.extra["board"]
    pose = rig.pose("main_T")
    far = BoardPlacement(centre_m=(0.3, 0.035, 3.0))  # slid 30 cm sideways: half out of T's view
    jpg, _ = render_board(spec, far, pose.K, pose.R, pose.C, SIZE, 1e12, 200_000, 10_000_000,
                          np.random.default_rng(0))
    with pytest.raises(BoardNotFound):
        decode_frame(_grey(jpg), spec, 200_000, OpticalConfig(), 10_000_000)


def test_optical_finds_an_injected_bias_and_calibration_removes_it(tmp_path, capsys):
    kw = dict(link="main=usb2-hub,reference=usb3", link_bias_us=100.0)
    d = simulate_session(tmp_path / "board", SimConfig(captures=8, seed=4, size=SIZE, kinds=("sync-board",),
                                                       truth=True, **kw), progress=False)
    assert main(["sync", "optical", str(d)]) == 0
    assert "board decoded in 8/8 captures" in capsys.readouterr().out
    df = pd.read_csv(d / "sync" / "optical.csv")
    truth = df["capture_id"].map({c["capture_id"]: c["skew_ref_minus_main_ns"] / 1e3
                                  for c in load_session_truth(d)["captures"]})
    assert (df["status"] == "ok").all() and (d / "sync" / "optical.png").stat().st_size > 1000
    assert np.percentile(np.abs(df["optical_skew_us"] - truth), 95) <= 50
    # The clocks report ~0; the board sees the ~65 us the asymmetries (and the bias) put between
    # the frames, as the truth does.
    clock_err = (df["clock_skew_us"] - truth).median()
    assert clock_err < -40 and abs(df["clock_minus_optical_us"].median() - clock_err) < 50
    assert (df["clock_minus_optical_us"].abs() <= df["clock_bound_us"] + df["optical_uncertainty_us"]).all()

    serials = {dev.role: dev.serial for dev in SessionRecord.load(d).devices}
    rig = tmp_path / "rig.yaml"
    rig.write_text(yaml.safe_dump({"adb": {"port": 5999}, "phones": [{"serial": serials["main"], "role": "main"},
                                                                     {"serial": serials["reference"],
                                                                      "role": "reference"}]}))
    assert main(["sync", "calibrate", str(d), "--rig", str(rig)]) == 0
    cal = {p.role: p.clock_calibration for p in load_rig(rig).phones}
    assert abs(cal["reference"].offset_correction_ns / 1e3 + clock_err) < 50
    # Later captures apply it: the real frames come together and the bound shrinks.
    after = simulate_session(tmp_path / "after", SimConfig(captures=40, seed=5, size=(160, 120), images=False,
                                                           truth=True, calibration=cal, **kw), progress=False)
    run_sync_check(after, plots=False)
    s = pd.read_csv(after / "sync" / "sync.csv")
    true = s["capture_id"].map({c["capture_id"]: c["skew_ref_minus_main_ns"] / 1e3
                                for c in load_session_truth(after)["captures"]})
    assert np.percentile(true.abs(), 95) <= 100
    assert ((s["skew_ref_main_us"] - true).abs() <= s["skew_bound_us"]).mean() >= 0.99
    assert s["skew_bound_us"].median() < 200


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["sync", "optical", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    d = simulate_session(tmp_path / "plain", SimConfig(captures=2, seed=1, size=(160, 120)), progress=False)
    board = tmp_path / "board.yaml"
    board.write_text("step_us: 100\nleds: 5\n")
    assert main(["sync", "optical", str(d), "--board", str(board)]) == 1
    err = capsys.readouterr().err
    assert str(board) in err and "leds" in err and "Traceback" not in err
    # No board in these captures: exit 1, saying so and why (not "None" and 0).
    assert main(["sync", "optical", str(d), "--no-plots"]) == 1
    err = capsys.readouterr().err
    assert "board decoded in only 0 of 2 captures (fewer than half)" in err and "marker" in err
    rig = tmp_path / "rig.yaml"
    rig.write_text("phones: []\n")
    assert main(["sync", "calibrate", str(d), "--rig", str(rig)]) == 1  # no board in these captures
    assert "calibration needs >= 8" in capsys.readouterr().err
