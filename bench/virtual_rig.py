"""Benchmark: the virtual rig through the real adb server (issue 3). Prints JSON; all medians.

- ``time`` round trip to the agent through an ``adb forward``, against a baseline measured in the
  same run: a plain TCP echo round trip on loopback (the floor any forwarded socket sits on);
- adbutils ``shell`` round trip (adbutils sleeps ~10 ms closing each connection);
- pull throughput of a full-resolution JPEG, against a local file copy of the same file;
- pulling one full-res triplet from each of two phones, sequential vs in parallel.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _timing import median_time

from hzsr.sim.profiles import FULL_RES, VPHONE_5X
from hzsr.sim.rig import RigGeometry, render_frame
from hzsr.sim.scene import make_scene
from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig


def _echo_rtt_us(n: int = 300) -> float:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve():
        c, _ = srv.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := c.recv(4096):
            c.sendall(data)
        c.close()

    threading.Thread(target=serve, daemon=True).start()
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        s.sendall(b'{"cmd":"time"}\n')
        s.recv(4096)
        ts.append(time.perf_counter_ns() - t0)
    s.close()
    srv.close()
    return statistics.median(ts) / 1e3


def _agent_rtt_us(port: int, n: int = 300) -> float:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")
    ts = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        s.sendall(b'{"cmd":"time"}\n')
        f.readline()
        ts.append(time.perf_counter_ns() - t0)
    s.close()
    return statistics.median(ts) / 1e3


def main() -> dict:
    rng = np.random.default_rng(0)
    geo = RigGeometry.random(VPHONE_5X, FULL_RES, rng)
    scene = make_scene("architecture", 0, rng, VPHONE_5X.camera("T").fx_native())
    jpgs = {slot: render_frame(geo, scene, slot, 0.0, 0.05, rng)[0] for slot in ("main_W", "main_T", "ref_T")}
    with tempfile.TemporaryDirectory() as tmp, VirtualRig(Path(tmp) / "rig", VirtualRigConfig()) as rig:
        client = rig.adb.client()
        devs = {p.role: client.device(p.address) for p in rig.phones}
        for p in rig.phones:
            for slot, jpg in jpgs.items():
                p.storage.write_atomic(f"/sdcard/bench/{slot}.jpg", jpg)
        port = devs["main"].forward_port("localabstract:hzsr_agent")
        echo = _echo_rtt_us()
        agent = _agent_rtt_us(port)
        shell_ms = statistics.median(
            [(lambda t0: (devs["main"].shell("echo x"), time.perf_counter() - t0)[1])(time.perf_counter())
             for _ in range(30)]) * 1e3
        out = Path(tmp) / "pulled"
        out.mkdir()
        big = jpgs["main_W"]
        pull_s = median_time(lambda: devs["main"].sync.pull("/sdcard/bench/main_W.jpg", out / "w.jpg"))
        local = Path(tmp) / "w_local.jpg"
        local.write_bytes(big)
        copy_s = median_time(lambda: shutil.copyfile(local, out / "copy.jpg"))

        def pull_all(role):
            for slot in jpgs:
                devs[role].sync.pull(f"/sdcard/bench/{slot}.jpg", out / f"{role}_{slot}.jpg")

        seq = median_time(lambda: [pull_all(r) for r in ("main", "reference")])
        with ThreadPoolExecutor(2) as ex:
            par = median_time(lambda: list(ex.map(pull_all, ("main", "reference"))))
    mb = len(big) / 1e6
    return {
        "benchmark": "virtual_rig",
        "adb": "platform-tools 36.0.0 from the adbutils wheel",
        "time_rtt_forward_median_us": round(agent, 1),
        "baseline_loopback_echo_rtt_median_us": round(echo, 1),
        "ratio_time_rtt_to_echo": round(agent / echo, 1),
        "shell_rtt_median_ms": round(shell_ms, 2),
        "ratio_shell_to_time_rtt": round(shell_ms * 1e3 / agent, 1),
        "full_res_jpeg_mb": round(mb, 2),
        "pull_full_res_jpeg_median_s": round(pull_s, 4),
        "pull_throughput_mb_s": round(mb / pull_s, 1),
        "baseline_local_copy_mb_s": round(mb / copy_s, 1),
        "two_phone_triplets_sequential_median_s": round(seq, 3),
        "two_phone_triplets_parallel_median_s": round(par, 3),
        "speedup_parallel_vs_sequential": round(seq / par, 2),
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
