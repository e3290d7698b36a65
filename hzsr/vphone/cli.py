"""``hzsr rig up --virtual``: start an adb server and virtual phones, and write ``rig.yaml``.

The verb belongs to the ``rig`` stage (``hzsr.capture.cli`` builds it; ``hzsr.cli`` hands it
``add_rig_up_parser``), but it starts virtual phones, so it lives with them: the host's code never
imports ``vphone``, and reaches the phones only through ``rig.yaml`` and adb, as it reaches real
ones. The heavy imports (the world, the phones) wait until the verb runs, so ``hzsr --help`` stays
quick.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hzsr.capture.rigfile import DEFAULT_DIR, load_rig, rig_owner
from hzsr.core.errors import EXIT_OK, ConfigError, RigError


def add_rig_up_parser(verbs: argparse._SubParsersAction, size_type: Callable[[str], tuple[int, int]]) -> None:
    """Add ``up`` to the ``rig`` stage's verbs."""
    up = verbs.add_parser("up", help="start an adb server and virtual phones; write rig.yaml")
    up.add_argument("--virtual", action="store_true", help="virtual phones (the only kind rig up starts)")
    up.add_argument("--phones", type=int, default=2, help="number of virtual phones: main, reference, then spares")
    from hzsr.sim.profiles import PROFILES

    # The choices are listed, not argparse-checked: an unknown one is get_profile's one-line error.
    up.add_argument("--profile", default="vphone-5x", metavar="{" + ",".join(PROFILES) + "}",
                    help="phone profile (hzsr.sim.profiles): " + "; ".join(
                        f"{p.name}: {p.readout_ns / 1e6:g} ms readout, {p.timestamp_source} timestamps"
                        for p in PROFILES.values()) + " (default: %(default)s)")
    up.add_argument("--faults", default="", help="injected faults, name[=value][@main|@reference], comma-separated, "
                    "e.g. drop_after_bytes=200000@reference,stall@main (default: none)")
    up.add_argument("--out", default=DEFAULT_DIR, help="rig folder to create: rig.yaml, phone storage, truth, log")
    up.add_argument("--size", type=size_type, default=(640, 480), metavar="WxH",
                    help="every camera's image size (default: 640x480)")
    up.add_argument("--seed", type=int, default=0, help="seed of the world, clocks and faults")
    up.add_argument("--link", default="loopback",
                    help="link profile of both phones (loopback, usb2, usb2-hub, usb3), or per phone: "
                         "main=usb2-hub,reference=usb3 (default: %(default)s)")
    up.add_argument("--scene", default="", help="show only this scene kind, e.g. sync-board "
                    "(default: cycle through every kind)")
    up.add_argument("--adb-port", type=int, default=None, help="the private adb server's port "
                    "(default: a free port; never 5037)")
    up.add_argument("--background", action="store_true", help="detach; return once the rig is up")
    up.add_argument("--json", action="store_true", help="print the rig (rig.yaml, pid, port, phones) as JSON")
    up.set_defaults(func=cmd_rig_up)


def cmd_rig_up(args: argparse.Namespace) -> int:
    """Run the virtual rig in this process until SIGTERM/SIGINT (``--background``: in a child)."""
    if not args.virtual:
        raise ConfigError("only virtual rigs are started by rig up; real phones need only rig.yaml "
                          "(docs/crew-guide.md)", field="--virtual")
    from hzsr.sim.scene import SCENE_KINDS
    from hzsr.sim.timing import parse_link_spec

    parse_link_spec(args.link)
    if args.scene and args.scene not in (*SCENE_KINDS, "sync-board"):
        raise ConfigError(f"unknown scene kind {args.scene!r}; known: {', '.join(SCENE_KINDS)}, sync-board",
                          field="--scene")
    workdir = Path(args.out).resolve()
    rig_yaml = workdir / "rig.yaml"
    if args.adb_port is not None and not (1024 <= args.adb_port <= 65535 and args.adb_port != 5037):
        raise ConfigError("must be a free TCP port in 1024..65535 other than 5037", field="--adb-port")
    if args.seed < 0:
        raise ConfigError("must be >= 0", field="--seed")
    if rig_yaml.is_file():
        try:
            _, proof = rig_owner(rig_yaml)
        except ConfigError:
            proof = None  # an unreadable rig.yaml is replaced; it proves nothing is running
        if proof is not None and proof.matches():
            raise RigError(f"a rig is already running (pid {proof.pid}); run hzsr rig down first", file=rig_yaml)
        rig_yaml.unlink()
    if args.background:
        return _up_background(args, workdir, rig_yaml)

    from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig

    cfg = VirtualRigConfig(phones=args.phones, profile=args.profile, seed=args.seed, size=tuple(args.size),
                           faults=args.faults, adb_port=args.adb_port, link=args.link, scene=args.scene)
    rig = VirtualRig(workdir, cfg)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rig.start()
    try:
        assert rig.adb is not None
        _say_up(args, rig_yaml, os.getpid(), rig.adb.port, [(p.address, p.role) for p in rig.phones])
        print(f"virtual rig up. Use it with:\n  {rig.adb.adb} -P {rig.adb.port} devices\n"
              f"  export ANDROID_ADB_SERVER_PORT={rig.adb.port}\n  hzsr rig down --rig {rig_yaml}",
              file=sys.stderr, flush=True)
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        rig.stop()
        rig_yaml.unlink(missing_ok=True)
    return EXIT_OK


def _say_up(args: argparse.Namespace, rig_yaml: Path, pid: int, port: int, phones: list[tuple[str, str]]) -> None:
    if args.json:
        print(json.dumps({"rig_yaml": str(rig_yaml), "pid": pid, "adb_port": port,
                          "phones": [{"serial": s, "role": r} for s, r in phones]}), flush=True)
    else:
        print(f"virtual rig up: {len(phones)} phones ({', '.join(f'{r} {s}' for s, r in phones)}), adb server on "
              f"port {port}, rig pid {pid}; stop it with: hzsr rig down --rig {rig_yaml}", flush=True)
        print(f"wrote {rig_yaml}", flush=True)


def _up_background(args: argparse.Namespace, workdir: Path, rig_yaml: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "hzsr.cli", "rig", "up", "--virtual", "--json", "--phones", str(args.phones),
            "--profile", args.profile, "--faults", args.faults, "--out", str(workdir),
            "--size", f"{args.size[0]}x{args.size[1]}", "--seed", str(args.seed), "--link", args.link,
            "--scene", args.scene]
    if args.adb_port:
        argv += ["--adb-port", str(args.adb_port)]
    log = open(workdir / "rig.log", "ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    while time.time() - t0 < 60:
        if proc.poll() is not None:
            tail = (workdir / "rig.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise RigError(f"rig exited with {proc.returncode}: {' '.join(tail)}", file=workdir / "rig.log")
        if rig_yaml.exists():
            rig = load_rig(rig_yaml)
            if rig.virtual is not None and rig.virtual.pid == proc.pid:
                _say_up(args, rig_yaml, proc.pid, rig.adb.port, [(p.serial, p.role) for p in rig.phones])
                if not args.json:
                    print(f"wrote {workdir / 'rig.log'}")
                return EXIT_OK
        time.sleep(0.1)
    proc.terminate()
    raise RigError("rig did not come up within 60 s", file=workdir / "rig.log")
