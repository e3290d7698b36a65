"""The near-occluder rule of ``defocused`` grades the plane the occluder hides: the nearest plane
behind it at its edge, not the median of every pixel behind it (issue 18, helper issue18y).

lab-1819 c00008 (480x360, a clean moving scene): a walker stands at the AF point in front of the
mover the lens focused on; the mover shows around the walker and the background beyond the mover.
Within one AF ROI of the walker's edge the background outnumbered the mover (32429 against 11133
pixels), so the median put the hidden plane at -0.16 D from the focus distance, just beyond
``focus_behind_tol_d`` (0.15), and the walker's 0.35 D failed ``defocused`` on a clean capture.
"""

from __future__ import annotations

import numpy as np

from hzsr.qa.capture_qa import _calibrated_departure, hidden_plane_departure, nearest_plane_departure
from hzsr.qa.config import QAConfig

H, W = 120, 160
ROI = (64, 48, 96, 72)  # x0, y0, x1, y1: the whole AF ROI on the flow grid
CENTRE = (74, 56, 86, 64)  # its central third
TH = QAConfig().thresholds
TOL = TH.focus_behind_tol_d


def _scene(walker: float, mover: float, background: float) -> np.ndarray:
    """A walker narrower than the AF ROI at its centre, the mover showing in a band around it and
    the background beyond: each plane's departure from the focus distance (D)."""
    dep = np.full((H, W), background, np.float32)
    dep[36:84, 62:98] = mover
    dep[44:76, 72:88] = walker
    return dep


def _hidden(dep: np.ndarray) -> float | None:
    return hidden_plane_departure(dep, np.ones(dep.shape, bool), CENTRE, float(dep[60, 80]), TOL,
                                  ring_px=ROI[3] - ROI[1], min_area_roi=TH.focus_hidden_min_area_roi,
                                  step_band_roi=TH.focus_hidden_step_band_roi, roi=ROI)


def test_a_walker_before_the_focused_mover_is_excused():
    """The mover at the focus distance, the background 0.17 D behind it: the hidden plane is the
    mover, and the walker's 0.35 D is excused (the median of the ring read the background)."""
    dep = _scene(0.35, 0.0, -0.17)
    ring = np.zeros(dep.shape, bool)  # sanity: the background outnumbers the mover near the walker
    ring[20:100, 48:112] = True
    assert (ring & (dep == -0.17)).sum() > 2 * (ring & (dep == 0.0)).sum()
    got = _hidden(dep)
    assert got is not None and abs(got) < 0.02
    row = {"subject_depth_departure_d": 0.35, "af_hidden_plane_departure_d": got}
    assert _calibrated_departure(row, 0.0, TH) == (got, True)


def test_the_median_rule_read_the_background():
    """The same scene with the switch off (the median of the ring): the background, not excused."""
    dep = _scene(0.35, 0.0, -0.17)
    got = hidden_plane_departure(dep, np.ones(dep.shape, bool), CENTRE, 0.35, TOL, ring_px=ROI[3] - ROI[1],
                                 min_area_roi=TH.focus_hidden_min_area_roi,
                                 step_band_roi=TH.focus_hidden_step_band_roi, roi=ROI, nearest_plane=False)
    assert got is not None and abs(got + 0.17) < 0.02
    assert _calibrated_departure({"subject_depth_departure_d": 0.35, "af_hidden_plane_departure_d": got}, 0.0,
                                 TH)[1] is False


def test_a_focus_on_the_background_behind_the_mover_is_not_excused():
    """The lens on the background behind the walker and the mover it hides (lab-1804 c00023's
    kind): the hidden plane is the mover, 0.2 D in front of the focus distance; no excuse, the
    walker's departure is graded. The median of the ring read the background (0.0 D) and excused it."""
    dep = _scene(0.5, 0.2, 0.0)
    got = _hidden(dep)
    assert got is not None and abs(got - 0.2) < 0.02
    assert _calibrated_departure({"subject_depth_departure_d": 0.5, "af_hidden_plane_departure_d": got}, 0.0,
                                 TH) == (0.5, False)


def test_nearest_plane_ignores_a_smoothed_step():
    """DIS smooths a step into a thin spread of values between the planes: no plane of its own."""
    rng = np.random.default_rng(0)
    far = rng.normal(-0.3, 0.01, 3000)
    near = rng.normal(-0.05, 0.01, 1500)
    step = np.linspace(-0.05, 0.25, 300)  # the smoothed edge, nearer than both
    v = np.concatenate([far, near, step])
    assert abs(nearest_plane_departure(v, TOL, 500) + 0.05) < 0.01
    assert abs(nearest_plane_departure(far, TOL, 500) + 0.3) < 0.01  # one plane: itself
    assert abs(nearest_plane_departure(v[:10], TOL, 500) - np.median(v[:10])) < 1e-12  # too few: the median
