"""The simulated two-phone rig: where each camera sits, and how one frame is made.

World frame = the main phone's W camera. The main phone's T sits 1.5 cm beside W; the reference
phone is mounted ``ref_offset_m`` away (7 cm below by default), so its T sees the scene with real
parallax. Each camera module is mounted with a small random rotation (a few tenths of a degree),
which is what makes W-to-T coarse alignment necessary on real phones.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import cv2
import numpy as np

from hzsr.core.records import SLOT_SOURCES
from hzsr.sim.profiles import CameraModel, PhoneProfile
from hzsr.sim.render import ONE, CameraPose, expose, render_linear16, rotation_xyz
from hzsr.sim.scene import Scene

SLOTS = SLOT_SOURCES
#: Every camera on the rig, including the reference phone's W, which a triplet does not use.
CAMERAS = {**SLOTS, "ref_W": ("reference", "W")}


def slot_of(role: str, cam_role: str) -> str:
    return next(k for k, v in CAMERAS.items() if v == (role, cam_role))

#: Exposure model: mean linear signal = radiance * exposure_s * ISO * K_EXPOSE.
K_EXPOSE = 2.25
AE_TARGET = 0.18


@dataclass
class RigGeometry:
    profile: PhoneProfile
    size: tuple[int, int]  # output image size of every camera (width, height)
    ref_offset_m: tuple[float, float, float] = (0.0, 0.07, 0.0)
    rotations: dict[str, np.ndarray] = field(default_factory=dict)  # per slot, world->camera
    wb: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # per device role
    exposure_bias: dict[str, float] = field(default_factory=dict)

    @classmethod
    def random(cls, profile: PhoneProfile, size: tuple[int, int], rng: np.random.Generator) -> RigGeometry:
        deg = np.pi / 180
        rots = {
            "main_W": np.eye(3),
            "main_T": rotation_xyz(*rng.normal(0, 0.25 * deg, 3)),
            "ref_T": rotation_xyz(*rng.normal(0, 0.4 * deg, 3)),
        }
        wb = {r: tuple(float(v) for v in 1 + rng.normal(0, 0.02, 3)) for r in ("main", "reference")}
        bias = {r: float(np.exp(rng.normal(0, 0.04))) for r in ("main", "reference")}
        rots["ref_W"] = rots["ref_T"] @ rotation_xyz(*rng.normal(0, 0.25 * deg, 3))
        return cls(profile, size, rotations=rots, wb=wb, exposure_bias=bias)

    def camera(self, slot: str) -> CameraModel:
        return self.profile.camera(CAMERAS[slot][1])

    def pose(self, slot: str) -> CameraPose:
        role, cam_role = CAMERAS[slot]
        cam = self.profile.camera(cam_role)
        c = np.array(cam.position_m, np.float64)
        if role == "reference":
            c = c + np.array(self.ref_offset_m)
        return CameraPose(cam.intrinsics(self.size), self.rotations[slot], c, self.size)


@dataclass
class FrameExposure:
    exposure_time_ns: int
    iso: int
    gain: float
    #: White-balance gains applied, Camera2 order (R, G_even, G_odd, B), in the calibrated space.
    wb_gains: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    #: The unit's colour calibration the ISP applied (diagonal 3x3, row-major), raw -> calibrated.
    ccm: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass
class ExposureControls:
    """Manual settings for one frame; ``None`` leaves that part to the camera's auto loop (AE/AWB)."""

    exposure_time_ns: int | None = None
    iso: int | None = None
    wb_gains: tuple[float, float, float, float] | None = None  # (R, G_even, G_odd, B)


#: Per-unit colour calibration residual: the factory measures each unit's response this well.
CALIBRATION_RESIDUAL = 0.003
#: Auto white balance estimates the illuminant to within this (per channel, per frame).
AWB_ERROR = 0.01


