import numpy as np
import pandas as pd

from hzsr.sync.pairing import pair_frames

PERIOD = 33_333_333


def _burst(n, t0=0.0, jitter_ns=0.0, seed=0, drop=()):
    rng = np.random.default_rng(seed)
    t = t0 + np.arange(n) * PERIOD + rng.normal(0, jitter_ns, n) if jitter_ns else t0 + np.arange(n) * PERIOD
    keep = [i for i in range(n) if i not in drop]
    return pd.DataFrame({"key": [f"f{i}" for i in keep], "host_ns": t[keep]})


def test_burst_pairs_one_to_one():
    main = _burst(30)
    ref = _burst(30, t0=40_000, jitter_ns=10_000, seed=1)
    p = pair_frames(main, ref, tolerance_ns=100_000)
    assert (p["status"] == "matched").all() and len(p) == 30
    assert (p["main_key"] == p["ref_key"]).all()


def test_unmatched_frame_in_burst_flagged():
    main = _burst(30)
    ref = _burst(30, t0=20_000, drop=(11,))
    p = pair_frames(main, ref, tolerance_ns=100_000)
    un = p[p["status"] == "unmatched"]
    assert un["main_key"].tolist() == ["f11"]
    assert (p[p["status"] == "matched"]["main_key"] == p[p["status"] == "matched"]["ref_key"]).all()


def test_orphaned_and_ambiguous():
    main = _burst(10, drop=(4,))
    ref = _burst(10, t0=5_000)
    p = pair_frames(main, ref, tolerance_ns=100_000)
    assert p[p["status"] == "orphaned"]["ref_key"].tolist() == ["f4"]
    # A duplicated reference frame 50 us after the first: two candidates within tolerance.
    ref2 = pd.concat([ref, pd.DataFrame({"key": ["dup"], "host_ns": [ref["host_ns"].iloc[2] + 50_000]})])
    p2 = pair_frames(_burst(10), ref2, tolerance_ns=100_000)
    assert p2.set_index("main_key").loc["f2", "status"] == "ambiguous"
