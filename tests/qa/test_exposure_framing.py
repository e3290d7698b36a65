"""``overexposed`` reads the reference T's brightness against main T only where both frame one scene."""
from hzsr.qa.capture_qa import CaptureQA, Verdict, grade_exposure
from hzsr.qa.config import QAConfig


def _q(brightness: float, clipped: float) -> dict:
    return {"brightness": brightness, "clipped_frac": clipped}


def _levels(out: CaptureQA, code: str) -> list[Verdict]:
    return [r.level for r in out.reasons if r.code == code]


# blind lab-1816-knocked c00003's figures: ref_T 0.29 clipped and brighter (log ratio 0.33)
QUALITY = {"main_W": _q(0.379, 0.0), "main_T": _q(0.362, 0.017), "ref_T": _q(0.504, 0.286)}


def test_knocked_reference_brighter_sky_does_not_fail_overexposed():
    th = QAConfig().thresholds
    out = CaptureQA("c00003")
    out.add("fail", "no_overlap", "ref_T vs main_T: no reliable overlap")
    grade_exposure(out, QUALITY, th)
    assert Verdict.FAIL not in _levels(out, "overexposed")
    assert _levels(out, "overexposed") == [Verdict.WARN]  # still said: 0.29 > fail_clipped_frac


def test_bumped_reference_does_not_fail_overexposed():
    out = CaptureQA("c00043")
    out.add("fail", "large_shift", "ref_T vs main_T: rig bumped?")
    grade_exposure(out, {"main_W": _q(0.382, 0.0), "main_T": _q(0.346, 0.007), "ref_T": _q(0.513, 0.322)},
                   QAConfig().thresholds)
    assert Verdict.FAIL not in _levels(out, "overexposed")


def test_reference_framing_the_scene_and_main_overexposure_still_fail():
    th = QAConfig().thresholds
    out = CaptureQA("c00000")  # no geometry fault: the brighter reference is an exposure
    grade_exposure(out, QUALITY, th)
    assert _levels(out, "overexposed") == [Verdict.FAIL]
    out = CaptureQA("c00009")  # a main-phone overexposure that broke the registration still fails
    out.add("fail", "no_overlap", "ref_T vs main_T: no reliable overlap")
    grade_exposure(out, {"main_W": _q(0.786, 0.452), "main_T": _q(0.686, 0.414), "ref_T": _q(0.457, 0.043)}, th)
    assert Verdict.FAIL in _levels(out, "overexposed")
