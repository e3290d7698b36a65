"""One virtual phone: ADB device side, shell, storage and capture agent, on a background loop.

Faults are set through thread-safe methods here, so tests and ``hzsr rig up --faults`` drive the
same code path.
"""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hzsr.core.agent_protocol import AGENT_SOCKET, AGENT_TCP_PORT
from hzsr.sim.profiles import PhoneProfile
from hzsr.sim.timing import LINK_PROFILES, LinkProfile, PhoneClock
from hzsr.sim.world import VirtualWorld
from hzsr.vphone.adb_device import DeviceBackend, DeviceIdentity, TransferFaults, serve_device
from hzsr.vphone.agent import CaptureAgent
from hzsr.vphone.shell import DeviceState, VirtualShell
from hzsr.vphone.storage import PhoneStorage


def phone_props(profile: PhoneProfile, serial: str) -> dict[str, str]:
    """System properties of a phone of ``profile``; two phones differ only in the serial.

    These are the ones host scripts read: build (fingerprint, release, SDK level, type), ABI,
    boot completion, serial, manufacturer, model, device.
    """
    # fingerprint = brand/product/device:release/id/incremental:type/tags
    head, release_part, tail = profile.build_fingerprint.split(":")
    release, build_id, incremental = release_part.split("/")
    build_type, tags = tail.split("/")
    sdk = {"13": "33", "14": "34", "15": "35", "16": "36"}.get(release, "35")
    return {
        "ro.product.name": profile.product,
        "ro.product.model": profile.model,
        "ro.product.device": profile.device,
        "ro.product.brand": head.split("/")[0],
        "ro.product.manufacturer": profile.manufacturer,
        "ro.product.board": profile.device,
        "ro.product.cpu.abi": "arm64-v8a",
        "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
        "ro.product.cpu.abilist64": "arm64-v8a",
        "ro.product.cpu.abilist32": "armeabi-v7a,armeabi",
        "ro.build.fingerprint": profile.build_fingerprint,
        "ro.build.version.release": release,
        "ro.build.version.release_or_codename": release,
        "ro.build.version.sdk": sdk,
        "ro.build.version.security_patch": "2025-01-05",
        "ro.build.id": build_id,
        "ro.build.version.incremental": incremental,
        "ro.build.type": build_type,
        "ro.build.tags": tags,
        "ro.debuggable": "0",
        "ro.secure": "1",
        "ro.hardware": profile.device,
        "ro.boot.serialno": serial,
        "ro.serialno": serial,
        "sys.boot_completed": "1",
        "dev.bootcomplete": "1",
        "init.svc.adbd": "running",
        "service.adb.root": "0",
        "persist.sys.timezone": "UTC",
        "ro.adb.secure": "1",
    }


