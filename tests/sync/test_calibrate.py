"""Calibration-first: how many board captures, both phones' uncertainty, pooled sessions, doctor's row."""

import datetime as dt

import numpy as np
import pytest

from hzsr.capture.doctor import DoctorConfig, calibration_row
from hzsr.capture.rigfile import PhoneEntry
from hzsr.core.errors import CalibrationError
from hzsr.core.records import ClockCalibration, SessionRecord
from hzsr.sim.simsession import SimConfig, simulate_session
from hzsr.sync.calibrate import MIN_CAPTURES, fit_calibration


def _session(tmp_path, name, seed):
    cfg = SimConfig(captures=3, seed=seed, size=(64, 48), images=False, truth=True, link="main=usb2-hub,reference=usb3")
    return SessionRecord.load(simulate_session(tmp_path / name, cfg, progress=False))


def test_too_few_board_captures_says_how_many_more(tmp_path):
    s = _session(tmp_path, "a", 1)
    with pytest.raises(CalibrationError, match=f"needs >= {MIN_CAPTURES}: shoot 3 more"):
        fit_calibration(s, np.full(MIN_CAPTURES - 3, 20.0))


def test_sessions_are_pooled_and_both_phones_carry_the_uncertainty(tmp_path):
    a, b = _session(tmp_path, "a", 1), _session(tmp_path, "b", 2)
    rng = np.random.default_rng(0)
    d = 30.0 + rng.normal(0, 4.0, 20)
    cal = fit_calibration([a, b], d, source="a,b", when_utc="2026-12-06T06:00:00+00:00")
    assert cal["reference"].offset_correction_ns == pytest.approx(-np.median(d) * 1e3, abs=1)
    assert cal["main"].offset_correction_ns == 0
    u = 3 * 1.4826 * np.median(np.abs(d - np.median(d))) * (1 + 1 / np.sqrt(len(d)))
    # Only the difference was measured: each phone carries half, a capture's bound the whole.
    assert cal["main"].uncertainty_ns == cal["reference"].uncertainty_ns > 0
    assert cal["main"].uncertainty_ns + cal["reference"].uncertainty_ns == pytest.approx(u * 1e3, abs=2)
    for role in ("main", "reference"):  # the floor is the least rtt/2 over both sessions
        floor = min(x.rtt_ns / 2 for s in (a, b) for x in s.device(role).clock.samples)
        assert cal[role].base_half_rtt_ns == int(floor) and cal[role].captures == 20 and cal[role].source == "a,b"


def test_doctor_says_whether_and_since_when_a_phone_is_calibrated():
    now = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
    bare = PhoneEntry("A", "main")
    check, serial, status, detail = calibration_row(bare, DoctorConfig(), now)
    assert (check, status) == ("calibrated", "warn") and "hzsr sync calibrate" in detail
    cal = ClockCalibration(0, 200_000, 9_000, "board-1", "2026-12-06T09:00:00+00:00", 20)
    _, _, status, detail = calibration_row(PhoneEntry("A", "main", cal), DoctorConfig(), now)
    assert status == "pass" and "board-1" in detail and "3.0 h ago" in detail and "20 captures" in detail
    old = ClockCalibration(0, 200_000, 9_000, "board-0", "2026-10-01T09:00:00+00:00", 20)
    _, _, status, detail = calibration_row(PhoneEntry("A", "main", old), DoctorConfig(), now)
    assert status == "warn" and "66 days ago" in detail and "re-calibrate" in detail