def illuminant(scene: Scene) -> tuple[float, float, float]:
    """The scene light's colour (linear RGB, G = 1): warm to cool, fixed per scene."""
    h = zlib.crc32(scene.scene_id.encode()) / 2**32
    a = 0.25 * (2 * h - 1)  # -0.25 (cool) .. +0.25 (warm)
    return (1.0 + a, 1.0, 1.0 - 0.8 * a)


def calibration(rig: RigGeometry, role: str) -> tuple[float, float, float]:
    """What the unit's factory calibration believes its response is (known to its ISP)."""
    rng = np.random.default_rng(zlib.crc32(role.encode()))
    return tuple(float(r * (1 + rng.normal(0, CALIBRATION_RESIDUAL))) for r in rig.wb[role])


def auto_wb_gains(scene: Scene, rng: np.random.Generator | None) -> tuple[float, float, float, float]:
    """AWB: gains that neutralise the estimated illuminant, in the calibrated space (G = 1)."""
    ill = illuminant(scene)
    err = rng.normal(0, AWB_ERROR, 3) if rng is not None else np.zeros(3)
    r = ill[1] / ill[0] * (1 + err[0] - err[1])
    b = ill[1] / ill[2] * (1 + err[2] - err[1])
    return (round(float(r), 4), 1.0, 1.0, round(float(b), 4))


def auto_exposure(radiance_mean: float, cam_role: str, bias: float) -> FrameExposure:
    """Pick exposure time and ISO to bring the mean to ``AE_TARGET``, favouring low ISO.

    T gets a shorter limit (1/30 s) than W (1/15 s): its 5x focal length shows hand shake 5x more.
    """
    product = AE_TARGET / (max(radiance_mean, 1e-5) * K_EXPOSE) * bias  # exposure_s * ISO
    max_t = 1 / 15 if cam_role == "W" else 1 / 30
    t = min(max(product / 50, 1 / 8000), max_t)
    iso = int(np.clip(round(product / t), 50, 6400))
    return FrameExposure(int(t * 1e9), iso, t * iso * K_EXPOSE)


