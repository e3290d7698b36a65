"""T vs T on a repeating texture: the rig's parallax breaks a tie between periods (align.prefer_expected)."""

from __future__ import annotations

import cv2
import numpy as np

from hzsr.qa.align import GlobalShift, prefer_expected, shift_image

PERIOD = 96  # px: the texture repeats exactly every PERIOD in x and y


def _periodic(h: int, w: int, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).uniform(0, 255, (PERIOD, PERIOD)).astype(np.float32)
    tile = cv2.GaussianBlur(noise, (0, 0), 1.5)
    reps = (h // PERIOD + 2, w // PERIOD + 2)
    return np.tile(tile, reps)[:h, :w]


def _pair(base: np.ndarray, d: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(src, ref) with ``ref(x + d) = src(x)``: ref is src seen from a camera displaced by ``d``."""
    h, w = 360, 480
    src = base[40:40 + h, 60:60 + w]
    ref = shift_image(base, -d[0], -d[1])[40:40 + h, 60:60 + w]
    return np.clip(src, 0, 255).astype(np.uint8), np.clip(ref, 0, 255).astype(np.uint8)


def test_a_wrong_period_gives_way_to_the_rigs_parallax() -> None:
    expected = (-4.0, -50.0)
    src, ref = _pair(_periodic(600, 700), (-6.0, -47.0))  # the true shift: near the parallax
    wrong = GlobalShift(-6.0 + PERIOD, -47.0 + PERIOD, 139, 1000)  # a period away: registers as well
    got, preferred = prefer_expected(src, ref, wrong, expected)
    assert preferred
    assert abs(got.dx - -6.0) < 1.5 and abs(got.dy - -47.0) < 1.5


def test_a_bumped_rig_keeps_the_shift_it_found() -> None:
    rng = np.random.default_rng(3)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (600, 700)).astype(np.float32), (0, 0), 1.5)  # no period
    src, ref = _pair(base, (70.0, 20.0))  # the rig moved: far from the parallax
    found = GlobalShift(70.0, 20.0, 300, 1000)
    got, preferred = prefer_expected(src, ref, found, (-4.0, -50.0))
    assert not preferred
    assert (got.dx, got.dy) == (70.0, 20.0)


def test_a_shift_near_the_parallax_is_kept_as_found() -> None:
    src, ref = _pair(_periodic(600, 700), (-6.0, -47.0))
    found = GlobalShift(-6.0, -47.0, 300, 1000)
    got, preferred = prefer_expected(src, ref, found, (-4.0, -50.0))
    assert not preferred and got is found
