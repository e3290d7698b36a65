"""The simulated two-phone rig: where each camera sits, and how one frame is made.

World frame = the main phone's W camera. The main phone's T sits 1.5 cm beside W; the reference
phone is mounted ``ref_offset_m`` away (7 cm below by default), so its T sees the scene with real
parallax. Each camera module is mounted with a small random rotation (a few tenths of a degree),
which is what makes W-to-T coarse alignment necessary on real phones.
"""

from __future__ import annotations

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


def auto_exposure(radiance_mean: float, cam_role: str, bias: float) -> FrameExposure:
    """Pick exposure time and ISO to bring the mean to ``AE_TARGET``, favouring low ISO.

    T gets a shorter limit (1/30 s) than W (1/15 s): its 5x focal length shows hand shake 5x more.
    """
    product = AE_TARGET / (max(radiance_mean, 1e-5) * K_EXPOSE) * bias  # exposure_s * ISO
    max_t = 1 / 15 if cam_role == "W" else 1 / 30
    t = min(max(product / 50, 1 / 8000), max_t)
    iso = int(np.clip(round(product / t), 50, 6400))
    return FrameExposure(int(t * 1e9), iso, t * iso * K_EXPOSE)


def render_frame(rig: RigGeometry, scene: Scene, slot: str, t_s: float, focus_diopters: float,
                 rng: np.random.Generator, *, optics: bool = True, noise: bool = True,
                 quality: int = 92) -> tuple[bytes, FrameExposure, np.ndarray]:
    """Render one JPEG of ``slot`` at scene time ``t_s``. Returns (jpeg, exposure, rgb uint8)."""
    role, cam_role = CAMERAS[slot]
    cam = rig.camera(slot)
    pose = rig.pose(slot)
    lin = render_linear16(scene, pose, cam, t_s, focus_diopters, optics=optics)
    h, w = lin.shape[:2]
    centre = lin[h // 4 : 3 * h // 4 : 4, w // 4 : 3 * w // 4 : 4]
    radiance_mean = float(centre.mean()) / ONE * scene.illuminance
    exp = auto_exposure(radiance_mean, cam_role, rig.exposure_bias[role] if noise else 1.0)
    wb = rig.wb[role] if noise else (1.0, 1.0, 1.0)
    gain = exp.gain * scene.illuminance
    rgb = expose(lin, exposure_gain=gain, wb=wb, iso=exp.iso, cam=cam, rng=rng, noise=noise)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes(), exp, rgb


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
