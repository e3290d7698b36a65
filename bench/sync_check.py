"""Benchmark: ``hzsr sync check`` on a 1,000-capture session (goal: under 2 s).

Baseline, measured in the same run: reading and validating the same 1,000 capture.json files,
the I/O the check cannot avoid. Figures are medians of 5 runs. Prints JSON.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from _timing import median_time

from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sync.check import SyncThresholds, load_captures, run_sync_check


def main() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        d = simulate_session(Path(tmp) / "s", SimConfig(captures=1000, images=False, size=(160, 120),
                                                      resync_every=20), progress=False)
        base = median_time(lambda: load_captures(d))
        no_plots = median_time(lambda: run_sync_check(d, SyncThresholds(), plots=False))
        full = median_time(lambda: run_sync_check(d, SyncThresholds(), plots=True))
    return {
        "benchmark": "sync_check_1000_captures",
        "baseline_parse_capture_json_median_s": round(base, 3),
        "check_no_plots_median_s": round(no_plots, 3),
        "check_with_plots_median_s": round(full, 3),
        "ratio_check_to_baseline": round(full / base, 2),
        "goal_s": 2.0,
        "meets_goal": full < 2.0,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
