"""Benchmark: host time to pull one full-resolution capture from two phones, vs the adb binary (issue 19).

A virtual rig (real adb server, virtual phones) holds one full-resolution capture: main_W and
main_T on the main phone, ref_T on the reference. Each round pulls it three ways, interleaved
(the order rotates every round), into fresh folders (the previous round's deleted before the
clock starts: deleting fsync'd files costs more than deleting files never written back, which
charged hzsr for the adb binary's laziness):

- ``adb``: the baseline: two ``adb -s SERIAL pull FILES... DIR`` processes at once, one per phone
  (the platform-tools binary from the adbutils wheel; no verification at all);
- ``hzsr``: ``capture.transfer.pull_verified_many`` on both phones at once (two threads), as
  ``hzsr capture`` does: one sync connection per phone, streaming sha256 on the host, fsync,
  rename only after size and hash equal the phone agent's (the phone's ``sha256sum`` is asked
  only for a file that disagrees: never here);
- ``adbutils``: adbutils' ``sync.pull`` of each file plus one ``sha256sum`` call per phone, in two
  threads: hzsr's former path's shape (a connection per file, a 10 ms sleep closing each).

The phones run in a separate process (as real phones do), so the bench process holds only the
host side. Reports medians over ``--rounds`` (default 7) of each way's wall time and host CPU time
(this process, plus the adb binaries as waited-for children; the adb server's is left out for
all), the phones' process's CPU per round (mean: the kernel counts it in 10 ms ticks; on the
virtual rig the phones' work runs on the host's cores, a real phone's on its own), the ratios
hzsr/adb and adbutils/adb per round (median), and the 1-minute load average.
Goal (issue 19): ``ratio_hzsr_over_adb`` <= 1.2.

``--diagnose`` adds ``hzsr_no_fsync``, hzsr's pull with ``os.fsync`` made a no-op (crash safety
off: never how hzsr runs; not a goal), to show what durability costs.

Usage: ``python bench/capture_pull.py [--rounds 7] [--link loopback] [--diagnose]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hzsr.capture.adb_server import adb_env
from hzsr.capture.transfer import FileToPull, pull_verified_many
from hzsr.sim.profiles import FULL_RES, VPHONE_5X
from hzsr.sim.rig import RigGeometry, render_frame
from hzsr.sim.scene import make_scene
from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig

FILES = {"main": ("main_W", "main_T"), "reference": ("ref_T",)}


def _serve(workdir: Path, link: str) -> None:
    """The phones' side, in a process of its own (as real phones are): start the rig, store the
    capture on the phones, print the adb port and serials, serve until stdin closes."""
    import sys

    rng = np.random.default_rng(0)
    geo = RigGeometry.random(VPHONE_5X, FULL_RES, rng)
    scene = make_scene("architecture", 0, rng, VPHONE_5X.camera("T").fx_native())
    jpgs = {slot: render_frame(geo, scene, slot, 0.0, 0.05, rng)[0] for slot in ("main_W", "main_T", "ref_T")}
    with VirtualRig(workdir, VirtualRigConfig(link=link)) as rig:
        for p in rig.phones:
            for slot in FILES[p.role]:
                p.storage.write_atomic(f"/sdcard/bench/{slot}.jpg", jpgs[slot])
        print(json.dumps({"port": rig.adb.port, "adb": rig.adb.adb, "serials": {p.role: p.address for p in rig.phones},
                          "files": {s: (workdir / "files" / f"{s}.jpg").as_posix() for s in jpgs}}), flush=True)
        (workdir / "files").mkdir(parents=True, exist_ok=True)
        for s, b in jpgs.items():
            (workdir / "files" / f"{s}.jpg").write_bytes(b)
        print("ready", flush=True)
        sys.stdin.read()


def main() -> dict:
    import sys

    import adbutils

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median)")
    ap.add_argument("--link", default="loopback", help="virtual link profile (hzsr.sim.timing)")
    ap.add_argument("--diagnose", action="store_true",
                    help="also time hzsr without fsync (see the docstring)")
    ap.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        _serve(Path(args.serve), args.link)
        return {}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        phones = subprocess.Popen([sys.executable, __file__, "--serve", str(Path(tmp) / "rig"), "--link", args.link],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            info = json.loads(phones.stdout.readline())
            if phones.stdout.readline().strip() != "ready":
                raise SystemExit("the virtual rig did not start")
            return _bench(args, info, Path(tmp), load0, adbutils, phones.pid)
        finally:
            phones.stdin.close()
            phones.wait(timeout=60)


def _cpu_of(pid: int) -> float:
    """A process's CPU seconds so far (user + system, from ``/proc``; 10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bench(args: argparse.Namespace, info: dict, tmp: Path, load0: float, adbutils, phones_pid: int) -> dict:
    jpgs = {s: Path(p).read_bytes() for s, p in info["files"].items()}
    sums = {slot: hashlib.sha256(b).hexdigest() for slot, b in jpgs.items()}
    client = adbutils.AdbClient(host="127.0.0.1", port=info["port"])
    devs = {role: client.device(serial) for role, serial in info["serials"].items()}
    serials = info["serials"]
    env = {**os.environ, "ANDROID_ADB_SERVER_PORT": str(info["port"]), **adb_env()}
    work = tmp / "out"

    def fresh(name: str) -> Path:
        d = work / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def way_adb(d: Path) -> None:
        procs = [subprocess.Popen([info["adb"], "-P", str(info["port"]), "-s", serials[role], "pull",
                                   *[f"/sdcard/bench/{s}.jpg" for s in slots], str(d)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for role, slots in FILES.items()]
        for pr in procs:
            _, err = pr.communicate()
            if pr.returncode:
                raise SystemExit(f"adb pull failed: {err.decode().strip()}")

    def way_hzsr(d: Path) -> None:

        def one(role: str) -> None:
            items = [FileToPull(f"/sdcard/bench/{s}.jpg", d / f"{s}.jpg", sums[s], len(jpgs[s]))
                     for s in FILES[role]]
            res = pull_verified_many(devs[role], items)
            if res.failed:
                raise SystemExit(f"hzsr pull failed: {res.failed}")

        with ThreadPoolExecutor(2) as ex:
            list(ex.map(one, FILES))

    def way_hzsr_no_fsync(d: Path) -> None:
        import hzsr.capture.transfer as transfer

        saved = transfer.os.fsync
        transfer.os.fsync = lambda fd: None  # the files' and, through fileio, the folder's
        try:
            way_hzsr(d)
        finally:
            transfer.os.fsync = saved

    def way_adbutils(d: Path) -> None:

        def one(role: str) -> None:
            paths = [f"/sdcard/bench/{s}.jpg" for s in FILES[role]]
            devs[role].shell2("sha256sum " + " ".join(paths), timeout=30)  # as hzsr did before issue 19
            for s, p in zip(FILES[role], paths, strict=True):
                devs[role].sync.pull(p, d / f"{s}.jpg")

        with ThreadPoolExecutor(2) as ex:
            list(ex.map(one, FILES))

    ways = {"adb": way_adb, "hzsr": way_hzsr, "adbutils": way_adbutils}
    if args.diagnose:
        ways["hzsr_no_fsync"] = way_hzsr_no_fsync
    for k, fn in ways.items():  # warm-up: page cache, adb server connections
        fn(fresh(k))
    times: dict[str, list[float]] = {k: [] for k in ways}
    cpu: dict[str, list[float]] = {k: [] for k in ways}
    phone_cpu: dict[str, list[float]] = {k: [] for k in ways}
    names = list(ways)

    def cpu_now() -> float:  # this process (hzsr, adbutils) plus waited-for children (the adb binaries)
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    for r in range(args.rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            d = fresh(k)  # the previous round's files are deleted before the clock starts: not part of a pull
            p0, c0, t0 = _cpu_of(phones_pid), cpu_now(), time.perf_counter()
            ways[k](d)
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(cpu_now() - c0)
            phone_cpu[k].append(_cpu_of(phones_pid) - p0)
    for s in ("main_W", "main_T", "ref_T"):  # every way got the same bytes
        for k in ways:
            assert (work / k / f"{s}.jpg").read_bytes() == jpgs[s], (k, s)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = {k: statistics.median(t / a for t, a in zip(times[k], times["adb"], strict=True))
             for k in ways if k != "adb"}
    return {
        "benchmark": "capture_pull", "link": args.link, "phones": "virtual rig in a separate process",
        "rounds": args.rounds, "cpus": os.cpu_count(),
        "load_avg_1m_before": load0, "load_avg_1m_after": os.getloadavg()[0],
        "capture_mb": round(sum(len(b) for b in jpgs.values()) / 1e6, 2),
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "rounds_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "host_cpu_s_median": {k: round(statistics.median(v), 4) for k, v in cpu.items()},
        "phones_cpu_s_mean": {k: round(statistics.mean(v), 4) for k, v in phone_cpu.items()},
        "ratio_hzsr_over_adb": round(ratio["hzsr"], 3),
        "ratio_adbutils_over_adb": round(ratio["adbutils"], 3),
        **{f"ratio_{k}_over_adb": round(v, 3) for k, v in ratio.items() if k.startswith("hzsr_")},
        "goal_hzsr_le_1.2x_adb": ratio["hzsr"] <= 1.2,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
