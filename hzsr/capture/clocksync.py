"""Clock sync with each phone over its agent socket, SNTP style (libsoftwaresync's method).

One exchange stamps ``t0`` (host, send), ``t1`` (phone, receive), ``t2`` (phone, reply) and ``t3``
(host, receive):

    offset = ((t1 - t0) + (t2 - t3)) / 2        rtt = (t3 - t0) - (t2 - t1)

and the true offset lies within ``rtt / 2`` of it. A round keeps the exchange with the least rtt,
out of at most ``max_exchanges``, stopping early once one is below ``good_rtt_us``. The session's
samples are fitted for drift (``hzsr.core.clock.fit_drift``); instants between samples are mapped
by interpolation, as ``hzsr.sync.timebase`` does afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from hzsr.capture.link import AgentClient
from hzsr.core.clock import fit_drift
from hzsr.core.records import ClockSample, DeviceClock


@dataclass
class SyncConfig:
    """Clock-sync options; every default lives here."""

    max_exchanges: int = 200  # per full round (libsoftwaresync: up to 300)
    quick_exchanges: int = 24  # per capture, to catch jumps and track drift cheaply
    good_rtt_us: float = 0.0  # stop a round early below this rtt; 0 = always run them all
    resync_every: int = 10  # captures between full rounds


def sync_round(agent: AgentClient, n: int, good_rtt_us: float = 0.0) -> ClockSample:
    """The best-rtt sample out of up to ``n`` exchanges."""
    best: ClockSample | None = None
    for _ in range(max(n, 1)):
        t0, t1, t2, t3 = agent.time_exchange()
        rtt = (t3 - t0) - (t2 - t1)
        if best is None or rtt < best.rtt_ns:
            best = ClockSample(host_ns=(t0 + t3) // 2, offset_ns=((t1 - t0) + (t2 - t3)) // 2, rtt_ns=rtt)
        if good_rtt_us and rtt < good_rtt_us * 1e3:
            break
    assert best is not None
    return best


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
