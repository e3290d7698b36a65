"""Fit a phone's clock against the host's from its clock-sync samples.

Model: ``offset(h) = a + b (h - h0)``, with ``b`` the drift (``1e-6 ppm``). Weighted least squares
with weights ``1 / (rtt/2)^2``: an exchange's error is bounded by half its round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fit_drift(samples: Sequence) -> tuple[float | None, float | None]:
    """Drift in ppm and its standard error from ``ClockSample``s; ``(None, None)`` if < 2 samples.

    With two samples the slope is exact and its error is propagated from the rtt bounds.
    """
    if len(samples) < 2:
        return None, None
    h = np.array([s.host_ns for s in samples], np.float64)
    o = np.array([s.offset_ns for s in samples], np.float64)
    e = np.maximum(np.array([s.rtt_ns for s in samples], np.float64) / 2, 1.0)
    h0 = h.mean()
    x = h - h0
    if np.ptp(x) <= 0:
        return None, None
    w = 1 / e**2
    a_mat = np.stack([np.ones_like(x), x], 1)
    cov = np.linalg.inv(a_mat.T @ (a_mat * w[:, None]))
    a, b = cov @ (a_mat.T @ (w * o))
    # e is a bound, not a std: treat it as ~2 sigma, so the slope stderr is conservative-but-fair.
    stderr = float(np.sqrt(cov[1, 1]) / 2)
    return float(b * 1e6), stderr * 1e6
