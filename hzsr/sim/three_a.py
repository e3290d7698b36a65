"""The simulated camera's 3A (auto-focus, auto-exposure, auto-white-balance), as protocol v2's
``set_3a`` drives it on a virtual phone's agent (``hzsr.vphone.agent``). It lives with the camera
HAL's other models (``sensor``, ``phase_align``): it needs only the world and the rig's metering.

Per camera (W, T) the agent keeps what the host asked for, in Camera2 terms:

- AF: ``auto`` (CONTROL_AF_MODE_AUTO on ``af_region``, or the agent's own region) or ``fixed``
  (CONTROL_AF_MODE_OFF at ``focus_diopters``); ``af_lock`` freezes the focus distance reached;
- AE: auto, locked (CONTROL_AE_LOCK: the values metered at lock time), or manual
  (CONTROL_AE_MODE_OFF with ``exposure_time_ns`` and ``iso``);
- AWB: auto, locked (CONTROL_AWB_LOCK), or manual (CONTROL_AWB_MODE_OFF with ``wb_gains``).

Locks meter the scene when they are set, as a camera locks whatever it has converged on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hzsr.core.errors import ThreeAError
from hzsr.sim.rig import ExposureControls, FrameExposure
from hzsr.sim.world import VirtualWorld

MAX_ISO = 6400
MIN_EXPOSURE_NS = 100_000
MAX_EXPOSURE_NS = 250_000_000


@dataclass
class CameraControls:
    af_mode: str = "auto"  # auto | fixed
    af_region: list[int] | None = None  # [x, y, w, h] in output pixels; None: the agent's own
    focus_diopters: float | None = None  # fixed focus, or the focus frozen by af_lock
    af_lock: bool = False
    ae: str = "auto"  # auto | locked | manual
    exposure_time_ns: int | None = None  # locked or manual values
    iso: int | None = None
    awb: str = "auto"  # auto | locked | manual
    wb_gains: list[float] | None = None  # (R, G_even, G_odd, B)


def _num(req: dict, key: str, kind: type, lo: float, hi: float) -> Any:
    v = req[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
        raise ThreeAError(f"{key} must be a{'n integer' if kind is int else ' number'}")
    if not lo <= v <= hi:
        raise ThreeAError(f"{key} must be within [{lo}, {hi}], got {v}")
    return kind(v)


class ThreeA:
    def __init__(self, role: str, world: VirtualWorld, size: tuple[int, int]):
        self.role, self.world, self.size = role, world, size
        self.cams = {"W": CameraControls(), "T": CameraControls()}

    def set(self, req: dict, host_ns: float, rng: np.random.Generator) -> dict:
        """Apply a ``set_3a`` request; returns ``{"cameras": {role: state}}`` for the cameras set."""
        cams = req.get("cameras", ["W", "T"])
        if not isinstance(cams, list) or not cams or any(c not in self.cams for c in cams):
            raise ThreeAError("cameras must be a non-empty list of 'W' and 'T'")
        known = {"cmd", "id", "cameras", "af_mode", "af_region", "focus_diopters", "af_lock", "ae_lock",
                 "awb_lock", "exposure_time_ns", "iso", "wb_gains"}
        unknown = sorted(set(req) - known)
        if unknown:
            raise ThreeAError(f"unknown field {unknown[0]!r}")
        new = {c: CameraControls(**asdict(self.cams[c])) for c in cams}
        for c in cams:
            cc = new[c]
            if "af_mode" in req:
                if req["af_mode"] not in ("auto", "fixed"):
                    raise ThreeAError("af_mode must be 'auto' or 'fixed'")
                cc.af_mode = req["af_mode"]
                cc.focus_diopters = None
            if "af_region" in req:
                r = req["af_region"]
                if r is not None and not (isinstance(r, list) and len(r) == 4 and all(
                        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in r) and r[2] > 0 and r[3] > 0
                        and r[0] + r[2] <= self.size[0] and r[1] + r[3] <= self.size[1]):
                    raise ThreeAError(f"af_region must be [x, y, w, h] inside the {self.size[0]}x{self.size[1]} "
                                      "output, or null")
                cc.af_region = r
            if cc.af_mode == "fixed":
                if "focus_diopters" not in req and cc.focus_diopters is None:
                    raise ThreeAError("af_mode 'fixed' needs focus_diopters")
                if "focus_diopters" in req:
                    cc.focus_diopters = _num(req, "focus_diopters", float, 0.0, 20.0)
            elif "focus_diopters" in req:
                raise ThreeAError("focus_diopters needs af_mode 'fixed'")
            if "af_lock" in req:
                cc.af_lock = bool(req["af_lock"])
                if cc.af_mode == "auto":
                    cc.focus_diopters = (1 / self.world.depth_at(self.role, c, host_ns, cc.af_region)
                                         if cc.af_lock else None)
            manual_ae = "exposure_time_ns" in req or "iso" in req
            if manual_ae:
                if not ("exposure_time_ns" in req and "iso" in req):
                    raise ThreeAError("manual exposure needs both exposure_time_ns and iso")
                cc.ae = "manual"
                cc.exposure_time_ns = _num(req, "exposure_time_ns", int, MIN_EXPOSURE_NS, MAX_EXPOSURE_NS)
                cc.iso = _num(req, "iso", int, 25, MAX_ISO)
            if "wb_gains" in req:
                g = req["wb_gains"]
                if not (isinstance(g, list) and len(g) == 4 and all(
                        isinstance(v, (int, float)) and not isinstance(v, bool) and 0.1 <= v <= 16 for v in g)):
                    raise ThreeAError("wb_gains must be [R, G_even, G_odd, B], each within [0.1, 16]")
                cc.awb, cc.wb_gains = "manual", [float(v) for v in g]
            metered: FrameExposure | None = None
            if "ae_lock" in req and not manual_ae:
                if req["ae_lock"]:
                    metered = metered or self.world.meter(self.role, c, host_ns, rng)
                    cc.ae, cc.exposure_time_ns, cc.iso = "locked", metered.exposure_time_ns, metered.iso
                else:  # unlocking also ends manual exposure: back to auto
                    cc.ae, cc.exposure_time_ns, cc.iso = "auto", None, None
            if "awb_lock" in req and "wb_gains" not in req:
                if req["awb_lock"]:
                    metered = metered or self.world.meter(self.role, c, host_ns, rng)
                    cc.awb, cc.wb_gains = "locked", list(metered.wb_gains)
                else:
                    cc.awb, cc.wb_gains = "auto", None
        self.cams.update(new)
        return {"cameras": {c: self.state(c, host_ns) for c in cams}}

    def state(self, cam: str, host_ns: float, rng: np.random.Generator | None = None) -> dict:
        """What ``get_3a`` reports: modes, and the values the next frame would use."""
        cc = self.cams[cam]
        m = None
        if cc.ae == "auto" or cc.awb == "auto":
            m = self.world.meter(self.role, cam, host_ns, rng)
        exp_ns = cc.exposure_time_ns if cc.ae != "auto" else m.exposure_time_ns
        iso = cc.iso if cc.ae != "auto" else m.iso
        gains = cc.wb_gains if cc.awb != "auto" else list(m.wb_gains)
        return {**self.modes(cam), "exposure_time_ns": int(exp_ns), "iso": int(iso),
                "wb_gains": [round(float(v), 4) for v in gains], "af_region": cc.af_region,
                "focus_diopters": None if cc.focus_diopters is None else round(cc.focus_diopters, 4)}

    def modes(self, cam: str) -> dict:
        """Camera2 mode and state names for ``cam``'s current settings."""
        cc = self.cams[cam]
        return {
            "ae_mode": "OFF" if cc.ae == "manual" else "ON",
            "ae_state": {"auto": "CONVERGED", "locked": "LOCKED", "manual": "INACTIVE"}[cc.ae],
            "awb_mode": "OFF" if cc.awb == "manual" else "AUTO",
            "awb_state": {"auto": "CONVERGED", "locked": "LOCKED", "manual": "INACTIVE"}[cc.awb],
            "af_mode": "OFF" if cc.af_mode == "fixed" else "AUTO",
            "af_state": ("INACTIVE" if cc.af_mode == "fixed" else
                         "FOCUSED_LOCKED" if cc.af_lock else "PASSIVE_FOCUSED"),
        }

    def frame_controls(self, cam: str, host_ns: float) -> tuple[ExposureControls, float | None, list[int] | None]:
        """(exposure controls, focus in diopters or None for the agent's AF, AF region) for one frame."""
        cc = self.cams[cam]
        ctl = ExposureControls()
        if cc.ae != "auto":
            ctl.exposure_time_ns, ctl.iso = cc.exposure_time_ns, cc.iso
        if cc.awb != "auto":
            ctl.wb_gains = tuple(cc.wb_gains)
        focus = cc.focus_diopters
        if focus is None and cc.af_region is not None:
            focus = 1 / self.world.depth_at(self.role, cam, host_ns, cc.af_region)
        return ctl, focus, cc.af_region


def frame_3a_meta(three_a: ThreeA, cam_role: str, cam: Any, exp: FrameExposure, frame_period_ns: int,
                  lying: bool = False) -> dict:
    """The protocol-v2 per-frame fields (``FRAME_3A_FIELDS``) for a frame rendered with ``exp``.

    ``lying`` is the ``ignore_3a`` fault: report the requested values, whatever was applied.
    """
    cc = three_a.cams[cam_role]
    out = {**three_a.modes(cam_role), "wb_gains": [round(float(v), 4) for v in exp.wb_gains],
           "ccm": [round(float(v), 6) for v in exp.ccm], "f_number": cam.f_number,
           "focal_length_mm": cam.focal_length_mm, "frame_duration_ns": int(frame_period_ns),
           # LENS_DISTORTION (k1, k2, k3, p1, p2): the virtual lens renders none.
           "distortion": [0.0, 0.0, 0.0, 0.0, 0.0]}
    if lying:
        if cc.ae != "auto":
            out["exposure_time_ns"], out["iso"] = cc.exposure_time_ns, cc.iso
        if cc.awb != "auto":
            out["wb_gains"] = list(cc.wb_gains)
    return out
