"""The one clock mapping (hzsr.core.clockmap): samples used by their quality, jumps only when real."""

import numpy as np

from hzsr.capture.clocksync import add_sample, live_skew
from hzsr.core import clockmap
from hzsr.core.records import ClockSample, DeviceClock

TRUE_OFFSET = 5 * 10**9
DRIFT_PPM = 12.0


def _true(h):
    return TRUE_OFFSET + DRIFT_PPM * 1e-6 * (h - 10**12)


def _sample(h, err_ns, bound_ns):
    return ClockSample(host_ns=int(h), offset_ns=int(_true(h) + err_ns), rtt_ns=int(2 * bound_ns))


def test_a_loose_sample_does_not_drag_the_mapping():
    """Tight samples (200 us bounds, errors of tens of us) around one loose sample (3.3 ms bound,
    593 us error, as under CPU load): the mapping stays with the tight ones; plain interpolation
    between neighbours would be dragged by hundreds of us."""
    rng = np.random.default_rng(0)
    hs = 10**12 + np.arange(9) * 0.5e9
    errs = rng.uniform(-40e3, 40e3, len(hs))
    bounds = np.full(len(hs), 200e3)
    errs[4], bounds[4] = 593e3, 3.3e6
    off = np.array([_true(h) for h in hs]) + errs
    h = hs[4] + 0.1e9  # next to the loose sample
    got, bound = clockmap.offset_at(np.array([h]), hs, off, bounds, DRIFT_PPM, 0.2)
    err = got[0] - _true(h)
    naive = np.interp(h, hs, off) - _true(h)
    assert abs(err) < 50e3 and abs(err) <= bound[0] < 300e3, (err, bound)
    assert abs(naive) > 300e3  # what plain interpolation did
    assert 4 not in clockmap.used_samples(h, hs, bounds, 0.2)


def test_a_loose_sample_early_in_a_session_fakes_no_clock_jump():
    """Two samples 100 ms apart, the second loose: a drift fitted from them is thousands of ppm
    off, and comparing the next sample against it alone used to report a jump of several ms."""
    clock = DeviceClock()
    h0 = 10**12
    assert add_sample(clock, _sample(h0, 10e3, 150e3)) is None
    assert add_sample(clock, _sample(h0 + 0.1e9, 593e3, 3.3e6)) is None
    assert abs(clock.drift_ppm) > 1000  # the fit is that bad ...
    for k in range(2, 8):  # ... yet no later good sample is taken for a step
        assert add_sample(clock, _sample(h0 + k * 1e9, 20e3, 150e3)) is None
    # A real 5 ms step is still found.
    assert abs(add_sample(clock, _sample(h0 + 9e9, 5e6, 150e3)) - 5e6) < 0.5e6


def test_a_step_after_a_long_pull_is_found_though_the_early_drift_fit_is_loose():
    """Two tight samples 100 ms apart (a session's open and pre-trigger syncs) fit a drift with
    ~1400 ppm of stderr. Carried 2 s to the next sample (a loaded host's pull), that stderr hid a
    5 ms step, and the frames between were interpolated across it (a full run reported -3934 us
    of skew against -4940 true). A crystal drifts at most MAX_CRYSTAL_PPM: the step is found."""
    clock = DeviceClock()
    h0 = 10**12
    assert add_sample(clock, _sample(h0, 30e3, 200e3)) is None
    assert add_sample(clock, _sample(h0 + 0.1e9, -30e3, 200e3)) is None
    assert clock.drift_ppm_stderr > 1000  # the fit's own uncertainty: far beyond any crystal
    assert abs(add_sample(clock, _sample(h0 + 2.1e9, 5e6, 200e3)) - 5e6) < 0.7e6


def test_live_skew_bound_has_the_jitter_term_of_sync_check():
    main, ref = DeviceClock(), DeviceClock()
    for k in range(5):
        add_sample(main, _sample(10**12 + k * 1e9, 0, 100e3))
        add_sample(ref, _sample(10**12 + k * 1e9, 0, 50e3))
    h = 10**12 + 2.5e9
    skew, bound = live_skew(main, ref, int(h + _true(h)), int(h + 30e3 + _true(h + 30e3)))
    assert abs(skew - 30) < 1
    # 100 + 50 us of sample bounds, a little wander, and 2 x 10 us of timestamp jitter.
    assert 170 <= bound < 175
