"""Link profiles, wandering clocks, the camera HAL stream, phase alignment and the SNTP estimator."""

import numpy as np
import pytest

from hzsr.core.clock import sntp_estimate
from hzsr.core.errors import ConfigError
from hzsr.sim.phase_align import PhaseAlignConfig, PhaseAligner
from hzsr.sim.sensor import SensorConfig, SensorStream
from hzsr.sim.timing import LINK_PROFILES, PhoneClock, parse_link_spec, sntp_exchanges

P = 33_333_333


def test_link_spec_per_phone_and_errors():
    links = parse_link_spec("main=usb2-hub,reference=usb3")
    assert links["main"].name == "usb2-hub" and links["reference"].name == "usb3"
    assert parse_link_spec("usb3")["main"] is parse_link_spec("usb3")["reference"]
    with pytest.raises(ConfigError, match="--link: unknown link profile 'usb9'"):
        parse_link_spec("usb9")
    with pytest.raises(ConfigError, match="expected main=PROFILE"):
        parse_link_spec("left=usb3")


def test_usb2_hub_has_asymmetry_tails_and_stalls():
    rng = np.random.default_rng(0)
    hub = LINK_PROFILES["usb2-hub"]
    up = np.array([hub.sample_ns("up", rng) for _ in range(20000)]) / 1e3
    down = np.array([hub.sample_ns("down", rng) for _ in range(20000)]) / 1e3
    assert 60 < np.median(up) - np.median(down) < 140  # the part SNTP cannot see
    assert (up > 2000).mean() > 0.001  # multi-ms stalls happen ...
    assert np.percentile(up, 50) < 500  # ... but the body is sub-ms
    assert np.percentile(up, 99) > 2 * np.percentile(up, 50)  # heavy tail


def test_wandering_clock_changes_rate_and_inverts():
    c = PhoneClock(10**11, 5.0, 0, wander_ppm_per_sqrt_s=0.05, wander_seed=3)
    rates = [c.frequency_ppm(t * 1e9) for t in (1, 300, 900, 1800)]
    assert np.ptp(rates) > 0.2  # temperature moves the crystal by tenths of a ppm
    for h in (5e8, 7.7e11, 1.5e12):
        assert abs(c.host_ns(c.phone_ns(h)) - h) < 1.0
    assert PhoneClock.from_truth(c.truth()).phone_ns(1e12) == c.phone_ns(1e12)


def test_sntp_estimate_is_within_bound_and_rejects_an_outlier():
    rng = np.random.default_rng(1)
    clock = PhoneClock(123_456_789, 12.0, 0)
    for name in ("usb3", "usb2-hub"):
        st = sntp_exchanges(clock, 10**9, LINK_PROFILES[name], rng, 100)
        h, off, bound, _ = sntp_estimate(st, drift_ppm=12.0)
        assert abs(off - (clock.phone_ns(h) - h)) <= bound
    # One exchange with corrupted stamps but the least rtt would pull a min-rtt-only estimate
    # far off; the intersection votes it out.
    st = sntp_exchanges(clock, 10**9, LINK_PROFILES["usb3"], rng, 60)
    bad = st.copy()
    bad[0, 3] = bad[0, 0] + 50_000  # a reply "arrived" after 50 us (impossible on this link)
    bad[0, 1] = bad[0, 2] = clock.phone_ns(bad[0, 0]) + 400_000  # ... with the clock read 400 us late
    h, off, bound, used = sntp_estimate(bad, drift_ppm=12.0)
    assert abs(off - (clock.phone_ns(h) - h)) <= bound and used >= 8


def test_hal_rounds_delays_and_lengthens_requests():
    s = SensorStream(SensorConfig(), 0.0, seed=4)
    k = s.request_duration(10 * P + 1000, P + 123_456)
    assert k - 10 in (2, 3)  # lands two or three frames after the one in progress
    assert s.duration(k) == pytest.approx(33_460_000 + s.overhead_ns, abs=1)  # whole lines + overhead
    assert s.duration(k - 1) == P and s.duration(k + 1) == P  # one-shot
    assert 20_000 <= s.overhead_ns <= 150_000


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_alignment_converges_by_iterating(seed):
    s = SensorStream(SensorConfig(), float(seed) * 7_777_777, seed=seed)
    a = PhaseAligner(s)
    goal = 5e9 + 4_321_987 + 1_234_567 * seed
    res = a.align(1e9, goal, goal)
    assert res.converged and res.iterations >= 2  # the first change misses by the unknown overhead
    assert abs(a.overhead_est - s.overhead_ns) < 5_000  # ... which it learned
    k = a.capture_frame(goal)
    assert abs(s.start(k) - goal - a.cfg.guard_ns) <= 15_000 and s.reported(k) >= goal


