"""Host side of 3A control: AF mode, AE/AWB/AF locks, and matching the reference T to the main T.

Before each capture (agent protocol 2, ``set_3a``):

1. the main phone gets the AF mode on W and T and, with ``lock_3a`` or ``match_exposure``, locks
   AE and AWB (and AF in auto mode): it meters the scene and freezes what it converged on;
2. the reference phone's T then gets either its own locks (``lock_3a``) or, with
   ``match_exposure``, the main T's locked exposure time, ISO and white-balance gains as manual
   settings, so target and reference frames have the same exposure and colour.

Protocol-1 agents have no 3A control: the default config (auto everything) leaves them alone,
and asking for 3A control of one is an error naming the phone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hzsr.core.errors import CaptureError, ConfigError

#: Relative difference above which two T cameras' settings count as different.
MATCH_TOLERANCE = 0.02


@dataclass
class ThreeAConfig:
    """3A options of ``hzsr capture``; every default lives here."""

    af: str = "auto"  # auto | fixed:DIOPTERS | roi:x,y,w,h (AF region in output pixels)
    lock_3a: bool = False  # lock AE, AWB (and AF when auto) on each phone before each capture
    match_exposure: bool = False  # copy main T's exposure, ISO and WB gains to the reference T

    @property
    def active(self) -> bool:
        return self.af != "auto" or self.lock_3a or self.match_exposure


def parse_af(spec: str) -> dict[str, Any]:
    """``--af`` as ``set_3a`` fields; a bad spec is a ConfigError naming ``--af``."""
    if spec == "auto":
        return {"af_mode": "auto", "af_region": None}
    kind, _, val = spec.partition(":")
    try:
        if kind == "fixed":
            d = float(val)
            if not 0 <= d <= 20:
                raise ValueError
            return {"af_mode": "fixed", "focus_diopters": d}
        if kind == "roi":
            roi = [int(v) for v in val.split(",")]
            if len(roi) != 4 or min(roi) < 0 or roi[2] == 0 or roi[3] == 0:
                raise ValueError
            return {"af_mode": "auto", "af_region": roi}
    except ValueError:
        pass
    raise ConfigError(f"expected auto, fixed:DIOPTERS (0..20) or roi:x,y,w,h, got {spec!r}", field="--af")


def agent_version(link: Any, role: str, cache: dict[str, int]) -> int:
    if role not in cache:
        cache[role] = int(link.retry(f"{role} hello", lambda: link.agent(role).request("hello"))["protocol_version"])
    return cache[role]


def apply_3a(link: Any, cfg: ThreeAConfig, versions: dict[str, int]) -> dict[str, Any]:
    """Set AF, locks and matching on both phones; returns what was set (for the journal), or {}."""
    if not cfg.active:
        return {}
    for role in ("main", "reference"):
        if agent_version(link, role, versions) < 2:
            raise CaptureError(f"the {role} phone's agent speaks protocol {versions[role]}; --af, --lock-3a and "
                               "--match-exposure need protocol 2 (docs/agent-protocol.md)", field=role)
    af = parse_af(cfg.af)
    lock = cfg.lock_3a or cfg.match_exposure
    af_lock = {"af_lock": lock} if af["af_mode"] == "auto" else {}

    def set3a(role: str, **fields: Any) -> dict:
        return link.retry(f"{role} set_3a", lambda: link.agent(role).request("set_3a", **fields))["cameras"]

    main = set3a("main", cameras=["W", "T"], **af, **af_lock, ae_lock=lock, awb_lock=lock)
    t = main["T"]
    if cfg.match_exposure:
        ref = set3a("reference", cameras=["T"], **af, **af_lock, exposure_time_ns=t["exposure_time_ns"],
                    iso=t["iso"], wb_gains=t["wb_gains"])
    else:
        ref = set3a("reference", cameras=["T"], **af, **af_lock, ae_lock=lock, awb_lock=lock)
    return {"main": main, "reference": ref}


def compare_t(main: dict, ref: dict) -> tuple[str, str]:
    """Doctor's verdict on the two T cameras' ``get_3a`` states: ("pass" | "warn", detail)."""

    def desc(s: dict) -> str:
        g = s["wb_gains"]
        return (f"{s['exposure_time_ns'] / 1e6:.2f} ms ISO {s['iso']} gains R {g[0]:.3f} B {g[3]:.3f} "
                f"(AE {s['ae_state']}, AWB {s['awb_state']})")

    e_main = main["exposure_time_ns"] * main["iso"]
    e_ref = ref["exposure_time_ns"] * ref["iso"]
    differs = abs(e_main - e_ref) > MATCH_TOLERANCE * max(e_main, e_ref) or any(
        abs(a - b) > MATCH_TOLERANCE * max(a, b) for a, b in zip(main["wb_gains"], ref["wb_gains"], strict=True))
    if differs:
        return "warn", (f"main T {desc(main)} vs reference T {desc(ref)}: target and reference will differ in "
                        "brightness or colour; capture with --lock-3a --match-exposure")
    return "pass", f"main T and reference T agree: {desc(main)}"


def check_t_settings(link: Any, hellos: dict[str, dict | None]) -> list[tuple[str, str, str, str]]:
    """Doctor rows (check, phone, status, detail) comparing the two phones' T 3A settings."""
    if not hellos.get("main") or not hellos.get("reference"):
        return []
    old = [r for r in ("main", "reference") if hellos[r].get("protocol_version", 1) < 2]
    if old:
        return [("T settings", "all", "warn", f"{', '.join(old)} agent speaks protocol 1: 3A state unknown, "
                 "exposure and white balance cannot be locked or matched")]
    try:
        states = {r: link.agent(r).request("get_3a")["cameras"]["T"] for r in ("main", "reference")}
    except Exception as exc:  # noqa: BLE001 - any failure is reported as a row, never a crash
        return [("T settings", "all", "warn", f"get_3a failed: {exc}")]
    status, detail = compare_t(states["main"], states["reference"])
    return [("T settings", "all", status, detail)]


def overlap_brightness_difference(a_path: str | Path, b_path: str | Path) -> float:
    """Relative difference of the mean brightness of two views of one scene over their overlap.

    ``|m_a - m_b| / ((m_a + m_b) / 2)`` of the 8-bit grey means. The reference T sits a few cm
    from the main T, so the views are offset by parallax; the offset is measured from the images
    (phase correlation, Hann window) and only the overlapping rectangle is compared.
    """
    a = cv2.imread(str(a_path), cv2.IMREAD_GRAYSCALE)
    b = cv2.imread(str(b_path), cv2.IMREAD_GRAYSCALE)
    if a is None or b is None or a.shape != b.shape:
        raise ValueError(f"need two decodable images of one size: {a_path}, {b_path}")
    a, b = a.astype(np.float64), b.astype(np.float64)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F))
    dx, dy = int(round(dx)), int(round(dy))  # b(x + d) ~ a(x)
    h, w = a.shape
    hh, ww = h - abs(dy), w - abs(dx)
    if hh < h // 2 or ww < w // 2:
        raise ValueError(f"the views overlap by less than half (offset {dx}, {dy} px)")
    ma = a[max(0, -dy):max(0, -dy) + hh, max(0, -dx):max(0, -dx) + ww].mean()
    mb = b[max(0, dy):max(0, dy) + hh, max(0, dx):max(0, dx) + ww].mean()
    return float(abs(ma - mb) / ((ma + mb) / 2))
