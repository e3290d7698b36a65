"""Run ``hzsr.demo.main`` and Ctrl-C it at one event: the start of a stage, or start-up.

Used by ``tests/test_demo.py`` as ``python tests/demo_interrupt_driver.py EVENT OUT``. The signal
is the process's own SIGINT, sent when the demo reaches EVENT (never on a timer), so the
interrupt always lands at the same point however loaded the machine is. ``start-up`` fires while
the command line is built (it imports every stage). Stages other than ``rig up`` and ``rig down``
are replaced by no-ops: what is tested is how the demo ends, not what a stage makes.
"""

from __future__ import annotations

import os
import signal
import sys

import hzsr.cli
from hzsr import demo

event, out = sys.argv[1], sys.argv[2]
real_rig = os.environ.get("DRIVER_REAL_RIG") == "1"


def interrupt(name: str) -> None:
    print(f"driver: SIGINT at {name}", flush=True)
    os.kill(os.getpid(), signal.SIGINT)


if event == "start-up":
    build = hzsr.cli.build_parser

    def build_then_interrupt(*args, **kwargs):
        parser = build(*args, **kwargs)
        interrupt("start-up")
        return parser

    hzsr.cli.build_parser = build_then_interrupt

step = demo.Demo._step


def step_with_event(self, name, fn):
    if name == event or (event == "rig down twice" and name in ("capture", "rig down")):
        interrupt(name)
    return step(self, name, fn)


demo.Demo._step = step_with_event
for stage in ("doctor", "capture", "check", "pack", "train", "evaluate", "infer", "report"):
    setattr(demo.Demo, stage, lambda self: None)
if real_rig:
    rig_up = demo.Demo.rig_up

    def rig_up_and_say_pids(self):
        import yaml

        rig_up(self)
        v = yaml.safe_load(self.rig_yaml.read_text())["virtual"]
        print(f"driver: rig pids {v['pid']} {v['adb_server_pid']}", flush=True)

    demo.Demo.rig_up = rig_up_and_say_pids
else:
    demo.Demo.rig_up = lambda self: None
sys.exit(demo.main(["--out", out, "--captures", "2"]))
