"""Adaptive blending (``docs/method.md``, step 5), written once for numpy arrays and torch tensors.

    M_blend = max(1 - M_occ - M_defocus - M_flow - M_reject, 0)
    I_final = M_blend * I_fusion + (1 - M_blend) * I_src

Each map is in [0, 1] and says how much the reference must not be trusted at a pixel. A map that
is switched off (``None``) counts as zero. The maps themselves come from ``hzsr.qa.maps``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def blend_weight(m_occ: Any = None, m_defocus: Any = None, m_flow: Any = None, m_reject: Any = None) -> Any:
    """``M_blend`` from the maps given (same shape; numpy or torch). At least one must be given."""
    maps = [m for m in (m_occ, m_defocus, m_flow, m_reject) if m is not None]
    if not maps:
        raise ValueError("blend_weight needs at least one map")
    total = maps[0]
    for m in maps[1:]:
        total = total + m
    w = 1 - total
    # numpy's clip(lo, hi) and torch's clamp(min=) spelled so both work.
    return w.clip(0, None) if hasattr(w, "dtype") and type(w).__module__ == "numpy" else w.clamp(min=0)


def blend(fusion: Any, source: Any, weight: Any) -> Any:
    """``weight * fusion + (1 - weight) * source``; ``weight`` broadcasts over channels."""
    return source + weight * (fusion - source)


def blend_planes(fusion: np.ndarray, source: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``blend`` for same-shape numpy float32 planes, with one temporary instead of three.

    The same float32 operations in the same order (``fusion - source``, times ``weight``, plus
    ``source``), so the same bits; the inputs are not modified. Tile-by-tile inference blends
    14.6 MP of planes per 12 MP image, where each fresh temporary costs page faults.
    """
    d = fusion - source
    d *= weight
    d += source
    return d
