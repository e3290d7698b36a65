"""The one world both virtual phones look at: the rig's geometry and a scene that changes.

Scenes follow the host's clock: a new scene every ``scene_duration_s`` (a crew moving the rig),
cycling through the scene kinds. Both phones render from the same scene object at the true host
instant of their frame, so a skew between them shows up in the images as it would for real.

Ground truth goes to ``truth_dir/<serial>.jsonl``, outside every phone's storage.

A script can also play the crew (``write_crew_action``): move the rig to a given scene and hold
it there, or spoil the next shots the way crews do (the second phone focused elsewhere, a bump of
the rig, a shaky hand, a fooled auto-exposure: ``hzsr.sim.defects``, the same defects with the
same numbers as ``hzsr sim session``). The action is a small JSON file beside the rig that the
world rereads when it changes; the phones and the host know nothing of it, so every stage
downstream must find the bad shots from the images and metadata alone. What was done, with the
defect's drawn numbers, is recorded in the truth folder.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hzsr.sim.defects import CREW_DEFECTS, Defect, draw, render_spoiled
from hzsr.sim.profiles import PhoneProfile
from hzsr.sim.rig import (
    ExposureControls,
    FrameExposure,
    RigGeometry,
    af_point_layer,
    af_roi,
    blur_circle_px,
    meter,
    render_frame,
    slot_of,
)
from hzsr.sim.scene import SCENE_KINDS, Scene, make_scene


def write_crew_action(rig_dir: str | Path, scene: int | None = None, defect: str | None = None) -> Path:
    """Play the crew on a virtual rig: hold the rig on scene ``scene`` (an index; the kinds cycle)
    and make the following shots suffer ``defect`` (one of ``CREW_DEFECTS``; None for none)."""
    if defect is not None and defect not in CREW_DEFECTS:
        raise ValueError(f"defect: unknown {defect!r}; known: {', '.join(CREW_DEFECTS)}")
    path = Path(rig_dir) / "crew.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"scene": scene, "defect": defect, "since_ns": time.monotonic_ns()}))
    os.replace(tmp, path)
    return path


@dataclass
class WorldConfig:
    """Options of the virtual world; every default lives here."""

    seed: int = 0
    size: tuple[int, int] = (640, 480)  # every camera's output (width, height)
    scene_duration_s: float = 8.0
    kinds: tuple[str, ...] = SCENE_KINDS


def af_layer_blur_px(rig: RigGeometry, scene: Scene, slot: str, t_s: float, focus_diopters: float) -> float:
    """Blur-circle diameter (``slot``'s pixels) of the plane at main T's AF point (the subject where
    no layer is there), focused at ``focus_diopters``: what a focus defect makes visible there
    (``hzsr sim session``'s truth records the same figure per capture, ``af_layer_blur_px``)."""
    lay = af_point_layer(rig, scene, t_s) or scene.layer(scene.subject)
    return blur_circle_px(rig, slot, lay.depth_m, focus_diopters)


class VirtualWorld:
    def __init__(self, profile: PhoneProfile, cfg: WorldConfig, truth_dir: str | Path):
        self.profile = profile
        self.cfg = cfg
        self.rig = RigGeometry.random(profile, cfg.size, np.random.default_rng(cfg.seed))
        self.epoch_ns = time.monotonic_ns()
        self.truth_dir = Path(truth_dir)
        self.truth_dir.mkdir(parents=True, exist_ok=True)
        self._scenes: dict[int, Scene] = {}
        self._lock = threading.Lock()
        self.crew_path = self.truth_dir.parent / "crew.json"
        self._crew: tuple[float, dict] = (-1.0, {})
        self._defect: tuple[tuple[str, int], Defect] | None = None  # ((defect, held scene + 1), its draw)

    def crew_action(self) -> dict:
        """The crew's current action (``write_crew_action``), reread when the file changes."""
        try:
            mtime = self.crew_path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if mtime != self._crew[0]:
            try:
                doc = json.loads(self.crew_path.read_text())
            except (OSError, ValueError):
                doc = {}
            self._crew = (mtime, doc if isinstance(doc, dict) else {})
        return self._crew[1]

    def crew_defect(self) -> Defect | None:
        """The defect the crew's current action causes, with its numbers: drawn from the world's
        seed, the held scene and the defect, so every frame it spoils (on both phones) suffers the
        same one, and a rerun of a script draws the same numbers."""
        action = self.crew_action()
        name, scene = action.get("defect"), action.get("scene")
        if name not in CREW_DEFECTS:
            return None
        held = scene + 1 if isinstance(scene, int) and not isinstance(scene, bool) and scene >= 0 else 0
        key = (name, held)
        if self._defect is None or self._defect[0] != key:  # two phones may race here: both draw the same
            rng = np.random.default_rng([self.cfg.seed, held, list(CREW_DEFECTS).index(name)])
            self._defect = (key, draw(name, rng, self.cfg.size[0]))
        return self._defect[1]

    def scene_at(self, host_ns: float) -> tuple[Scene, float]:
        """The scene at ``host_ns`` and its scene time in seconds (0 mid-way through it)."""
        dur = self.cfg.scene_duration_s * 1e9
        idx = int((host_ns - self.epoch_ns) // dur)
        held = self.crew_action().get("scene")
        if isinstance(held, int) and not isinstance(held, bool) and held >= 0:
            idx = held
        with self._lock:
            if idx not in self._scenes:
                rng = np.random.default_rng([self.cfg.seed, idx])
                kind = self.cfg.kinds[idx % len(self.cfg.kinds)]
                self._scenes[idx] = make_scene(kind, idx, rng, self.profile.camera("T").fx_native())
        if isinstance(held, int) and not isinstance(held, bool) and held >= 0:
            # Held by the crew: scene time runs from the moment they set the rig down.
            t = (host_ns - self.crew_action().get("since_ns", self.epoch_ns)) / 1e9 - 0.5 * self.cfg.scene_duration_s
            return self._scenes[idx], t
        t = (host_ns - self.epoch_ns - (idx + 0.5) * dur) / 1e9
        return self._scenes[idx], t

    def render(self, role: str, cam_role: str, host_ns: float, focus_diopters: float | None,
               rng: np.random.Generator, quality: int = 92, controls: ExposureControls | None = None,
               lens: dict[str, float] | None = None):
        """Render what ``role``'s ``cam_role`` camera sees at true host instant ``host_ns``.

        ``lens`` (when given) receives ``focus_diopters``, the focus the lens was drawn at, where
        the crew's focus defect moved it away from ``focus_diopters``: a phone's metadata reports
        its lens, not the request, and this is the one draw the image was rendered with.
        """
        scene, t = self.scene_at(host_ns)
        slot = slot_of(role, cam_role)
        if scene.kind == "sync-board":  # rows exposed one by one: the board shows each row's time
            from hzsr.sim.syncboard import render_board_slot

            jpg, exp = render_board_slot(self.rig, scene, slot, host_ns, rng, self.profile.readout_ns, quality)
            return jpg, exp, scene, af_roi(self.rig, slot, scene, t), t
        focus = focus_diopters if focus_diopters is not None else 1 / scene.layer(scene.subject).depth_m
        defect = self.crew_defect()
        if defect is None:
            jpg, exp, _ = render_frame(self.rig, scene, slot, t, focus, rng, quality=quality, controls=controls)
            return jpg, exp, scene, af_roi(self.rig, slot, scene, t), t
        rig = defect.rig(self.rig)
        spoiled_focus = defect.focus_diopters(scene, slot, focus)
        if lens is not None and spoiled_focus != focus:
            lens["focus_diopters"] = spoiled_focus
        jpg, exp = render_spoiled(defect, rig, scene, slot, t, spoiled_focus, rng, quality, controls)
        if defect.spoils(slot):
            params = defect.truth(scene)
            if defect.name in ("refocus", "wrong_depth"):
                # What the defect does to the picture: the blur circle of the plane the AF point
                # shows, in this frame at its spoiled focus (visible above VISIBLE_FOCUS_BLUR_PX).
                params["af_layer_blur_px"] = af_layer_blur_px(rig, scene, slot, t, spoiled_focus)
            self.record_truth("crew_defects", {"slot": slot, "defect": defect.name, "scene": scene.scene_id,
                                               "params": params})
        return jpg, exp, scene, af_roi(rig, slot, scene, t), t

    def meter(self, role: str, cam_role: str, host_ns: float, rng: np.random.Generator | None = None
              ) -> FrameExposure:
        """What AE and AWB of ``role``'s ``cam_role`` settle on at ``host_ns`` (for a 3A lock)."""
        scene, t = self.scene_at(host_ns)
        focus = 1 / scene.layer(scene.subject).depth_m
        return meter(self.rig, scene, slot_of(role, cam_role), t, focus, rng)[0]

    def depth_at(self, role: str, cam_role: str, host_ns: float, region: list[int] | None) -> float:
        """Depth in metres of the front-most layer at the centre of ``region`` ([x, y, w, h]),
        or of the scene's subject when ``region`` is None: where contrast AF would focus."""
        from hzsr.sim.render import visible_layer_map

        scene, t = self.scene_at(host_ns)
        if region is None:
            return scene.layer(scene.subject).depth_m
        label = visible_layer_map(scene, self.rig.pose(slot_of(role, cam_role)), t)
        x, y, w, h = region
        patch = label[max(y, 0):y + max(h, 1), max(x, 0):x + max(w, 1)]
        ids = patch[patch >= 0]
        if ids.size == 0:
            return scene.layers[0].depth_m
        return scene.layers[int(np.bincount(ids).argmax())].depth_m

    def record_truth(self, name: str, record: dict, append: bool = True) -> None:
        """Append a line to ``<name>.jsonl``, or (``append=False``) replace ``<name>.json``."""
        text = json.dumps(record, sort_keys=True)
        with self._lock:
            if append:
                with open(self.truth_dir / f"{name}.jsonl", "a") as f:
                    f.write(text + "\n")
            else:
                (self.truth_dir / f"{name}.json").write_text(text)
