"""Fit a phone's clock against the host's from its clock-sync samples.

Model: ``offset(h) = a_seg + b (h - h0)``, with ``b`` the drift (``1e-6 ppm``) and one intercept
per clock segment (a jump starts a new one). Weighted least squares
with weights ``1 / (rtt/2)^2``: an exchange's error is bounded by half its round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# A phone crystal's rate against the host's: specified to tens of ppm, so a fitted drift beyond
# this is the fit's noise (two samples close in time) or a clock step, never the crystal.
MAX_CRYSTAL_PPM = 100.0


def fit_drift(samples: Sequence, segment_starts: Sequence[int] = ()) -> tuple[float | None, float | None]:
    """Drift in ppm and its standard error from ``ClockSample``s; ``(None, None)`` if unknowable.

    ``segment_starts`` are sample indices where the clock stepped (a jump): each segment gets
    its own intercept and all share the slope, ``offset = a_seg + b (h - h0)``, so a step moves
    no slope and the samples before it still count. With two samples the slope is exact and its
    error is propagated from the rtt bounds.
    """
    if len(samples) < 2:
        return None, None
    h = np.array([s.host_ns for s in samples], np.float64)
    o = np.array([s.offset_ns for s in samples], np.float64)
    e = np.maximum(np.array([s.rtt_ns for s in samples], np.float64) / 2, 1.0)
    seg = np.zeros(len(samples), np.int64)
    for k in segment_starts:
        seg[int(k):] += 1
    # Only segments with two distinct instants say anything about the slope.
    informative = [g for g in np.unique(seg) if np.ptp(h[seg == g]) > 0]
    if not informative:
        return None, None
    keep = np.isin(seg, informative)
    h, o, e, seg = h[keep], o[keep], e[keep], seg[keep]
    x = h - h.mean()
    w = 1 / e**2
    cols = [(seg == g).astype(np.float64) for g in informative]
    a_mat = np.stack([*cols, x], 1)
    cov = np.linalg.inv(a_mat.T @ (a_mat * w[:, None]))
    coef = cov @ (a_mat.T @ (w * o))
    # e is a bound, not a std: treat it as ~2 sigma, so the slope stderr is conservative-but-fair.
    stderr = float(np.sqrt(cov[-1, -1]) / 2)
    return float(coef[-1] * 1e6), stderr * 1e6


def sntp_estimate(stamps: np.ndarray, drift_ppm: float | None = None, keep: float = 0.25,
                  drift_allow_ppm: float | None = None) -> tuple[int, int, int, int]:
    """One clock-offset estimate from a round of SNTP exchanges, with a rigorous error bound.

    ``stamps`` holds rows ``(t0, t1, t2, t3)``. Exchange ``i`` gives ``offset_i = ((t1 - t0) +
    (t2 - t3)) / 2`` and ``rtt_i = (t3 - t0) - (t2 - t1)``; whatever the two one-way delays, the
    true offset lies in ``[offset_i - rtt_i / 2, offset_i + rtt_i / 2]`` (it is ``t1 - t0 - up``
    and ``t2 - t3 + down`` with both delays >= 0). So:

    1. **Minimum-RTT filter:** keep the ``keep`` fraction of exchanges with the least rtt (at least
       3); the others carry queueing, stalls and pauses.
    2. **Intersection with outlier rejection** (Marzullo's algorithm): shift every kept interval
       to the instant of the least-rtt exchange (by ``drift_ppm`` when known) and widen it by
       ``drift_allow_ppm`` times the distance, then find the region covered by the most intervals.
       Intervals that miss it are outliers (stamps that cannot all be right); if fewer than half
       agree, only the least-rtt exchange is used.

    The region is ``[true - min down, true + min up]`` when every stamp is right: its half-width
    is the bound and its middle the estimate, biased by half the *base* asymmetry ``(min up - min
    down) / 2``, which no exchange can reveal (``docs/sync.md``).

    Returns:
        ``(host_ns, offset_ns, bound_ns, used)``: the least-rtt exchange's mid instant, the
        offset there, its error bound, and how many exchanges agreed.
    """
    t = np.asarray(stamps, np.float64).reshape(-1, 4)
    rtt = (t[:, 3] - t[:, 0]) - (t[:, 2] - t[:, 1])
    ok = rtt >= 0
    if not ok.any():
        raise ValueError("no SNTP exchange with a non-negative round trip")
    t, rtt = t[ok], rtt[ok]
    off = ((t[:, 1] - t[:, 0]) + (t[:, 2] - t[:, 3])) / 2
    mid = (t[:, 0] + t[:, 3]) / 2
    order = np.argsort(rtt, kind="stable")
    k = min(len(order), max(3, int(np.ceil(keep * len(order)))))
    idx = order[:k]
    best = idx[0]
    dh = mid[idx] - mid[best]
    slope = (drift_ppm or 0.0) * 1e-6
    allow = (drift_allow_ppm if drift_allow_ppm is not None else (5.0 if drift_ppm is not None else 100.0)) * 1e-6
    centre = off[idx] - slope * dh
    half = rtt[idx] / 2 + allow * np.abs(dh)
    lo, hi = centre - half, centre + half
    # Marzullo: sweep interval edges; starts sort before ends at equal positions (closed intervals).
    edges = sorted([(x, -1) for x in lo] + [(x, 1) for x in hi])
    count = top = 0
    top_lo = top_hi = None
    for i, (x, kind) in enumerate(edges):
        count -= kind
        if kind == -1 and count > top:
            top, top_lo, top_hi = count, x, edges[i + 1][0]
    if top < (k + 1) // 2 or top_lo is None:
        return int(mid[best]), int(round(off[best])), int(np.ceil(rtt[best] / 2)), 1
    return int(mid[best]), int(round((top_lo + top_hi) / 2)), int(np.ceil((top_hi - top_lo) / 2)), int(top)
