"""Clocks and sensor streams of the virtual phones.

Each phone's boot-time clock runs ``phone_ns = host_ns + offset_ns + drift_ppm 1e-6 (host_ns -
epoch_ns)``, plus any injected jumps. Its sensor stream delivers frames every ``period_ns`` at a
phase of its own; a capture takes the first frame at or after the target instant. With phase
alignment (libsoftwaresync) the host steers both streams onto a common phase, leaving a residual
of tens of microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class PhoneClock:
    offset_ns: int  # phone minus host at epoch
    drift_ppm: float
    epoch_ns: int
    jumps: list[tuple[int, int]] = field(default_factory=list)  # (host_ns from which, +jump_ns)

    def phone_ns(self, host_ns: float) -> float:
        t = host_ns + self.offset_ns + self.drift_ppm * 1e-6 * (host_ns - self.epoch_ns)
        for at, jump in self.jumps:
            if host_ns >= at:
                t += jump
        return t

    def host_ns(self, phone_ns: float) -> float:
        """Inverse of ``phone_ns`` (jumps taken as applied)."""
        t = phone_ns
        for at, jump in self.jumps:
            if self.phone_ns(at) <= phone_ns:
                t -= jump
        return (t - self.offset_ns + self.drift_ppm * 1e-6 * self.epoch_ns) / (1 + self.drift_ppm * 1e-6)


@dataclass
class LinkModel:
    """One-way delays of the host<->phone link (forwarded socket over USB).

    The renderer-only simulator uses all three. A virtual phone behind the real adb server already
    has a real path with its own base delay, so its agent adds only the asymmetry and the jitter.
    """

    delay_us: float = 150.0  # mean one-way delay
    jitter_us: float = 60.0  # exponential tail on each direction
    asymmetry_us: float = 20.0  # extra delay host->phone: the part SNTP cannot see


def sntp_best_sample(clock: PhoneClock, host_ns: int, link: LinkModel, rng: np.random.Generator,
                     exchanges: int = 200, stop_rtt_us: float = 0.0) -> tuple[int, int, int]:
    """Simulate SNTP exchanges; return the kept (host_mid_ns, offset_ns, rtt_ns) with least rtt.

    ``offset = ((t1 - t0) + (t2 - t3)) / 2``, ``rtt = (t3 - t0) - (t2 - t1)``.
    """
    best = None
    t0 = float(host_ns)
    for _ in range(exchanges):
        up = (link.delay_us + link.asymmetry_us + rng.exponential(link.jitter_us)) * 1e3
        turnaround = rng.uniform(20, 60) * 1e3
        down = (link.delay_us + rng.exponential(link.jitter_us)) * 1e3
        t1 = clock.phone_ns(t0 + up)
        t2 = t1 + turnaround
        t3 = t0 + up + turnaround + down
        offset = ((t1 - t0) + (t2 - t3)) / 2
        rtt = (t3 - t0) - (t2 - t1)
        if best is None or rtt < best[2]:
            best = (int((t0 + t3) / 2), int(round(offset)), int(round(rtt)))
        if stop_rtt_us and rtt < stop_rtt_us * 1e3:
            break
        t0 = t3 + 1e6
    assert best is not None
    return best


def next_frame_ns(target_phone_ns: float, phase_ns: float, period_ns: int) -> float:
    """First stream frame at or after ``target`` for a stream with frames at ``phase + k period``."""
    k = np.ceil((target_phone_ns - phase_ns) / period_ns)
    return phase_ns + k * period_ns
