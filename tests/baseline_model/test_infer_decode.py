"""``infer.read_rgb`` decodes straight to RGB (issue19x): the same pixels as BGR then converted."""

import cv2
import numpy as np
import pytest

from hzsr.baseline_model import infer as infer_mod


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_read_rgb_gives_the_converted_bgr_pixels(tmp_path, ext):
    rng = np.random.default_rng(0)
    bgr = cv2.GaussianBlur(rng.integers(0, 256, (60, 80, 3), np.uint8), (0, 0), 1.5)
    path = tmp_path / f"img{ext}"
    cv2.imwrite(str(path), bgr)
    want = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    got = infer_mod.read_rgb(path, "SOURCE")
    assert got.dtype == np.uint8 and got.shape == (60, 80, 3)
    assert np.array_equal(got, want)


def test_read_rgb_without_the_rgb_flag_converts(tmp_path, monkeypatch):
    """OpenCV older than 4.10 has no IMREAD_COLOR_RGB: BGR is decoded and converted instead."""
    path = tmp_path / "img.png"
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 200  # blue in BGR
    cv2.imwrite(str(path), bgr)
    monkeypatch.setattr(infer_mod, "_IMREAD_RGB", None)
    got = infer_mod.read_rgb(path, "SOURCE")
    assert (got[..., 2] == 200).all() and (got[..., :2] == 0).all()
