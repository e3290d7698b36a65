"""One phone's clock offset at any host instant from its clock samples, each used by its quality.

The one mapping every stage uses: ``hzsr capture run`` for the live skew line and
``hzsr sync check`` (``hzsr.sync.timebase``) afterwards, so the two differ only by the samples
each had, never by the rule.

A sample ``i`` says ``offset(h_i) = o_i`` within ``e_i`` (``rtt_i / 2``, or the calibrated bound,
``sample_bounds``). Carried to another instant ``h`` with the fitted drift ``d`` it predicts

    p_i(h) = o_i + d (h - h_i),    |p_i(h) - offset(h)| <= e_i + w |h - h_i| + delta |h - h_i|

with ``w`` the oscillator's wander (ppm) and ``delta`` the drift's error, taken as
``3 stderr``. The mapping uses the best nearby samples: those whose cost
``c_i = e_i + (w + 3 stderr) |h - h_i|`` is within ``best_factor`` of the least (plus
``best_slack_ns``), weighted by ``1 / c_i^2``. A loose sample (a 3 ms round under CPU load) is
then never mixed in while a tight one is near. When chosen samples lie on both sides of ``h``,
each side is averaged with those weights and the two averages are interpolated linearly (with
one sample a side, this is plain interpolation), so the weights' centroid is ``h`` and the
estimate owes nothing to the drift fit. With the final normalised weights ``v_i`` the estimate is
``sum v_i p_i`` and, since every error term is bounded, its error is bounded by

    bound(h) = sum v_i (e_i + w |h - h_i|) + 3 stderr |sum v_i (h - h_i)|

The drift term uses the weighted centroid: samples on both sides of ``h`` cancel a drift error,
as linear interpolation does; one-sided samples (extrapolation) do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Per frame: how far a SENSOR_TIMESTAMP may sit from the true exposure start (~3 sigma of the
#: start-of-frame interrupt's jitter). Every skew bound adds it once per frame.
TIMESTAMP_JITTER_NS = 10_000
#: Samples within this factor of the best one's cost (plus the slack) share the mapping.
BEST_FACTOR = 1.5
BEST_SLACK_NS = 10_000.0
#: At most this many samples on each side of an instant are considered (the rest are far away).
WINDOW = 16


def sample_bounds(samples: Sequence, calibration=None) -> np.ndarray:
    """Each sample's offset error bound (ns).

    Without calibration ``rtt / 2`` (it covers any link asymmetry). With one (``hzsr sync
    calibrate``) the offsets were corrected for the measured asymmetry, and what is left is the
    jitter above the link's symmetric floor plus what the calibration may have missed:
    ``max(rtt / 2 - floor, 0) + uncertainty``. The floor is the least ``rtt / 2`` seen, in the
    calibration or among ``samples``: a floor measured too high (a loaded host while calibrating)
    would shrink every bound below what it must cover.
    """
    e = np.array([s.rtt_ns / 2 for s in samples], np.float64)
    if calibration is not None:
        floor = min(float(calibration.base_half_rtt_ns), float(e.min()) if len(e) else np.inf)
        e = np.maximum(e - floor, 0.0) + calibration.uncertainty_ns
    return e


def offset_at(host_ns: np.ndarray, hs: np.ndarray, off: np.ndarray, e: np.ndarray, drift_ppm: float,
              drift_stderr_ppm: float, wander_ppm: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Offset (phone minus host, ns) and its error bound at host instants ``host_ns``.

    ``hs`` (sorted), ``off`` and ``e`` are one clock segment's samples and their bounds; see the
    module docstring for the formula.
    """
    h = np.atleast_1d(np.asarray(host_ns, np.float64))
    n = len(hs)
    if n == 0:
        raise ValueError("no clock-sync samples")
    # The WINDOW samples on each side of every instant (indices clipped to the segment).
    centre = np.searchsorted(hs, h)
    idx = np.clip(centre[:, None] + np.arange(-WINDOW, WINDOW)[None, :], 0, n - 1)
    dt = h[:, None] - hs[idx]
    k = (wander_ppm + 3 * drift_stderr_ppm) * 1e-6
    cost = e[idx] + k * np.abs(dt)
    best = cost.min(1, keepdims=True)
    use = cost <= BEST_FACTOR * best + BEST_SLACK_NS
    # Duplicated indices (clipped at the ends) must count once.
    first = np.ones_like(use)
    first[:, 1:] = idx[:, 1:] != idx[:, :-1]
    w = np.where(use & first, 1.0 / np.maximum(cost, 1.0) ** 2, 0.0)
    # With chosen samples on both sides, each side is averaged on its own and the two averages are
    # interpolated (their weighted centroid is then h: a drift error cancels, as in interpolation).
    before = dt >= 0
    wl, wr = np.where(before, w, 0.0), np.where(before, 0.0, w)
    sl, sr = wl.sum(1, keepdims=True), wr.sum(1, keepdims=True)
    both = (sl > 0) & (sr > 0)
    hl = (wl * hs[idx]).sum(1, keepdims=True) / np.where(sl > 0, sl, 1.0)
    hr = (wr * hs[idx]).sum(1, keepdims=True) / np.where(sr > 0, sr, 1.0)
    lam = np.where(both, (h[:, None] - hl) / np.where(both, hr - hl, 1.0), 0.0)
    v = np.where(both, (1 - lam) * wl / np.where(sl > 0, sl, 1.0) + lam * wr / np.where(sr > 0, sr, 1.0),
                 w / w.sum(1, keepdims=True))
    pred = off[idx] + drift_ppm * 1e-6 * dt
    out = (v * pred).sum(1)
    bound = (v * (e[idx] + wander_ppm * 1e-6 * np.abs(dt))).sum(1) \
        + 3 * drift_stderr_ppm * 1e-6 * np.abs((v * dt).sum(1))
    return out, bound


