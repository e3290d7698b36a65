"""``hzsr rig up|down``: start and stop the virtual rig (adb server + virtual phones)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from hzsr.core.errors import ConfigError, RigError

DEFAULT_DIR = ".hzsr-rig"


def add_rig_parser(stages, size_type) -> None:
    rig = stages.add_parser("rig", help="the rig: start/stop the virtual rig")
    verbs = rig.add_subparsers(dest="verb", required=True, metavar="VERB")
    up = verbs.add_parser("up", help="start an adb server and virtual phones; write rig.yaml")
    up.add_argument("--virtual", action="store_true", help="virtual phones (the only kind rig up starts)")
    up.add_argument("--phones", type=int, default=2)
    up.add_argument("--profile", default="vphone-5x")
    up.add_argument("--faults", default="", help="e.g. drop_after_bytes=200000@reference,stall@main")
    up.add_argument("--dir", default=DEFAULT_DIR, help="rig folder: rig.yaml, phone storage, truth, log")
    up.add_argument("--size", type=size_type, default=(640, 480))
    up.add_argument("--seed", type=int, default=0)
    up.add_argument("--adb-port", type=int, default=None)
    up.add_argument("--background", action="store_true", help="detach; return once the rig is up")
    up.set_defaults(func=cmd_rig_up)
    down = verbs.add_parser("down", help="stop what rig up started, by PID")
    down.add_argument("--rig", default=f"{DEFAULT_DIR}/rig.yaml")
    down.set_defaults(func=cmd_rig_down)


def _alive(pid: int | None) -> bool:
    from hzsr.capture.adb_server import _alive as alive

    return bool(pid) and alive(pid)


def _read_rig(path: Path) -> dict:
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("file not found (is a rig up?)", file=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=path) from None
    if not isinstance(doc, dict):
        raise ConfigError("expected a mapping", file=path)
    return doc


def cmd_rig_up(args: argparse.Namespace) -> int:
    if not args.virtual:
        raise ConfigError("only virtual rigs are started by rig up; real phones need only rig.yaml "
                          "(docs/crew-guide.md)", field="--virtual")
    workdir = Path(args.dir).resolve()
    rig_yaml = workdir / "rig.yaml"
    if rig_yaml.exists():
        old = _read_rig(rig_yaml).get("virtual", {}) or {}
        if _alive(old.get("pid")):
            raise RigError(f"a rig is already running (pid {old['pid']}); run hzsr rig down first", file=rig_yaml)
        rig_yaml.unlink()
    if args.background:
        return _up_background(args, workdir, rig_yaml)

    from hzsr.capture.virtual.virtual_rig import VirtualRig, VirtualRigConfig

    cfg = VirtualRigConfig(phones=args.phones, profile=args.profile, seed=args.seed, size=tuple(args.size),
                           faults=args.faults, adb_port=args.adb_port)
    rig = VirtualRig(workdir, cfg)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rig.start()
    try:
        assert rig.adb is not None
        print(json.dumps({"rig_yaml": str(rig_yaml), "pid": os.getpid(), "adb_port": rig.adb.port,
                          "phones": [{"serial": p.address, "role": p.role} for p in rig.phones]}), flush=True)
        print(f"virtual rig up. Use it with:\n  {rig.adb.adb} -P {rig.adb.port} devices\n"
              f"  export ANDROID_ADB_SERVER_PORT={rig.adb.port}\n  hzsr rig down --rig {rig_yaml}",
              file=sys.stderr, flush=True)
        while not stop["now"]:
            time.sleep(0.2)
    finally:
        rig.stop()
        rig_yaml.unlink(missing_ok=True)
    return 0


def _up_background(args: argparse.Namespace, workdir: Path, rig_yaml: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "hzsr.cli", "rig", "up", "--virtual", "--phones", str(args.phones),
            "--profile", args.profile, "--faults", args.faults, "--dir", str(workdir),
            "--size", f"{args.size[0]}x{args.size[1]}", "--seed", str(args.seed)]
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
            doc = _read_rig(rig_yaml)
            if (doc.get("virtual") or {}).get("pid") == proc.pid:
                print(json.dumps({"rig_yaml": str(rig_yaml), "pid": proc.pid, "adb_port": doc["adb"]["port"],
                                  "phones": doc["phones"]}))
                return 0
        time.sleep(0.1)
    proc.terminate()
    raise RigError("rig did not come up within 60 s", file=workdir / "rig.log")


def cmd_rig_down(args: argparse.Namespace) -> int:
    from hzsr.capture.adb_server import AdbServer, bundled_adb

    path = Path(args.rig)
    doc = _read_rig(path)
    v = doc.get("virtual") or {}
    pid, adb_pid = v.get("pid"), v.get("adb_server_pid")
    stopped = []
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _alive(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        stopped.append(pid)
    port = (doc.get("adb") or {}).get("port")
    if port and _alive(adb_pid):
        AdbServer(int(port), bundled_adb()).stop()
        stopped.append(adb_pid)
    path.unlink(missing_ok=True)
    print(json.dumps({"stopped_pids": stopped, "rig_yaml": str(path)}))
    return 0
