"""Fit a phone's clock against the host's from its clock-sync samples.

Model: ``offset(h) = a_seg + b (h - h0)``, with ``b`` the drift (``1e-6 ppm``) and one intercept
per clock segment (a jump starts a new one). Weighted least squares
with weights ``1 / (rtt/2)^2``: an exchange's error is bounded by half its round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
