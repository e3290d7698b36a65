"""One virtual phone: the ADB device side and its shell, served from a background event loop."""

from __future__ import annotations

import asyncio
import threading

from hzsr.capture.virtual.adb_device import DeviceIdentity, serve_device
from hzsr.capture.virtual.profiles import PhoneProfile
from hzsr.capture.virtual.shell import VirtualShell


def phone_props(profile: PhoneProfile, serial: str) -> dict[str, str]:
    """System properties of a phone of ``profile``; two phones differ only in the serial."""
    return {
        "ro.product.name": profile.product,
        "ro.product.model": profile.model,
        "ro.product.device": profile.device,
        "ro.product.manufacturer": profile.manufacturer,
        "ro.build.fingerprint": profile.build_fingerprint,
        "ro.serialno": serial,
    }


class VirtualPhone:
    """Serves the ADB device protocol on 127.0.0.1 (``port`` 0 = a free one) until ``stop``."""

    def __init__(self, profile: PhoneProfile, serial: str, port: int = 0):
        self.serial = serial
        self.props = phone_props(profile, serial)
        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(
            serve_device(DeviceIdentity(serial, self.props), VirtualShell(self.props).run, port=port))
        self.port: int = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"vphone-{serial}", daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        """What ``adb connect`` takes, and the serial adb then lists the phone under."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Close the listener and every live connection, as a phone unplugged would."""

        async def _close() -> None:
            self.server.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(_close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