class VirtualPhone:
    """Serves the ADB device protocol on 127.0.0.1 (``port`` 0 = a free one) until ``stop``.

    Args:
        role: where the phone sits on the rig ("main" or "reference"); it decides what it sees.
        storage_dir: host folder behind the phone's storage.
        world: the shared scene; without one the phone has no camera agent.
    """

    def __init__(self, profile: PhoneProfile, serial: str, *, role: str = "main",
                 storage_dir: str | Path | None = None, world: VirtualWorld | None = None,
                 link: LinkProfile | None = None, seed: int = 0, port: int = 0,
                 timestamp_source: str | None = None):
        import tempfile

        self.profile, self.serial, self.role = profile, serial, role
        self.props = phone_props(profile, serial)
        self._tmp = None
        if storage_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"vphone-{serial}-")
            storage_dir = self._tmp.name
        self.storage = PhoneStorage(Path(storage_dir), build_prop="".join(
            f"{k}={v}\n" for k, v in sorted(self.props.items()) if k.startswith("ro.")))
        self.state = DeviceState()
        self.shell = VirtualShell(self.props, self.storage, self.state)
        self.transfer_faults = TransferFaults()
        rng = np.random.default_rng([seed, zlib.crc32(serial.encode())])
        # Wander: ~0.05 ppm/sqrt(s) is a phone warming under load (tenths of a ppm over minutes).
        self.clock = PhoneClock(int(rng.uniform(1e11, 9e11)), float(rng.normal(0, 8.0)), time.monotonic_ns(),
                                wander_ppm_per_sqrt_s=0.05, wander_seed=int(rng.integers(2**31)))
        self.loop = asyncio.new_event_loop()
        self.agent: CaptureAgent | None = None
        backend = DeviceBackend(DeviceIdentity(serial, self.props), self.shell, self.storage,
                                faults=self.transfer_faults)
        if world is not None:
            self.agent = CaptureAgent(serial, role, profile, world, self.storage, self.clock,
                                      link or LINK_PROFILES["loopback"], int(rng.integers(2**31)), timestamp_source)
            backend.sockets[f"localabstract:{AGENT_SOCKET}"] = self.agent.handle
            backend.sockets[f"tcp:{AGENT_TCP_PORT}"] = self.agent.handle
        self.backend = backend
        self._write_clock_truth()
        self.server = self.loop.run_until_complete(serve_device(backend, port=port))
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"vphone-{serial}", daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        """What ``adb connect`` takes, and the serial adb then lists the phone under."""
        return f"127.0.0.1:{self.port}"

    def device_port(self, port: int) -> int | None:
        """The host port where an app on this phone reaches its ``localhost:port`` (adb reverse)."""
        return self.call(lambda: self.backend.reverse.host_port(port))

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the phone's event loop and return its result (thread-safe)."""

        async def _run():
            return fn()

        return asyncio.run_coroutine_threadsafe(_run(), self.loop).result(10)

    # -- faults ------------------------------------------------------------------------
    def drop_after_bytes(self, n: int) -> None:
        """Unplug: cut the USB connection once the next pull has sent ``n`` bytes."""
        self.call(lambda: setattr(self.transfer_faults, "drop_after_bytes", n))

    def flip_byte_next_pull(self) -> None:
        self.call(lambda: setattr(self.transfer_faults, "flip_byte_next_pull", True))

    def set_storage_full(self, full: bool = True) -> None:
        self.call(lambda: setattr(self.storage, "full", full))

    def stall_agent(self, stalled: bool = True) -> None:
        self.call(lambda: self._need_agent().set_stall(stalled))

    def fail_next_capture(self) -> None:
        self.call(lambda: setattr(self._need_agent().faults, "fail_next_capture", True))

    def bias_link(self, bias_us: float) -> None:
        """Fault: a constant extra delay towards the phone; SNTP reads its clock ``bias_us`` ahead."""
        agent = self._need_agent()
        self.call(lambda: setattr(agent, "link", agent.link.with_bias(bias_us)))
        self._write_clock_truth()

    def jump_clock(self, jump_ms: float) -> None:
        self.call(lambda: self._need_agent().jump_clock(int(jump_ms * 1e6)))
        self._write_clock_truth()

    def jump_clock_after(self, jump_ms: float, captures: int) -> None:
        """Fault: step the clock by ``jump_ms`` once the phone has finished ``captures`` more captures."""
        agent = self._need_agent()
        self.call(lambda: agent.arm_clock_jump(int(jump_ms * 1e6), captures, self._write_clock_truth))

    def _write_clock_truth(self) -> None:
        """The phone clock's true parameters (host CLOCK_MONOTONIC based), for benchmarks only."""
        if self.agent is None:
            return

        doc = {"serial": self.serial, **self.clock.truth(), "link": self.agent.link.name}
        self.agent.world.record_truth(f"{self.serial}.clock", doc, append=False)

    def _need_agent(self) -> CaptureAgent:
        if self.agent is None:
            raise RuntimeError(f"{self.serial}: this phone runs no capture agent")
        return self.agent

    def stop(self) -> None:
        """Close the listener and every live connection, as a phone unplugged would."""

        async def _close() -> None:
            self.server.close()
            for conn in list(getattr(self.server, "hzsr_connections", ())):
                conn.abort()
            await asyncio.sleep(0.05)  # let aborted connections unwind on their own
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()
            await asyncio.sleep(0)

        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(_close(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.thread.is_alive() and not self.loop.is_closed():
            self.loop.close()
        if self.agent is not None:
            self.agent.close()
        if self._tmp is not None:
            self._tmp.cleanup()
