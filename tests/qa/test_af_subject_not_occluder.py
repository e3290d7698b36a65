"""The near-occluder rule of ``defocused`` does not take the AF subject itself for an occluder
(issue 18, helper issue18t).

lab-1816 c00023 (480x360, a moving scene, ``wrong_depth``): the AF ROI is on the mover, which fills
it; the lens focused on the background behind it. The rule read the mover as a near occluder at
the AF point and the background beyond its edges as the subject it hides, at the focus distance,
and excused the wrong focus (``defocused`` missed). A plane that fills the AF ROI with its centroid
inside it is the subject the ROI was put on; a foreground reaching in from one side, or one that
leaves the subject showing within the ROI, or reaches the view's edge, is still an occluder.
"""

from __future__ import annotations

import numpy as np

from hzsr.qa.capture_qa import _calibrated_departure, hidden_plane_departure
from hzsr.qa.config import QAConfig

H, W = 120, 160
ROI = (64, 48, 96, 72)  # x0, y0, x1, y1: the whole AF ROI on the flow grid
CENTRE = (74, 56, 86, 64)  # its central third
TOL = QAConfig().thresholds.focus_behind_tol_d


def _hidden(dep: np.ndarray, roi=ROI) -> float | None:
    th = QAConfig().thresholds
    return hidden_plane_departure(dep, np.ones(dep.shape, bool), CENTRE, float(dep[60, 80]), TOL,
                                  ring_px=ROI[3] - ROI[1], min_area_roi=th.focus_hidden_min_area_roi,
                                  step_band_roi=th.focus_hidden_step_band_roi, roi=roi)


def test_a_subject_that_fills_the_af_roi_hides_no_plane():
    """The mover (0.30 D in front of the focus distance) fills the ROI and beyond, centred on it;
    the background at the focus distance lies beyond its edges: no occluder, no hidden plane, and
    the departure graded is the mover's (fails). The ninth pass's rule (``roi`` None) excused it."""
    dep = np.full((H, W), 0.0, np.float32)
    dep[30:90, 40:120] = 0.30
    assert _hidden(dep) is None
    old = _hidden(dep, roi=None)
    assert old is not None and abs(old) < TOL
    row = {"subject_depth_departure_d": 0.30}
    th = QAConfig().thresholds
    assert _calibrated_departure({**row, "af_hidden_plane_departure_d": old}, 0.0, th) == (old, True)
    assert _calibrated_departure(row, 0.0, th) == (0.30, False)


def test_a_foreground_reaching_in_from_one_side_is_still_an_occluder():
    """A portrait's foreground (0.8 D in front) covers the whole ROI, its bulk a whole ROI off to the
    left; and one that covers the ROI's centre but leaves the subject showing in the ROI: both
    hide the subject at the focus distance."""
    dep = np.full((H, W), 0.0, np.float32)
    dep[:, :100] = 0.8
    got = _hidden(dep)
    assert got is not None and abs(got) < TOL
    dep = np.full((H, W), 0.0, np.float32)
    dep[40:80, 70:90] = 0.8  # the walker in front of the subject, narrower than the ROI
    got = _hidden(dep)
    assert got is not None and abs(got) < TOL
    # Filling the ROI, centred on it, but reaching the view's edge (lab-1816 c00005, a portrait's
    # foreground): an occluder still.
    dep = np.full((H, W), 0.0, np.float32)
    dep[20:, 60:100] = 0.8
    got = _hidden(dep)
    assert got is not None and abs(got) < TOL

