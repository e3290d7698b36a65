"""Visibility on a stereo pair with true disparity (Middlebury), shared by the benches.

A left pixel ``x`` with disparity ``d`` lands at ``x - d`` in the right view; it is hidden there
when another left pixel of the same row with a disparity larger by more than 1 px lands on the
same right pixel (a z-buffer on the true disparity). Pixels without a disparity (inf) are unknown.
"""

from __future__ import annotations

import numpy as np


def visibility(disp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hidden, inframe, known)`` masks of the left view (see the module docstring)."""
    h, w = disp.shape
    known = np.isfinite(disp)
    d = np.where(known, disp, 0.0)
    rows, xs = np.mgrid[0:h, 0:w]
    xr = xs - d
    inframe = known & (xr >= 0) & (xr <= w - 1)
    xi = np.clip(np.round(xr).astype(int), 0, w - 1)
    zb = np.full((h, w), -np.inf)
    np.maximum.at(zb, (rows[inframe], xi[inframe]), d[inframe])
    hidden = inframe & (d < zb[rows, xi] - 1.0)
    return hidden, inframe, known
