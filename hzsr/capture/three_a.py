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
    """3A options of ``hzsr capture run``; every default lives here."""

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


def overlap_brightness_difference(a_path: str | Path, b_path: str | Path,
                                  min_overlap: float = 0.05) -> tuple[float, float]:
    """Relative difference of the mean brightness of two views of one scene over their overlap.

    The reference T sits a few cm from the main T, so the views differ by parallax, which is
    different for every depth in the scene. The views are aligned densely (OpenCV's DIS optical
    flow, both ways), ``b`` is warped onto ``a``, and the overlap is the set of pixels whose
    forward and backward flows agree to 0.5 px (seen alike by both views, not occluded in
    either). Returns ``(|m_a - m_b| / ((m_a + m_b) / 2), overlap share of the image)``, the means
    being 8-bit grey means over the overlap.

    Raises:
        ValueError: unreadable images, different sizes, or an overlap under ``min_overlap``.
    """
    a = cv2.imread(str(a_path), cv2.IMREAD_GRAYSCALE)
    b = cv2.imread(str(b_path), cv2.IMREAD_GRAYSCALE)
    if a is None or b is None or a.shape != b.shape:
        raise ValueError(f"need two decodable images of one size: {a_path}, {b_path}")
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    f_ab = dis.calc(a, b, None)
    f_ba = dis.calc(b, a, None)
    h, w = a.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    mx, my = gx + f_ab[..., 0], gy + f_ab[..., 1]
    b_on_a = cv2.remap(b.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=-1.0)
    back = cv2.remap(f_ba, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1e3)
    consistent = np.hypot(f_ab[..., 0] + back[..., 0], f_ab[..., 1] + back[..., 1]) < 0.5
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1) & (b_on_a >= 0)
    overlap = cv2.erode((consistent & inside).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    if overlap.mean() < min_overlap:
        raise ValueError(f"the views overlap on only {overlap.mean():.0%} of the image")
    ma, mb = float(a[overlap].mean()), float(b_on_a[overlap].mean())
    return abs(ma - mb) / ((ma + mb) / 2), float(overlap.mean())
