"""Clock segments: a step splits the model; neither the drift fit nor earlier mappings move."""

import numpy as np

from hzsr.core.clock import fit_drift
from hzsr.core.records import ClockSample, DeviceClock
from hzsr.sync.timebase import Timebase


def _clock(jump_ns=40_000_000, drift_ppm=12.0, n=10, at=5):
    rng = np.random.default_rng(1)
    samples = []
    for i in range(n):
        h = 10**12 + i * 10**9
        off = 5 * 10**9 + drift_ppm * 1e-6 * (h - 10**12) + (jump_ns if i >= at else 0) + rng.normal(0, 2e3)
        samples.append(ClockSample(host_ns=h, offset_ns=int(off), rtt_ns=20_000))
    return DeviceClock(samples=samples, segment_starts=[at])


def test_drift_fit_with_segments_ignores_the_step():
    c = _clock()
    drift, err = fit_drift(c.samples, c.segment_starts)
    assert abs(drift - 12.0) < 0.1 and err < 2
    naive, _ = fit_drift(c.samples)  # one segment: the 40 ms step bends the slope by thousands of ppm
    assert abs(naive - 12.0) > 1000


def test_each_instant_maps_with_its_own_segment():
    c = _clock()
    c.drift_ppm, c.drift_ppm_stderr = fit_drift(c.samples, c.segment_starts)
    tb = Timebase.from_clock(c)
    h_before = 10**12 + 2.5e9  # between samples 2 and 3 (segment 0)
    h_after = 10**12 + 7.5e9  # segment 1
    for h, extra in ((h_before, 0), (h_after, 40_000_000)):
        phone = h + 5e9 + 12e-6 * (h - 10**12) + extra
        got, bound = tb.to_host(np.array([phone]), near_host_ns=h)
        assert abs(got[0] - h) < 10_000 and bound[0] < 50_000
    # Without segments the pre-jump instant would be mapped 40 ms off.
    (j,) = tb.jumps()
    assert abs(j.jump_ns - 40e6) < 1e5 and j.after_host_ns == c.samples[4].host_ns


def test_segment_starts_are_checked():
    from hzsr.core.schema import parse_dataclass

    c = _clock()
    _, problems = parse_dataclass(DeviceClock, {"samples": [vars(s) for s in c.samples], "segment_starts": [0]})
    assert problems and problems[0].field == "segment_starts"
