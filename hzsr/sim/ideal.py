"""The ideal target of a simulated capture: ground truth the paper's data never had.

What a perfect HZSR output would be: the scene seen from **main W's viewpoint** (the W crop's
camera, ``CropRect.crop_intrinsics``) at **T's resolution**, at W's instant, through a pinhole (all
in focus, no lens blur), with no sensor noise and no JPEG. A method scored against it is no longer
penalised for the main T's own defocus, occlusion and noise, as it is against the main-T target.

Its photometry is the noise-free render's (auto-exposure without noise, neutral white balance),
not any phone's: scorers fit it to the image they compare with (a gain and offset on Y, as
``bench/eval_truth.py`` does). Written by ``simsession`` to ``<session>.truth/<id>.npz`` as
``ideal_T`` (uint8 RGB); like all truth, no stage of the toolkit reads it.
"""

from __future__ import annotations

import numpy as np

from hzsr.sim.render import CameraPose, expose, render_linear16
from hzsr.sim.rig import RigGeometry, _ae_no_noise
from hzsr.sim.scene import Scene


def ideal_target(rig: RigGeometry, scene: Scene, crop_pose: CameraPose, t_w: float) -> np.ndarray:
    """The ideal T-resolution image of ``crop_pose`` (main W's viewpoint) at time ``t_w`` (seconds)."""
    cam = rig.camera("main_T")  # texture level-of-detail only: optics are off
    lin = render_linear16(scene, crop_pose, cam, t_w, focus_diopters=0.0, optics=False)
    _, iso, gain = _ae_no_noise(lin, scene, "T")
    return expose(lin, exposure_gain=gain * scene.illuminance, wb=(1.0, 1.0, 1.0), iso=iso, cam=cam,
                  rng=np.random.default_rng(0), noise=False)