def meter(rig: RigGeometry, scene: Scene, slot: str, t_s: float, focus_diopters: float,
          rng: np.random.Generator | None = None, optics: bool = True) -> tuple[FrameExposure, np.ndarray]:
    """What the camera's auto loops settle on for this view: AE exposure and AWB gains.

    Returns the exposure (with the AWB gains and the unit's calibration) and the linear render.
    """
    role, cam_role = CAMERAS[slot]
    cam = rig.camera(slot)
    lin = render_linear16(scene, rig.pose(slot), cam, t_s, focus_diopters, optics=optics)
    h, w = lin.shape[:2]
    centre = lin[h // 4 : 3 * h // 4 : 4, w // 4 : 3 * w // 4 : 4]
    radiance_mean = float(centre.mean()) / ONE * scene.illuminance
    exp = auto_exposure(radiance_mean, cam_role, rig.exposure_bias[role])
    k = calibration(rig, role)
    exp.wb_gains = auto_wb_gains(scene, rng)
    exp.ccm = (1 / k[0], 0.0, 0.0, 0.0, 1 / k[1], 0.0, 0.0, 0.0, 1 / k[2])
    return exp, lin


def render_frame(rig: RigGeometry, scene: Scene, slot: str, t_s: float, focus_diopters: float,
                 rng: np.random.Generator, *, optics: bool = True, noise: bool = True,
                 quality: int = 92, controls: ExposureControls | None = None,
                 ) -> tuple[bytes, FrameExposure, np.ndarray]:
    """Render one JPEG of ``slot`` at scene time ``t_s``. Returns (jpeg, exposure, rgb uint8).

    Colour: the sensor records ``L * E * r`` (scene radiance, illuminant colour, the unit's
    response ``r``); the ISP applies its factory calibration ``1/k`` (``k = r`` up to
    ``CALIBRATION_RESIDUAL``) and the white-balance gains ``g``, so a pixel comes out as
    ``L * E * (r / k) * g * exposure``. AE picks exposure time and ISO, AWB picks ``g`` unless
    ``controls`` fixes them; fixed values make two phones' output match to the calibration residual.
    """
    role, cam_role = CAMERAS[slot]
    cam = rig.camera(slot)
    if not noise:
        lin = render_linear16(scene, rig.pose(slot), cam, t_s, focus_diopters, optics=optics)
        exp = FrameExposure(*_ae_no_noise(lin, scene, cam_role))
        colour = (1.0, 1.0, 1.0)
    else:
        exp, lin = meter(rig, scene, slot, t_s, focus_diopters, rng, optics=optics)
        c = controls or ExposureControls()
        t_ns = c.exposure_time_ns if c.exposure_time_ns is not None else exp.exposure_time_ns
        iso = c.iso if c.iso is not None else exp.iso
        exp.exposure_time_ns, exp.iso = int(t_ns), int(iso)
        exp.gain = t_ns * 1e-9 * iso * K_EXPOSE
        if c.wb_gains is not None:
            exp.wb_gains = tuple(float(v) for v in c.wb_gains)
        ill, r = illuminant(scene), rig.wb[role]
        k = (1 / exp.ccm[0], 1 / exp.ccm[4], 1 / exp.ccm[8])
        g = exp.wb_gains
        colour = tuple(ill[i] * r[i] / k[i] * (g[0], (g[1] + g[2]) / 2, g[3])[i] for i in range(3))
    gain = exp.gain * scene.illuminance
    rgb = expose(lin, exposure_gain=gain, wb=colour, iso=exp.iso, cam=cam, rng=rng, noise=noise)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes(), exp, rgb


def _ae_no_noise(lin: np.ndarray, scene: Scene, cam_role: str) -> tuple[int, int, float]:
    h, w = lin.shape[:2]
    centre = lin[h // 4 : 3 * h // 4 : 4, w // 4 : 3 * w // 4 : 4]
    e = auto_exposure(float(centre.mean()) / ONE * scene.illuminance, cam_role, 1.0)
    return e.exposure_time_ns, e.iso, e.gain


def af_roi(rig: RigGeometry, slot: str, scene: Scene, t: float) -> list[int]:
    """AF ROI: a box a fifth of the frame around where the subject's centre projects."""
    from hzsr.sim.render import layer_homography
    from hzsr.sim.scene import photo

    lay = scene.layer(scene.subject)
    h, w = photo(lay.photo).shape[:2]
    p = layer_homography(rig.pose(slot), lay, t) @ np.array([w / 2, h / 2, 1.0])
    cx, cy = p[0] / p[2], p[1] / p[2]
    bw, bh = rig.size[0] // 5, rig.size[1] // 5
    x = int(np.clip(cx - bw / 2, 0, rig.size[0] - bw))
    y = int(np.clip(cy - bh / 2, 0, rig.size[1] - bh))
    return [x, y, bw, bh]


def blur_circle_px(rig: RigGeometry, slot: str, depth_m: float, focus_diopters: float) -> float:
    """Blur-circle diameter (``slot``'s pixels) of a plane at ``depth_m`` with ``slot`` focused at
    ``focus_diopters``: ``2 sqrt(2) sigma``, ``sigma`` the render's ``defocus_sigma_px``. A focus
    defect is visible where it exceeds ``defects.VISIBLE_FOCUS_BLUR_PX``."""
    from hzsr.sim.render import defocus_sigma_px

    return float(2 * np.sqrt(2) * defocus_sigma_px(rig.camera(slot), float(rig.pose(slot).K[0, 0]), depth_m,
                                                   focus_diopters))


def af_point_layer(rig: RigGeometry, scene: Scene, t: float):
    """The layer main T's AF point (its AF ROI's centre) shows at scene time ``t``: a near
    foreground may hide the subject there. None where no layer is there (the backdrop)."""
    from hzsr.sim.render import visible_layer_map

    x, y, bw, bh = af_roi(rig, "main_T", scene, t)
    label = visible_layer_map(scene, rig.pose("main_T"), t)
    li = int(label[min(y + bh // 2, label.shape[0] - 1), min(x + bw // 2, label.shape[1] - 1)])
    return scene.layers[li] if li >= 0 else None