def test_short_lead_leaves_what_one_iteration_reaches():
    """With time for one change only, the residual is the HAL's overhead: measured, not drawn."""
    s = SensorStream(SensorConfig(), 0.0, seed=11)
    a = PhaseAligner(s)
    goal = 1e9 + 200e6 + 3_000_000
    res = a.align(1e9, goal, goal)
    assert res.iterations == 1
    k = a.capture_frame(goal)
    assert abs(s.start(k) - goal - a.cfg.guard_ns - s.overhead_ns) < 15_000
    # The next capture starts from there and corrects it.
    goal2 = goal + 60 * P
    a.align(goal + 1e9, goal2, goal2)
    assert abs(s.start(a.capture_frame(goal2)) - goal2 - a.cfg.guard_ns) <= 15_000


def test_alignment_gives_up_at_its_iteration_cap():
    s = SensorStream(SensorConfig(overhead_ns=(3_000_000, 3_000_001)), 0.0, seed=5)
    a = PhaseAligner(s, PhaseAlignConfig(max_iterations=1))
    res = a.align(1e9, 3e9 + 5_555_555, 3e9 + 5_555_555)
    assert res.iterations == 1 and not res.converged


def test_free_running_skew_varies_across_seeds_and_captures(tmp_path):
    from hzsr.sim.simsession import SimConfig, simulate_session
    from hzsr.sim.truth import load_session_truth

    meds = []
    for seed in (1, 2, 3):
        d = simulate_session(tmp_path / f"s{seed}", SimConfig(captures=12, seed=seed, size=(64, 48), images=False,
                                                             truth=True, phase_align=False, interval_s=5.0),
                             progress=False)
        sk = np.array([c["skew_ref_minus_main_ns"] for c in load_session_truth(d)["captures"]]) / 1e3
        assert np.ptp(sk) > 5  # the two crystals differ: the streams slide past each other
        meds.append(np.median(sk))
    assert len({round(m) for m in meds}) == 3


def test_cli_rejects_unknown_link_and_scene(tmp_path, capsys):
    from hzsr.cli import main

    assert main(["rig", "up", "--virtual", "--out", str(tmp_path / "r"), "--link", "main=usb9"]) == 2
    assert "--link: unknown link profile 'usb9'" in capsys.readouterr().err
    assert main(["rig", "up", "--virtual", "--out", str(tmp_path / "r"), "--scene", "disco"]) == 2
    assert "--scene: unknown scene kind 'disco'" in capsys.readouterr().err
    assert main(["sim", "session", "--out", str(tmp_path / "s"), "--link", "wifi"]) == 2
    assert "--link" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "s").exists()


# -- the stream's first frames, and a clock stepped backwards (the agent once died here) -----------
def test_no_frame_before_the_stream_starts():
    s = SensorStream(SensorConfig(), 5e9, seed=1)
    assert s.frame_at(5e9 - 1) == -1 and s.frame_at(5e9) == 0
    assert s.first_at_or_after(1e9) == 0  # any instant before the stream: its first frame
    with pytest.raises(ValueError, match="precedes the stream's first frame"):
        s.reported(-1)
    k = s.request_duration(1e9, P + 1_000_000)  # queued before the stream runs: lands on frame 2 or 3
    assert k in (2, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alignment_asked_before_and_in_the_first_frames(seed):
    """A capture asked right after the camera opens: nothing to measure yet, so the app waits for
    its first frames; a capture whose target lies before the stream gets frame 0."""
    t0 = 2e9
    for now in (t0 - 3e8, t0 - 1, t0, t0 + 0.5 * P):  # before the stream, and inside its first frame
        s = SensorStream(SensorConfig(), t0, seed=seed)
        a = PhaseAligner(s)
        goal = t0 + 1.5e9 + 777_777 * seed
        res = a.align(now, goal, goal)
        assert res.converged, (now, res)
        k = a.capture_frame(goal)
        assert k > 0 and s.reported(k) >= goal
    s = SensorStream(SensorConfig(), t0, seed=seed)
    a = PhaseAligner(s)
    res = a.align(t0 - 3e8, t0 - 2e8, t0 - 2e8)  # deadline before the first frame: no alignment
    assert res.iterations == 0 and not res.converged and res.errors_ns == []
    assert a.capture_frame(t0 - 2e8) == 0
    with pytest.raises(ValueError, match="no frame has been reported"):
        a.measure(t0 - 1, t0)


def test_alignment_after_the_clock_stepped_back():
    """A phone clock stepped back past the stream's start: the next alignment measures from the
    stream's first frames instead of asking for frames that never existed."""
    s = SensorStream(SensorConfig(), 1e9, seed=7)
    a = PhaseAligner(s)
    goal = 4e9 + 3_333_333
    assert a.align(2e9, goal, goal).converged
    # The clock now reads 1.5 s earlier than before: "now" is before frame 0.
    goal2 = 3e9 + 12_345_678
    res = a.align(2e9 - 1.5e9, goal2, goal2)
    assert res.iterations >= 0 and res.errors_ns  # it measured
    k = a.capture_frame(goal2)
    assert s.reported(k) >= goal2
