"""Map phone sensor timestamps onto the host clock, with an error bound for each instant.

A phone's clock-sync samples give ``offset(h) = phone - host`` at host instants ``h_i``, each with
error at most ``e_i = rtt_i / 2``. Between two samples the offset is interpolated linearly, which
absorbs a constant drift exactly; what is left is the oscillator's wander, bounded by
``wander_ppm`` times the distance to the nearer sample. Outside the samples the fitted drift
extrapolates, adding its standard error times the distance:

    bound(h) = lerp(e_i, e_i+1) + wander_ppm 1e-6 min(h - h_i, h_i+1 - h)     inside
    bound(h) = e_edge + (3 stderr_ppm + wander_ppm) 1e-6 |h - h_edge|          outside

A phone timestamp ``p`` maps to the host instant ``h`` with ``h + offset(h) = p`` (two fixed-point
steps suffice: the offset changes by ppm over the step).

``e_i = rtt_i / 2`` covers any asymmetry of the link. With a calibration (``hzsr sync calibrate``)
the offsets were corrected for the measured asymmetry, and the error left is the jitter above the
link's symmetric floor plus what the calibration may have missed:
``e_i = max(rtt_i / 2 - base_half_rtt, 0) + uncertainty`` (docs/sync.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hzsr.core.records import DeviceClock


@dataclass
class ClockJump:
    after_host_ns: int  # the last sample before the jump
    before_host_ns: int  # the first sample after it
    jump_ns: float  # offset change beyond what drift explains


@dataclass
class Timebase:
    """One phone's clock model over a session."""

    host_ns: np.ndarray  # sample instants (host), sorted
    offset_ns: np.ndarray
    bound_ns: np.ndarray  # rtt / 2
    drift_ppm: float
    drift_stderr_ppm: float
    wander_ppm: float = 0.5

    @classmethod
    def from_clock(cls, clock: DeviceClock, wander_ppm: float = 0.5) -> Timebase:
        if not clock.samples:
            raise ValueError("no clock-sync samples")
        s = sorted(clock.samples, key=lambda x: x.host_ns)
        e = np.array([x.rtt_ns / 2 for x in s], np.float64)
        cal = clock.calibration
        if cal is not None:
            e = np.maximum(e - cal.base_half_rtt_ns, 0.0) + cal.uncertainty_ns
        return cls(
            np.array([x.host_ns for x in s], np.float64),
            np.array([x.offset_ns for x in s], np.float64),
            e,
            clock.drift_ppm or 0.0,
            clock.drift_ppm_stderr if clock.drift_ppm_stderr is not None else 5.0,
            wander_ppm,
        )

    def offset_at(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offset and its error bound at host instants ``h``."""
        h = np.asarray(h, np.float64)
        hs, off, e = self.host_ns, self.offset_ns, self.bound_ns
        drift = self.drift_ppm * 1e-6
        out = np.interp(h, hs, off)
        bound = np.interp(h, hs, e)
        if len(hs) > 1:
            i = np.clip(np.searchsorted(hs, h), 1, len(hs) - 1)
            dist = np.minimum(np.abs(h - hs[i - 1]), np.abs(hs[i] - h))
            bound = bound + self.wander_ppm * 1e-6 * dist
        lo, hi = h < hs[0], h > hs[-1]
        out = np.where(lo, off[0] + drift * (h - hs[0]), out)
        out = np.where(hi, off[-1] + drift * (h - hs[-1]), out)
        k = (3 * self.drift_stderr_ppm + self.wander_ppm) * 1e-6
        bound = np.where(lo, e[0] + k * (hs[0] - h), bound)
        bound = np.where(hi, e[-1] + k * (h - hs[-1]), bound)
        return out, bound

    def to_host(self, phone_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Host instants and error bounds of phone boot-time instants."""
        p = np.asarray(phone_ns, np.float64)
        h = p - self.offset_ns[-1]
        for _ in range(2):
            off, _ = self.offset_at(h)
            h = p - off
        _, bound = self.offset_at(h)
        return h, bound

    def jumps(self, min_jump_ns: float = 1e6, k_sigma: float = 5.0) -> list[ClockJump]:
        """Steps in the offset between consecutive samples that drift cannot explain.

        Threshold: ``max(min_jump_ns, k_sigma (e_i + e_i+1) + 3 stderr |dh|)``. The drift used
        here is the median of the per-interval slopes, not the session's least-squares fit: one
        step moves a least-squares slope enough to make every interval look like a jump, but
        cannot move a median of three or more intervals.
        """
        out = []
        dh_all = np.diff(self.host_ns)
        if len(dh_all) >= 3:
            drift = float(np.median(np.diff(self.offset_ns) / dh_all))
        else:
            drift = self.drift_ppm * 1e-6
        for i in range(len(self.host_ns) - 1):
            dh = self.host_ns[i + 1] - self.host_ns[i]
            resid = self.offset_ns[i + 1] - self.offset_ns[i] - drift * dh
            thresh = max(min_jump_ns, k_sigma * (self.bound_ns[i] + self.bound_ns[i + 1])
                         + 3 * self.drift_stderr_ppm * 1e-6 * dh)
            if abs(resid) > thresh:
                out.append(ClockJump(int(self.host_ns[i]), int(self.host_ns[i + 1]), float(resid)))
        return out
