"""Phase alignment as the phone's app does it (libsoftwaresync's ``PhaseAlignController``).

Both phones are asked for a frame at the same host instant; converted through each phone's
clock estimate, that instant is a *goal* in the phone's clock, and the goal's grid ``goal + m P``
is where the stream's frames should start. The app sees only its frames' reported timestamps, so
it iterates:

The goal is ``guard_ns`` after the target, so the aligned frame is the first at or after the target
as the agent protocol promises, whatever the sign of the residual.

1. **measure** the phase error ``e = wrap(ts - goal)`` into ``(-P/2, P/2]``, averaged over the
   last ``average_frames`` reported timestamps (timestamp jitter / sqrt(n));
2. **learn** from the previous change, if any: the phase moved by ``e - e_prev``, the request
   asked for ``d_prev - P``; the difference is the HAL's unknown overhead, averaged into
   ``overhead_est``;
3. **stop** when ``|e| <= threshold_ns``, after ``max_iterations`` changes, or when a change
   could no longer land before the deadline (the capture frame);
4. **correct:** request one frame of duration ``d = P - e - overhead_est`` (plus ``P`` when that
   is below the sensor's shortest frame: phase is modulo ``P``), then wait ``wait_frames`` frames
   (the HAL's pipeline depth plus the frames to average) and measure again.

The app measures only frames the stream has reported: right after the camera opens (or after
the phone's clock stepped backwards past the stream's start) it first waits for ``average_frames``
frames, and gives up alignment for this capture if that wait would pass the deadline.

The residual is whatever this reaches against the HAL's granularity, latency, overhead and
jitter (``hzsr.sim.sensor``); nothing draws it. Layering puts the module in ``hzsr.sim``:
the renderer-only ``hzsr sim session`` runs the same algorithm as the virtual phones' agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hzsr.sim.sensor import SensorStream


@dataclass(frozen=True)
class PhaseAlignConfig:
    """The app's alignment settings; every default lives here."""

    threshold_ns: int = 10_000  # aligned once |phase error| is at most this (libsoftwaresync: 100 us)
    guard_ns: int = 30_000  # aim this far after the target: the frame is then at or after it (the
    # protocol's promise) despite the threshold, line rounding and timestamp jitter
    max_iterations: int = 10  # changes per alignment at most
    average_frames: int = 2  # reported timestamps averaged per measurement
    wait_frames: int = 5  # after a change: the HAL's max pipeline depth (3) + average_frames


@dataclass
class AlignResult:
    iterations: int  # frame-duration changes made
    converged: bool  # |measured error| <= threshold at the last measurement
    error_ns: float  # the last measured phase error (reported timestamps, so jittered)
    errors_ns: list[float] = field(default_factory=list)  # every measurement, in order


def wrap(x: float, period: float) -> float:
    """``x`` modulo ``period`` into ``(-period/2, period/2]``."""
    return float(x - period * np.ceil(x / period - 0.5))


class PhaseAligner:
    """Keeps one stream on a goal phase; remembers what it learned between alignments."""

    def __init__(self, stream: SensorStream, cfg: PhaseAlignConfig | None = None):
        self.stream = stream
        self.cfg = cfg or PhaseAlignConfig()
        self.overhead_est = 0.0
        self._learned = 0
        self._pending: tuple[float, float, float] | None = None  # (goal, error before, extra asked)

    def measure(self, now_ns: float, goal_ns: float) -> float:
        """Mean phase error of the last ``average_frames`` frames started by ``now_ns``.

        Raises:
            ValueError: no frame has started by ``now_ns`` (nothing to measure yet).
        """
        s, p = self.stream, self.stream.cfg.period_ns
        k = s.frame_at(now_ns)
        if k < 0:
            raise ValueError("no frame has been reported yet: measure after the stream's first frame")
        errs = [wrap(s.reported(j) - goal_ns, p) for j in range(max(0, k - self.cfg.average_frames + 1), k + 1)]
        e0 = errs[-1]
        return float(np.mean([e0 + wrap(e - e0, p) for e in errs]))

    def align(self, now_ns: float, target_ns: float, deadline_ns: float) -> AlignResult:
        """Iterate from phone time ``now_ns`` until frames start at ``target_ns + guard_ns`` (modulo
        the period), out of changes, or out of time.

        A change is made only if it can land and be the capture's frame before ``deadline_ns``.
        """
        s, c, p = self.stream, self.cfg, self.stream.cfg.period_ns
        goal_ns = target_ns + c.guard_ns
        # Measure only reported frames: wait for the first ``average_frames`` after the stream starts.
        t = max(float(now_ns), s.start(c.average_frames - 1))
        if t >= deadline_ns:
            return AlignResult(0, False, float("nan"), [])
        errors: list[float] = []
        it = 0
        while True:
            e = self.measure(t, goal_ns)
            errors.append(e)
            if self._pending is not None:
                goal0, e0, extra = self._pending
                moved = wrap(e + wrap(goal_ns - goal0, p) - e0, p)  # in the old goal's frame
                overhead = moved - extra
                if abs(overhead) < 0.25 * p:  # a change that landed; a huge one is a missed frame
                    self._learned += 1
                    self.overhead_est += (overhead - self.overhead_est) / self._learned
                self._pending = None
            if abs(e) <= c.threshold_ns or it >= c.max_iterations:
                break
            extra = -e - self.overhead_est
            if p + extra < s.cfg.min_frame_ns:
                extra += p
            lo, hi = s.cfg.latency_frames
            if s.start(s.frame_at(t) + hi + 1) + max(extra, 0.0) >= deadline_ns:
                break  # the change could not take effect before the capture: leave it to the next
            s.request_duration(t, p + extra)
            # The app knows what it asked for, after the HAL's rounding (the line time is public).
            self._pending = (goal_ns, e, s.quantize(p + extra) - p)
            it += 1
            t = s.start(s.frame_at(t) + c.wait_frames)
        return AlignResult(it, abs(errors[-1]) <= c.threshold_ns, errors[-1], errors)

    def capture_frame(self, target_ns: float) -> int:
        """The first frame whose reported timestamp is at or after the target (aligned: ``guard`` after it)."""
        s = self.stream
        # first_at_or_after never answers a frame before the stream's first (frame 0).
        k = s.first_at_or_after(target_ns - 4 * s.cfg.timestamp_jitter_ns)
        while s.reported(k) < target_ns:
            k += 1
        return k
