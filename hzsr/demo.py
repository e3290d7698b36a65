"""``make demo``: the main job, end to end, on the virtual rig.

1. bring up the virtual rig: a private adb server and two virtual phones that speak the real ADB
   device protocol (``hzsr rig up --virtual``);
2. check it as a crew would before a shoot (``hzsr rig doctor``);
3. capture a session of synchronized triplets over adb: clock sync, trigger, verified pull
   (``hzsr capture``);
4. validate the session folder and check its timing (``hzsr session validate``, ``hzsr sync check``);
5. take the rig down (``hzsr rig down``);
6. the renderer-only path: a simulated session with ground truth (``hzsr sim session``).

Later stages (qa, dataset, model) append their steps here as they land.
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
    rig_yaml = out / "rig" / "rig.yaml"
    session = out / "session"
    sim = out / "sim"
    steps = [
        ["rig", "up", "--virtual", "--background", "--dir", str(out / "rig")],
        ["rig", "doctor", "--rig", str(rig_yaml)],
        ["capture", "--rig", str(rig_yaml), "--session", str(session), "--count", str(captures),
         "--interval", "0.5", "--scene", "demo-lobby", "--tags", "indoor,demo"],
        ["session", "validate", str(session)],
        ["sync", "check", str(session)],
        ["rig", "down", "--rig", str(rig_yaml)],
        ["sim", "session", "--out", str(sim), "--captures", "5", "--seed", "1", "--truth", "--quiet"],
        ["session", "validate", str(sim)],
    ]
    t0 = time.time()
    try:
        for argv in steps:
            print(f"\n$ hzsr {' '.join(argv)}", flush=True)
            rc = hzsr(argv)
            if rc != 0:
                print(f"demo: step failed with exit {rc}", file=sys.stderr)
                return rc
    finally:
        if rig_yaml.exists():
            hzsr(["rig", "down", "--rig", str(rig_yaml)])
    print(f"\ndemo finished in {time.time() - t0:.1f} s")
    print(json.dumps({
        "captured_session": str(session),
        "frames": str(session / "captures"),
        "sync_report": str(session / "sync"),
        "journal": str(session / "journal.jsonl"),
        "phone_storage": str(out / "rig" / "phones"),
        "simulated_session": str(sim),
        "ground_truth": str(out / "sim.truth"),
    }, indent=2))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo_out", type=Path)
    p.add_argument("--captures", type=int, default=8)
    a = p.parse_args()
    return run(a.out.resolve(), a.captures)


if __name__ == "__main__":
    sys.exit(main())
