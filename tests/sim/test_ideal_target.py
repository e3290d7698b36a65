"""The ideal target in the truth (issue 20, item 3): W's viewpoint, T's resolution, sharp, noise-free."""

import json

import cv2
import numpy as np

from hzsr.core.geometry import CropRect
from hzsr.sim.truth import truth_dir


def _captures(session):
    for cap in sorted((session / "captures").iterdir()):
        npz = truth_dir(session) / f"{cap.name}.npz"
        if npz.is_file():
            t = json.loads((truth_dir(session) / f"{cap.name}.json").read_text())
            yield cap, np.load(npz), CropRect(**t["crop_rect"])


def _lowpass_y(rgb, sigma=3.0):
    y = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return cv2.GaussianBlur(y, (0, 0), sigma)


def _centred(y, mask):
    """Zero mean, unit deviation over ``mask``: the ideal's photometry is not the phone's."""
    return (y - y[mask].mean()) / (y[mask].std() + 1e-6)


def test_the_ideal_target_is_w_viewpoint_at_t_resolution_and_sharper(sim_session_template):
    n = 0
    for cap, t, rect in _captures(sim_session_template):
        ideal = t["ideal_T"]
        w = cv2.cvtColor(cv2.imread(str(cap / "main_W.jpg")), cv2.COLOR_BGR2RGB)
        assert ideal.shape == (rect.out_height, rect.out_width, 3) and ideal.dtype == np.uint8
        crop = cv2.warpAffine(w, rect.crop_to_w()[:2], (rect.out_width, rect.out_height),
                              flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        # Same viewpoint as the W crop: no shift between them at W's (low) resolution ...
        (dx, dy), resp = cv2.phaseCorrelate(_lowpass_y(crop), _lowpass_y(ideal))
        assert np.hypot(dx, dy) < 1.0 and resp > 0.2, (cap.name, dx, dy, resp)
        # ... and more detail than W can resolve (T's resolution, no lens blur).
        lap = lambda img: float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var())  # noqa: E731
        assert lap(ideal) > 2 * lap(crop), cap.name
        n += 1
    assert n >= 2


def test_the_true_flow_carries_the_ideal_onto_the_reference(sim_session_template):
    # The ideal is on the W crop's grid, so the truth's flow from that grid into ref_T must bring
    # ref_T back onto it; with the reference a rig baseline away, not warping must be worse.
    checked = 0
    for cap, t, _ in _captures(sim_session_template):
        ref = cv2.cvtColor(cv2.imread(str(cap / "ref_T.jpg")), cv2.COLOR_BGR2RGB)
        f, ok = t["flow_ref_T"], t["valid_ref_T"] & (t["defocus_sigma_ref_T"] < 1.0)
        if np.hypot(*np.median(f[ok], axis=0)) < 3 or ok.sum() < 1000:
            continue
        h, w = f.shape[:2]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        warped = cv2.remap(ref, gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR)
        ideal = _lowpass_y(t["ideal_T"], 2.0)
        e_flow = np.abs(_centred(_lowpass_y(warped, 2.0), ok) - _centred(ideal, ok))[ok].mean()
        e_none = np.abs(_centred(_lowpass_y(ref, 2.0), ok) - _centred(ideal, ok))[ok].mean()
        assert e_flow < 0.5 * e_none, (cap.name, e_flow, e_none)
        checked += 1
    assert checked >= 1
