"""``make demo``: the main job, end to end, on what exists so far.

Today: render a simulated session (renderer path), validate it and check its timing; then bring
up the virtual rig (real adb server, two virtual phones), trigger both phones' capture agents at
one instant, pull and verify the files, and take the rig down. Later stages (issue 4's capture
command, qa, dataset, model) replace and extend these steps as they land.
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
    print("\n$ (virtual rig) adb devices, agent hello, a synchronized capture on both phones", flush=True)
    print(json.dumps(rig_tour(out / "rig"), indent=2))
    print(f"\ndemo finished in {time.time() - t0:.1f} s")
    print(json.dumps({
        "session": str(session),
        "frames": str(session / "captures"),
        "sync_report": str(session / "sync"),
        "ground_truth": str(out / "session.truth"),
    }, indent=2))
    return 0


def rig_tour(workdir: Path) -> dict:
    """Drive the virtual rig through the real adb server, as the capture stage will."""
    import hashlib

    from adbutils import Network

    from hzsr.capture.virtual.storage import AGENT_FILES
    from hzsr.capture.virtual.virtual_rig import VirtualRig

    with VirtualRig(workdir) as rig:
        assert rig.adb is not None
        client = rig.adb.client()
        report: dict = {"adb": rig.adb.adb, "adb_port": rig.adb.port,
                        "devices": [{"serial": d.serial, "state": d.state,
                                     "model": client.device(d.serial).prop.model} for d in client.list()]}
        conns = {}
        for p in rig.phones:
            sock = client.device(p.address).create_connection(Network.LOCAL_ABSTRACT, "hzsr_agent")
            conns[p.role] = (sock, sock.makefile("rwb"))

        def ask(role: str, **req) -> dict:
            _, f = conns[role]
            f.write((json.dumps(req) + "\n").encode())
            f.flush()
            return json.loads(f.readline())

        report["hello"] = {r: {k: ask(r, cmd="hello")[k] for k in ("model", "sync_type", "agent_version")}
                           for r in conns}
        # Best-of-50 SNTP per phone, then one host instant 300 ms ahead in each phone's clock.
        offsets = {}
        for r in conns:
            best = None
            for _ in range(50):
                t0 = time.monotonic_ns()
                rep = ask(r, cmd="time")
                t3 = time.monotonic_ns()
                rtt = (t3 - t0) - (rep["t2_ns"] - rep["t1_ns"])
                off = ((rep["t1_ns"] - t0) + (rep["t2_ns"] - t3)) // 2
                if best is None or rtt < best[1]:
                    best = (off, rtt)
            offsets[r] = best
        target_host = time.monotonic_ns() + 300_000_000
        acks = {r: ask(r, cmd="capture", session="demo", capture_id="c00000", phase_align=True,
                       target_ns=target_host + offsets[r][0]) for r in conns}
        stamps_host = {r: acks[r]["frame_timestamp_ns"] - offsets[r][0] for r in conns}
        verified = []
        for r, p in ((p.role, p) for p in rig.phones):
            dev = client.device(p.address)
            folder = f"{AGENT_FILES}/demo/c00000"
            t_end = time.time() + 10
            while not dev.sync.stat(f"{folder}/done").size and time.time() < t_end:
                time.sleep(0.05)
            for name in ("W.jpg", "T.jpg"):
                data = dev.sync.read_bytes(f"{folder}/{name}")
                phone_sha = dev.shell(f"sha256sum {folder}/{name}").split()[0]
                verified.append({"phone": r, "file": name, "bytes": len(data),
                                 "sha256_matches_phone": hashlib.sha256(data).hexdigest() == phone_sha})
        for sock, f in conns.values():
            f.close()
            sock.close()
        report["clock_sync"] = {r: {"offset_ns": o, "error_bound_us": rtt / 2e3} for r, (o, rtt) in offsets.items()}
        report["trigger_skew_us"] = (stamps_host["reference"] - stamps_host["main"]) / 1e3
        report["pulled"] = verified
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="demo_out", type=Path)
    p.add_argument("--captures", type=int, default=10)
    a = p.parse_args()
    return run(a.out, a.captures)


if __name__ == "__main__":
    sys.exit(main())
