"""``make demo``: the main job, end to end, on what exists so far.

Today: render a simulated session (virtual rig, renderer path), validate it, check its timing.
Later stages append their steps here as they land.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from hzsr.cli import main as hzsr


def run(out: Path, captures: int) -> int:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    session = out / "session"
    steps = [
        ["sim", "session", "--out", str(session), "--captures", str(captures), "--seed", "1", "--truth"],
        ["session", "validate", str(session)],
        ["sync", "check", str(session)],
    ]
    t0 = time.time()
    for argv in steps:
        print(f"\n$ hzsr {' '.join(argv)}", flush=True)
        rc = hzsr(argv)
        if rc != 0:
            print(f"demo: step failed with exit {rc}", file=sys.stderr)
            return rc
    print(f"\ndemo finished in {time.time() - t0:.1f} s")
    print(json.dumps({
        "session": str(session),
        "frames": str(session / "captures"),
        "sync_report": str(session / "sync"),
        "ground_truth": str(out / "session.truth"),
    }, indent=2))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo_out", type=Path)
    p.add_argument("--captures", type=int, default=10)
    a = p.parse_args()
    return run(a.out, a.captures)


if __name__ == "__main__":
    sys.exit(main())
