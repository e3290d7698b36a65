"""Clock sync with each phone over its agent socket, SNTP style (libsoftwaresync's method).

One exchange stamps ``t0`` (host, send), ``t1`` (phone, receive), ``t2`` (phone, reply) and ``t3``
(host, receive):

    offset = ((t1 - t0) + (t2 - t3)) / 2        rtt = (t3 - t0) - (t2 - t1)

and the true offset lies within ``rtt / 2`` of it. A round runs at most ``max_exchanges``
(stopping early once one is below ``good_rtt_us``), keeps the least-rtt quarter and intersects
their intervals with outlier rejection (``hzsr.core.clock.sntp_estimate``). The kept
``ClockSample`` stores ``rtt_ns = 2 x`` that intersection's half-width, so ``rtt / 2`` stays the
offset's error bound everywhere downstream. A calibrated link asymmetry (``rig.yaml``,
``hzsr sync calibrate``) is applied to the offset by :func:`apply_calibration`. The session's
samples are fitted for drift (``hzsr.core.clock.fit_drift``); instants between samples are mapped
by interpolation, as ``hzsr.sync.timebase`` does afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hzsr.capture.link import AgentClient
from hzsr.core.clock import fit_drift, sntp_estimate
from hzsr.core.records import ClockSample, DeviceClock

#: Per frame: how far a SENSOR_TIMESTAMP may sit from the true exposure start (~3 sigma of the
#: start-of-frame interrupt's jitter); ``hzsr sync check`` uses the same figure.
TIMESTAMP_JITTER_NS = 10_000


@dataclass
class SyncConfig:
    """Clock-sync options; every default lives here."""

    max_exchanges: int = 200  # per full round (libsoftwaresync: up to 300)
    quick_exchanges: int = 24  # per capture, to catch jumps and track drift cheaply
    good_rtt_us: float = 0.0  # stop a round early below this rtt; 0 = always run them all
    resync_every: int = 10  # captures between full rounds


def sync_round(agent: AgentClient, n: int, good_rtt_us: float = 0.0,
               drift_ppm: float | None = None) -> ClockSample:
    """One offset estimate from up to ``n`` exchanges (minimum-rtt filter, interval intersection)."""
    stamps = []
    for _ in range(max(n, 1)):
        t0, t1, t2, t3 = agent.time_exchange()
        stamps.append((t0, t1, t2, t3))
        if good_rtt_us and (t3 - t0) - (t2 - t1) < good_rtt_us * 1e3:
            break
    h, off, bound, _ = sntp_estimate(np.array(stamps, np.float64), drift_ppm)
    return ClockSample(host_ns=h, offset_ns=off, rtt_ns=2 * bound)


def apply_calibration(sample: ClockSample, offset_correction_ns: float) -> ClockSample:
    """Subtract a calibrated asymmetry bias from an estimate (``hzsr sync calibrate``)."""
    if not offset_correction_ns:
        return sample
    return ClockSample(sample.host_ns, int(round(sample.offset_ns - offset_correction_ns)), sample.rtt_ns)


def phone_time(clock: DeviceClock, host_ns: int) -> int:
    """Convert a host instant to the phone's clock from the latest sample and the fitted drift."""
    s = clock.samples[-1]
    drift = (clock.drift_ppm or 0.0) * 1e-6
    return int(host_ns + s.offset_ns + drift * (host_ns - s.host_ns))


def host_time(clock: DeviceClock, phone_ns: int) -> int:
    """Inverse of ``phone_time`` (two fixed-point steps; drift is ppm)."""
    h = phone_ns - clock.samples[-1].offset_ns
    for _ in range(2):
        h = phone_ns - (phone_time(clock, h) - h)
    return int(h)


def add_sample(clock: DeviceClock, sample: ClockSample) -> float | None:
    """Append ``sample``, refit drift; returns the step (ns) beyond drift since the last sample."""
    step = None
    if clock.samples:
        predicted = phone_time(clock, sample.host_ns) - sample.host_ns
        step = sample.offset_ns - predicted
    clock.samples.append(sample)
    clock.drift_ppm, clock.drift_ppm_stderr = fit_drift(clock.samples, clock.segment_starts)
    return step


def mapping_bound_ns(clock: DeviceClock, host_ns: int, wander_ppm: float = 0.5) -> float:
    """Error bound of ``host_time`` near ``host_ns``: the last sample's bound (``rtt / 2``, or the
    calibrated one), the drift's extrapolation since it, and the frame timestamp's jitter.

    The same model as ``hzsr.sync.timebase`` (docs/sync.md), for the verdict at capture time.
    """
    s = clock.samples[-1]
    e = s.rtt_ns / 2
    cal = clock.calibration
    if cal is not None:
        e = max(e - cal.base_half_rtt_ns, 0.0) + cal.uncertainty_ns
    stderr = clock.drift_ppm_stderr if clock.drift_ppm_stderr is not None else 5.0
    return e + (3 * stderr + wander_ppm) * 1e-6 * abs(host_ns - s.host_ns) + TIMESTAMP_JITTER_NS
