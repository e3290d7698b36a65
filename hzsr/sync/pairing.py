"""Pair main-phone frames with reference-phone frames by nearest host instant.

As RecSync does after capture: ``pandas.merge_asof(direction="nearest")`` within a tolerance. A
main frame with no reference inside the tolerance is *unmatched*; one with two or more inside it is
*ambiguous* (the tolerance is wider than half the frame spacing, or a frame was duplicated); a
reference frame claimed by two main frames is *contested*; one claimed by none is *orphaned*.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def pair_frames(main: pd.DataFrame, ref: pd.DataFrame, tolerance_ns: float) -> pd.DataFrame:
    """Pair rows of ``main`` and ``ref`` (each with ``key`` and ``host_ns`` columns).

    Returns one row per main frame and one per orphaned reference frame, with columns
    ``main_key``, ``ref_key``, ``main_host_ns``, ``ref_host_ns``, ``dt_ns`` (ref minus main),
    ``status`` in {matched, unmatched, ambiguous, contested, orphaned}.
    """
    m = main[["key", "host_ns"]].rename(columns={"key": "main_key", "host_ns": "main_host_ns"})
    r = ref[["key", "host_ns"]].rename(columns={"key": "ref_key", "host_ns": "ref_host_ns"})
    m = m.sort_values("main_host_ns").reset_index(drop=True)
    r = r.sort_values("ref_host_ns").reset_index(drop=True)
    m["_t"] = m["main_host_ns"].astype(np.float64)
    r["_t"] = r["ref_host_ns"].astype(np.float64)
    merged = pd.merge_asof(m, r, on="_t", direction="nearest", tolerance=float(tolerance_ns))
    merged["dt_ns"] = merged["ref_host_ns"] - merged["main_host_ns"]
    rt = r["_t"].to_numpy()
    lo = np.searchsorted(rt, merged["_t"].to_numpy() - tolerance_ns, side="left")
    hi = np.searchsorted(rt, merged["_t"].to_numpy() + tolerance_ns, side="right")
    n_candidates = hi - lo
    status = np.where(merged["ref_key"].isna(), "unmatched", "matched").astype(object)
    status[(n_candidates > 1) & (status == "matched")] = "ambiguous"
    claimed = merged["ref_key"].dropna()
    dup = claimed[claimed.duplicated(keep=False)]
    status[merged["ref_key"].isin(dup.values).to_numpy() & (status == "matched")] = "contested"
    merged["status"] = status
    orphans = r[~r["ref_key"].isin(claimed.values)]
    orphan_rows = pd.DataFrame({
        "main_key": None, "main_host_ns": np.nan, "ref_key": orphans["ref_key"],
        "ref_host_ns": orphans["ref_host_ns"], "dt_ns": np.nan, "status": "orphaned",
    })
    cols = ["main_key", "ref_key", "main_host_ns", "ref_host_ns", "dt_ns", "status"]
    parts = [merged[cols]] + ([orphan_rows[cols]] if len(orphan_rows) else [])
    return pd.concat(parts, ignore_index=True)
