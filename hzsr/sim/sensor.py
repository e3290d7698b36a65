"""A camera HAL's repeating sensor stream, with the constraints phase alignment has to live with.

Frames start at ``s_k`` in the phone's boot-time clock; ``s_k+1 = s_k + d_k`` with ``d_k`` the
frame duration in effect for frame ``k``. An app changes ``d`` only by submitting a one-shot
request (``android.sensor.frameDuration``), and the HAL gives it what a sensor can do:

- **granularity:** a frame is a whole number of sensor lines, so a duration is rounded to
  ``line_ns`` (``d = round(d_req / line_ns) line_ns``) and clipped to ``[min_frame_ns,
  max_frame_ns]``;
- **latency:** the request reaches the sensor ``latency_frames`` frames after the frame in
  progress when it was submitted (the HAL's pipeline depth; 2-4 on shipping phones, and it varies
  from request to request, so the app cannot predict which frame changes);
- **overhead:** a changed frame comes out ``overhead_ns`` longer than asked (the sensor inserts
  blanking lines when its frame length register changes), a per-device constant the app does
  not know (libsoftwaresync's ``overheadNs`` calibrates the same thing);
- **timestamp jitter:** the reported ``SENSOR_TIMESTAMP`` is the start-of-exposure interrupt's
  time, ``s_k + N(0, timestamp_jitter_ns)``;
- **rolling shutter:** row ``r`` (of ``rows``) starts exposing at ``s_k + r readout_ns / rows``.

The stream has a first frame, ``k = 0`` at ``t0`` (the camera opened): before it there is no
frame, whatever the phone's clock reads (a capture asked for right after the camera opens, or a
clock stepped backwards). ``frame_at`` says so with ``-1``; ``reported`` refuses a frame that never
existed; ``first_at_or_after`` never answers one.

Nothing here knows about alignment: ``hzsr.sim.phase_align`` is the app-side algorithm that
steers this stream.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SensorConfig:
    """What the virtual camera HAL accepts; every default lives here."""

    period_ns: int = 33_333_333  # the repeating request's frame duration (30 fps)
    min_frame_ns: int = 25_000_000  # the sensor mode's shortest frame (40 fps)
    max_frame_ns: int = 200_000_000
    line_ns: int = 10_000  # frame-length granularity: one line time
    latency_frames: tuple[int, int] = (2, 3)  # a request lands this many frames later (inclusive range)
    overhead_ns: tuple[int, int] = (20_000, 150_000)  # per-device extra on a changed frame (range drawn from)
    timestamp_jitter_ns: float = 3_000.0  # std of the reported start-of-frame timestamp
    readout_ns: int = 10_000_000  # rolling shutter: first to last row


class SensorStream:
    """One camera's frame timeline, computed lazily from the frame durations that were applied."""

    def __init__(self, cfg: SensorConfig, start_ns: float, seed: int):
        self.cfg = cfg
        self.t0 = float(start_ns)  # frame 0 starts here (camera open)
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 1])
        self.overhead_ns = float(rng.uniform(*cfg.overhead_ns))
        self._rng = np.random.default_rng([self.seed, 2])
        self._idx: list[int] = []  # frames whose duration differs from the period, sorted
        self._extra: list[float] = []  # ... by this much
        self._cum: list[float] = []  # cumulative extra up to and including each

    # -- the timeline ------------------------------------------------------------------
    def _extra_before(self, k: int) -> float:
        i = bisect.bisect_left(self._idx, k)
        return self._cum[i - 1] if i else 0.0

    def start(self, k: int) -> float:
        """True start (phone clock, ns) of frame ``k``'s first row."""
        return self.t0 + k * self.cfg.period_ns + self._extra_before(k)

    def duration(self, k: int) -> float:
        return self.start(k + 1) - self.start(k)

    def frame_at(self, t: float) -> int:
        """The frame in progress at ``t`` (the last one started at or before it); -1 before frame 0."""
        if t < self.t0:
            return -1
        p = self.cfg.period_ns
        k = int(np.floor((t - self.t0) / p))
        for _ in range(8):  # the extras are at most a few periods
            k2 = int(np.floor((t - self.t0 - self._extra_before(k)) / p))
            if k2 == k:
                break
            k = k2
        while self.start(k) > t:
            k -= 1
        while self.start(k + 1) <= t:
            k += 1
        return k

    def first_at_or_after(self, t: float) -> int:
        """The first frame that starts at or after ``t`` (frame 0 for any ``t`` before the stream)."""
        k = self.frame_at(t)
        if k < 0:
            return 0
        return k if self.start(k) >= t else k + 1

    def reported(self, k: int) -> float:
        """The ``SENSOR_TIMESTAMP`` the HAL reports for frame ``k`` (same value every time).

        Raises:
            ValueError: ``k`` is before the stream's first frame (no such frame was ever reported).
        """
        if k < 0:
            raise ValueError(f"frame {k} precedes the stream's first frame (0): it has no timestamp")
        jit = np.random.default_rng([self.seed, 3, k]).normal(0.0, self.cfg.timestamp_jitter_ns)
        return self.start(k) + float(jit)

    def row_start(self, k: int, row: float, rows: int) -> float:
        return self.start(k) + row * self.cfg.readout_ns / rows

    # -- requests ----------------------------------------------------------------------
    def quantize(self, duration_ns: float) -> int:
        c = self.cfg
        d = int(round(duration_ns / c.line_ns)) * c.line_ns
        return int(min(max(d, c.min_frame_ns), c.max_frame_ns))

    def request_duration(self, now_ns: float, duration_ns: float) -> int:
        """Submit a one-shot frame duration at phone time ``now_ns``; returns the frame it hits.

        The app does not learn that frame from the HAL; it is returned for tests only.
        """
        lo, hi = self.cfg.latency_frames
        # Before the stream runs, the request waits in the HAL's queue as if submitted during frame 0.
        k = max(self.frame_at(now_ns), 0) + int(self._rng.integers(lo, hi + 1))
        d = self.quantize(duration_ns)
        extra = d - self.cfg.period_ns + (self.overhead_ns if d != self.cfg.period_ns else 0.0)
        i = bisect.bisect_left(self._idx, k)
        if i < len(self._idx) and self._idx[i] == k:
            self._extra[i] = extra  # a later request for the same frame replaces the earlier one
        else:
            self._idx.insert(i, k)
            self._extra.insert(i, extra)
        self._cum = list(np.cumsum(self._extra)) if self._extra else []
        return k