def used_samples(host_ns: float, hs: np.ndarray, e: np.ndarray, drift_stderr_ppm: float,
                 wander_ppm: float = 0.5) -> list[int]:
    """Indices (into ``hs``) of the samples ``offset_at`` uses at one instant: what set it."""
    h = float(host_ns)
    lo = max(int(np.searchsorted(hs, h)) - WINDOW, 0)
    hi = min(int(np.searchsorted(hs, h)) + WINDOW, len(hs))
    cost = e[lo:hi] + (wander_ppm + 3 * drift_stderr_ppm) * 1e-6 * np.abs(h - hs[lo:hi])
    return [lo + int(i) for i in np.flatnonzero(cost <= BEST_FACTOR * cost.min() + BEST_SLACK_NS)]


def to_host(phone_ns: np.ndarray, hs: np.ndarray, off: np.ndarray, e: np.ndarray, drift_ppm: float,
            drift_stderr_ppm: float, wander_ppm: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Host instants ``h`` with ``h + offset(h) = phone_ns``, and their bounds (three fixed-point
    steps: the offset changes by ppm over a step)."""
    p = np.atleast_1d(np.asarray(phone_ns, np.float64))
    h = p - off[-1]
    for _ in range(3):
        o, _ = offset_at(h, hs, off, e, drift_ppm, drift_stderr_ppm, wander_ppm)
        h = p - o
    _, bound = offset_at(h, hs, off, e, drift_ppm, drift_stderr_ppm, wander_ppm)
    return h, bound


def loose_trigger_text(trigger_samples: Sequence) -> str | None:
    """Why a capture's trigger came from a loose sample (``TriggerSample``s), in words; None if
    every phone's was tight. The live line and ``sync check`` both say it this way."""
    loose = [t for t in trigger_samples if t.loose]
    if not loose:
        return None
    return "; ".join(f"{t.role}: fresh sample still above the tight limit (floor {t.floor_ns / 1e3:.0f} us) after "
                     f"{t.rounds} rounds (target bound {t.bound_ns / 1e3:.0f} us)" for t in loose)


def skew_bound_ns(bound_main_ns: float, bound_ref_ns: float) -> float:
    """A capture's skew bound: both frames' mapping bounds plus each timestamp's jitter."""
    return bound_main_ns + bound_ref_ns + 2 * TIMESTAMP_JITTER_NS
