"""The crew's defects, defined once: which frames each spoils, its numbers, and how it is rendered.

Two paths of the simulator inject them, and both take them from here: ``hzsr sim session``
(``SimConfig.defects``, for QA's tests and ``bench/qa.py``) and the virtual rig's world
(``world.write_crew_action``, the demo's scripted crew). QA must find each one from the images and
metadata alone; its thresholds (``hzsr.qa.config``) were set, and are benchmarked, on the ranges
in ``DefectRanges``. Each occurrence draws its own numbers (``draw``) from a generator of its own,
so injecting a defect leaves every other frame as it was.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from hzsr.sim.render import ONE, expose, motion_blur, render_linear16, rotation_xyz
from hzsr.sim.rig import CAMERAS, ExposureControls, FrameExposure, RigGeometry, auto_exposure, render_frame
from hzsr.sim.scene import Layer, Scene

#: Defects a crew causes on a rig (``write_crew_action``), and what each does.
CREW_DEFECTS: dict[str, str] = {
    "refocus": "the reference phone focuses on another plane than the main phone's subject",
    "rig_bump": "the reference phone is knocked sideways, turned by 30-50 % of T's field of view",
    "motion_blur": "the main phone shakes during its T exposure (a line blur of 1.2-2 % of the width)",
    "overexposure": "the main phone's auto-exposure is fooled, 2-3 stops too much on W and T",
    "wrong_depth": "both phones focus on another plane than the subject the AF ROI marks (a tap on the wrong spot)",
    "rig_knocked_off": "the reference phone is knocked off the scene, turned by 1.3-1.7 of T's field of view: its T "
                       "shares no view with the main phone's T",
}
#: Every defect ``hzsr sim session`` injects: the crew's, and ``moving_skew`` (a scene with movers,
#: and the reference frame 3-5 frame periods late), which needs the session's timing model. New
#: defects go at the end: ``bench/qa.py``'s labelled set cycles through ``LABELLED_CYCLE`` (the first
#: six) so that its sessions stay the ones earlier runs rendered, and renders the rest apart.
DEFECTS: tuple[str, ...] = ("refocus", "moving_skew", "motion_blur", "rig_bump", "overexposure", "wrong_depth",
                            "rig_knocked_off")
#: A focus defect (``refocus``, ``wrong_depth``) is visible where the plane the AF point shows is
#: blurred by more than this blur-circle diameter (T pixels) in the frame it is judged by
#: (``FOCUS_JUDGED_IN``); under it the other plane lies within T's depth of field (architecture and
#: landscape scenes, whose planes are all far). The labelled set (``bench/qa.py``) and the demo's
#: confusion table both label by ``invisible_focus_defect``.
VISIBLE_FOCUS_BLUR_PX = 2.0
#: The frame a focus defect is judged by: the one it moves away from the main phone's focus.
FOCUS_JUDGED_IN = {"refocus": "ref_T", "wrong_depth": "main_T"}


def invisible_focus_defect(defect: str | None, af_blur_px: dict[str, float]) -> bool:
    """Whether focus defect ``defect`` left nothing to see: the AF plane's blur circle (T px) in
    its judged frame, ``af_blur_px[FOCUS_JUDGED_IN[defect]]``, is at most ``VISIBLE_FOCUS_BLUR_PX``.
    False for other defects and where the figure is missing (no truth to excuse a miss)."""
    slot = FOCUS_JUDGED_IN.get(str(defect))
    blur = af_blur_px.get(slot) if slot is not None else None
    return blur is not None and blur <= VISIBLE_FOCUS_BLUR_PX

#: The frames (slots) each defect spoils; the others render as usual.
SPOILS: dict[str, tuple[str, ...]] = {
    "refocus": ("ref_T",),
    "moving_skew": ("ref_T",),
    "motion_blur": ("main_T",),
    "rig_bump": ("ref_T",),
    "rig_knocked_off": ("ref_T",),
    "overexposure": ("main_W", "main_T"),
    "wrong_depth": ("main_T", "ref_T"),
}


@dataclass(frozen=True)
class DefectRanges:
    """The numbers of every defect: each occurrence draws its own within these."""

    bump_frac_of_width: tuple[float, float] = (0.3, 0.5)  # ref_T's yaw, in T's widths, either way
    # rig_knocked_off: the yaw past T's own field of view and a near portrait's parallax (up to 0.3
    # of the width) together: no pixel of the two Ts shared
    knock_frac_of_width: tuple[float, float] = (1.3, 1.7)
    bump_pitch_sigma_rad: float = 0.002  # and a little pitch
    blur_frac_of_width: tuple[float, float] = (0.012, 0.02)  # length of main T's line blur
    overexposure_stops: tuple[float, float] = (2.0, 3.0)
    frames_late: tuple[int, int] = (3, 6)  # moving_skew: ref_T this many frame periods late, [low, high)


RANGES = DefectRanges()


@dataclass(frozen=True)
class Defect:
    """One occurrence of a defect with its drawn numbers (zero where they do not apply)."""

    name: str
    bump_frac_of_width: float = 0.0
    bump_pitch_rad: float = 0.0
    blur_px: float = 0.0
    blur_angle_rad: float = 0.0
    stops: float = 0.0
    frames_late: int = 0

    def spoils(self, slot: str) -> bool:
        return slot in SPOILS[self.name]

    def rig(self, rig: RigGeometry) -> RigGeometry:
        """The rig as this defect leaves it: ``rig_bump`` and ``rig_knocked_off`` turn ref_T; the
        others leave it be."""
        if self.name not in ("rig_bump", "rig_knocked_off"):
            return rig
        yaw = np.arctan(self.bump_frac_of_width * rig.size[0] / rig.pose("ref_T").K[0, 0])
        rot = rig.rotations["ref_T"] @ rotation_xyz(self.bump_pitch_rad, yaw, 0.0)
        return dataclasses.replace(rig, rotations={**rig.rotations, "ref_T": rot})

    def focus_diopters(self, scene: Scene, slot: str, focus: float) -> float:
        """Where ``slot`` focuses: ``refocus`` moves ref_T, ``wrong_depth`` both Ts, to
        ``refocus_layer``; else ``focus``."""
        if self.name in ("refocus", "wrong_depth") and self.spoils(slot):
            return 1 / refocus_layer(scene).depth_m
        return focus

    def truth(self, scene: Scene) -> dict[str, float | int | str]:
        """What the ground truth records of this occurrence."""
        if self.name in ("refocus", "wrong_depth"):
            return {"focused_layer": refocus_layer(scene).name}
        if self.name in ("rig_bump", "rig_knocked_off"):
            return {"bump_frac_of_width": self.bump_frac_of_width}
        if self.name == "motion_blur":
            return {"blur_px": self.blur_px, "angle_rad": self.blur_angle_rad}
        if self.name == "overexposure":
            return {"stops": self.stops}
        return {"frames_late": self.frames_late}


def draw(name: str, rng: np.random.Generator, width: int, ranges: DefectRanges = RANGES) -> Defect:
    """One occurrence of defect ``name`` for images ``width`` pixels wide, its numbers from ``rng``."""
    if name not in SPOILS:
        raise ValueError(f"unknown defect {name!r}; known: {', '.join(DEFECTS)}")
    if name in ("rig_bump", "rig_knocked_off"):
        span = ranges.bump_frac_of_width if name == "rig_bump" else ranges.knock_frac_of_width
        frac = float(rng.uniform(*span) * rng.choice([-1, 1]))
        return Defect(name, bump_frac_of_width=frac, bump_pitch_rad=float(rng.normal(0, ranges.bump_pitch_sigma_rad)))
    if name == "motion_blur":
        return Defect(name, blur_px=float(rng.uniform(*ranges.blur_frac_of_width) * width),
                      blur_angle_rad=float(rng.uniform(0, np.pi)))
    if name == "overexposure":
        return Defect(name, stops=float(rng.uniform(*ranges.overexposure_stops)))
    if name == "moving_skew":
        return Defect(name, frames_late=int(rng.integers(*ranges.frames_late)))
    return Defect(name)


def refocus_layer(scene: Scene) -> Layer:
    """The plane furthest from the subject in diopters (the background or a near object): the
    worst place for the reference phone to focus."""
    subj = 1 / scene.layer(scene.subject).depth_m
    return max(scene.layers, key=lambda lay: abs(1 / lay.depth_m - subj))


def render_spoiled(defect: Defect | None, rig: RigGeometry, scene: Scene, slot: str, t_s: float, focus_diopters: float,
           rng: np.random.Generator, quality: int = 92, controls: ExposureControls | None = None,
           ) -> tuple[bytes, FrameExposure]:
    """One JPEG of ``slot``, spoiled by ``defect`` where it spoils that frame's exposure (blur,
    overexposure); ``rig`` and ``focus_diopters`` already carry the defect (``Defect.rig``,
    ``Defect.focus_diopters``). Frames it leaves alone render as ``rig.render_frame`` does."""
    if defect is not None and defect.spoils(slot) and defect.name in ("motion_blur", "overexposure"):
        blur = (defect.blur_px, defect.blur_angle_rad) if defect.name == "motion_blur" else None
        jpg, exp, _ = render_defective(rig, scene, slot, t_s, focus_diopters, rng, blur, defect.stops, quality)
        return jpg, exp
    jpg, exp, _ = render_frame(rig, scene, slot, t_s, focus_diopters, rng, quality=quality, controls=controls)
    return jpg, exp


def render_defective(rig: RigGeometry, scene: Scene, slot: str, t_s: float, focus_diopters: float,
                     rng: np.random.Generator, blur: tuple[float, float] | None = None, over_stops: float = 0.0,
                     quality: int = 92) -> tuple[bytes, FrameExposure, np.ndarray]:
    """``rig.render_frame`` with a defect: the camera shaking during the exposure (a line blur of
    ``blur = (length_px, angle_rad)`` in linear light, before noise), or auto-exposure fooled into
    ``over_stops`` too much exposure (AE metered as usual, then the gain pushed)."""
    role, cam_role = CAMERAS[slot]
    cam = rig.camera(slot)
    lin = render_linear16(scene, rig.pose(slot), cam, t_s, focus_diopters)
    if blur is not None:
        lin = motion_blur(lin, *blur)
    h, w = lin.shape[:2]
    radiance_mean = float(lin[h // 4 : 3 * h // 4 : 4, w // 4 : 3 * w // 4 : 4].mean()) / ONE * scene.illuminance
    exp = auto_exposure(radiance_mean, cam_role, rig.exposure_bias[role])
    gain = exp.gain * scene.illuminance * 2**over_stops
    rgb = expose(lin, exposure_gain=gain, wb=rig.wb[role], iso=exp.iso, cam=cam, rng=rng)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes(), exp, rgb
