"""Map phone sensor timestamps onto the host clock, with an error bound for each instant.

A phone's clock-sync samples give ``offset(h) = phone - host`` at host instants ``h_i``, each with
error at most ``e_i`` (``rtt_i / 2``, or the calibrated bound). An instant is mapped with the best
nearby samples weighted by their bounds, carried to it by the fitted drift
(``hzsr.core.clockmap``, the one mapping the live capture line uses too):

    p_i(h) = o_i + drift (h - h_i),   weights 1 / c_i^2,   c_i = e_i + (wander + 3 stderr) |h - h_i|
    bound(h) = sum v_i (e_i + wander |h - h_i|) + 3 stderr |sum v_i (h - h_i)|

A loose sample (a round under CPU load) is never mixed in while a tight one is near.

A phone timestamp ``p`` maps to the host instant ``h`` with ``h + offset(h) = p`` (fixed-point
steps suffice: the offset changes by ppm over the step).

A clock jump splits the samples into segments (``DeviceClock.segment_starts``, recorded by
capture, plus any step ``jumps`` finds): each segment is mapped on its own, never across the
step. An instant is mapped with the segment it falls in, given a host-time hint (the capture's
trigger): the last segment that began at or before it. Between a segment's last sample and the
next one's first, nobody knows on which side of the step an instant lies: ``hzsr sync check``
flags a capture there as ``clock_jump``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hzsr.core import clockmap
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
    segment: np.ndarray | None = None  # segment index of each sample (None: one segment)

    @classmethod
    def from_clock(cls, clock: DeviceClock, wander_ppm: float = 0.5) -> Timebase:
        if not clock.samples:
            raise ValueError("no clock-sync samples")
        seg = np.zeros(len(clock.samples), np.int64)
        for k in clock.segment_starts:
            seg[int(k):] += 1
        order = sorted(range(len(clock.samples)), key=lambda i: (seg[i], clock.samples[i].host_ns))
        s = [clock.samples[i] for i in order]
        e = clockmap.sample_bounds(s, clock.calibration)
        return cls(
            np.array([x.host_ns for x in s], np.float64),
            np.array([x.offset_ns for x in s], np.float64),
            e,
            clock.drift_ppm or 0.0,
            clock.drift_ppm_stderr if clock.drift_ppm_stderr is not None else 5.0,
            wander_ppm,
            seg[order],
        )

    def with_detected_segments(self, min_jump_ns: float = 1e6) -> Timebase:
        """A copy whose segments also split at every step ``jumps`` finds inside one segment."""
        seg = self.segments()
        starts = {int(np.argmax(seg == g)) for g in np.unique(seg) if g > 0}
        for j in self._steps(min_jump_ns):
            starts.add(int(np.searchsorted(self.host_ns, j.before_host_ns)))
        new = np.zeros(len(self.host_ns), np.int64)
        for k in sorted(starts):
            new[k:] += 1
        return Timebase(self.host_ns, self.offset_ns, self.bound_ns, self.drift_ppm, self.drift_stderr_ppm,
                        self.wander_ppm, new)

    def segments(self) -> np.ndarray:
        return self.segment if self.segment is not None else np.zeros(len(self.host_ns), np.int64)

    def segment_at(self, host_ns: float) -> int:
        """The segment an instant belongs to: the last one whose first sample is at or before it."""
        seg = self.segments()
        out = int(seg[0])
        for g in np.unique(seg):
            if self.host_ns[seg == g][0] <= host_ns:
                out = int(g)
        return out

    def _part(self, g: int | None) -> Timebase:
        if g is None or self.segment is None:
            return self
        m = self.segment == g
        return Timebase(self.host_ns[m], self.offset_ns[m], self.bound_ns[m], self.drift_ppm,
                        self.drift_stderr_ppm, self.wander_ppm, None)

    def offset_at(self, h: np.ndarray, segment: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Offset and its error bound at host instants ``h`` (within ``segment``, default the last)."""
        if self.segment is not None:
            return self._part(int(self.segment[-1]) if segment is None else segment).offset_at(h)
        return clockmap.offset_at(h, self.host_ns, self.offset_ns, self.bound_ns, self.drift_ppm,
                                  self.drift_stderr_ppm, self.wander_ppm)

    def to_host(self, phone_ns: np.ndarray, near_host_ns: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Host instants and error bounds of phone boot-time instants.

        ``near_host_ns`` (a host instant close to them, e.g. the capture's trigger) picks the
        clock segment; without it, the last segment is used.
        """
        g = None if near_host_ns is None or self.segment is None else self.segment_at(near_host_ns)
        part = self._part(g if g is not None else (int(self.segment[-1]) if self.segment is not None else None))
        return clockmap.to_host(phone_ns, part.host_ns, part.offset_ns, part.bound_ns, part.drift_ppm,
                                part.drift_stderr_ppm, part.wander_ppm)

    def _robust_drift(self) -> float:
        """Median slope of the intervals inside segments (see ``jumps``); the fit if too few."""
        seg = self.segments()
        dh_all = np.diff(self.host_ns)
        same = (np.diff(seg) == 0) & (dh_all > 0)
        if same.sum() >= 3:
            return float(np.median(np.diff(self.offset_ns)[same] / dh_all[same]))
        return self.drift_ppm * 1e-6

    def boundaries(self) -> list[ClockJump]:
        """Each step between consecutive segments, as a ``ClockJump`` (drift taken out)."""
        out = []
        seg = self.segments()
        drift = self._robust_drift()
        for i in range(len(seg) - 1):
            if seg[i + 1] != seg[i]:
                dh = self.host_ns[i + 1] - self.host_ns[i]
                resid = self.offset_ns[i + 1] - self.offset_ns[i] - drift * dh
                out.append(ClockJump(int(self.host_ns[i]), int(self.host_ns[i + 1]), float(resid)))
        return out

    def _steps(self, min_jump_ns: float = 1e6, k_sigma: float = 5.0) -> list[ClockJump]:
        """Steps in the offset between consecutive samples that drift cannot explain.

        Threshold: ``max(min_jump_ns, k_sigma (e_i + e_i+1) + 3 stderr |dh|)``. The drift used
        here is the median of the per-interval slopes, not the session's least-squares fit: one
        step moves a least-squares slope enough to make every interval look like a jump, but
        cannot move a median of three or more intervals.
        """
        out = []
        seg = self.segments()
        drift = self._robust_drift()
        for i in range(len(self.host_ns) - 1):
            if seg[i + 1] != seg[i]:
                continue  # a recorded segment boundary, reported by boundaries()
            dh = self.host_ns[i + 1] - self.host_ns[i]
            resid = self.offset_ns[i + 1] - self.offset_ns[i] - drift * dh
            thresh = max(min_jump_ns, k_sigma * (self.bound_ns[i] + self.bound_ns[i + 1])
                         + 3 * self.drift_stderr_ppm * 1e-6 * dh)
            if abs(resid) > thresh:
                out.append(ClockJump(int(self.host_ns[i]), int(self.host_ns[i + 1]), float(resid)))
        return out

    def jumps(self, min_jump_ns: float = 1e6, k_sigma: float = 5.0) -> list[ClockJump]:
        """Every clock step: recorded segment boundaries and steps found inside a segment."""
        found = self._steps(min_jump_ns, k_sigma) + self.boundaries()
        return sorted(found, key=lambda j: j.after_host_ns)
