"""Geometry without metadata (issue 20, item 2): a real W/T pair is fused, not returned as bicubic.

The pair is cut from a real photograph (matplotlib's ``grace_hopper.jpg``, which no simulated
scene uses): W is the whole frame at half resolution, T an off-centre half of it at the same
pixel count (a 2x phone pair, principal points 70 and 50 W px off centre). The truth is known:
T's field of view of the original photograph at T's resolution.
"""

import json

import cv2
import matplotlib.cbook as cbook
import numpy as np
import pytest
from PIL import Image

from hzsr.baseline_model.geometry_source import resolve_geometry
from hzsr.cli import main
from hzsr.qa.pair_geometry import estimate_similarity, exif_focal_35mm

X0, Y0 = 140, 100  # T's corner in the original photograph's pixels


@pytest.fixture(scope="module")
def real_pair(tmp_path_factory):
    img = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    h0, w0 = img.shape[:2]
    w = cv2.resize(img, (w0 // 2, h0 // 2), interpolation=cv2.INTER_AREA)
    t = cv2.resize(img[Y0:Y0 + h0 // 2, X0:X0 + w0 // 2], (w0 // 2, h0 // 2), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(3)
    # Each camera's own sensor noise, so the reference is not the truth itself.
    truth = t.copy()
    t = np.clip(t + rng.normal(0, 2.0, t.shape), 0, 255).astype(np.uint8)
    w = np.clip(w + rng.normal(0, 2.0, w.shape), 0, 255).astype(np.uint8)
    d = tmp_path_factory.mktemp("pair")
    for name, arr in (("W.png", w), ("T.png", t), ("truth.png", truth)):
        cv2.imwrite(str(d / name), cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    return d, w, t, truth


def _psnr_y(a, b) -> float:
    ya = cv2.cvtColor(a, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float64)
    yb = cv2.cvtColor(b, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float64)
    return float(10 * np.log10(255.0**2 / np.mean((ya - yb) ** 2)))


def test_the_similarity_is_estimated_from_the_images(real_pair):
    _, w, t, _ = real_pair
    est = estimate_similarity(w, t)
    assert est is not None and est.inliers >= 12
    assert est.scale == pytest.approx(0.5, rel=0.01)
    assert (est.tx, est.ty) == pytest.approx((X0 / 2, Y0 / 2), abs=1.5)


def _infer(d, tmp_path, *extra):
    out = tmp_path / "o.png"
    assert main(["model", "infer", str(d / "W.png"), "--ref", str(d / "T.png"), "--out", str(out),
                 "--save-maps", str(tmp_path / "maps"), *extra]) == 0
    info = json.loads((tmp_path / "o.png.json").read_text())
    read = lambda n: cv2.cvtColor(cv2.imread(str(tmp_path / "maps" / f"{n}.png")), cv2.COLOR_BGR2RGB)  # noqa: E731
    return read("final"), read("source_bicubic"), info


def test_a_real_pair_without_metadata_is_fused(real_pair, tmp_path):
    d, _, _, truth = real_pair
    final, bicubic, info = _infer(d, tmp_path)
    assert info["geometry"]["source"] == "estimated" and info["focal_ratio"] == pytest.approx(2.0, rel=0.02)
    assert info["used_reference"]
    # Both on T's field of view at T's resolution (the pipeline's I_src grid): score against the truth.
    assert final.shape == truth.shape
    c = (slice(8, -8), slice(8, -8))
    gain = _psnr_y(final[c], truth[c]) - _psnr_y(bicubic[c], truth[c])
    print(f"gain over bicubic {gain:+.2f} dB")
    assert gain >= 2.0, gain


def test_the_old_fixed_ratio_loses_the_reference(real_pair, tmp_path):
    # What happened before: a focal ratio of 5 and centred points frame the wrong part of W.
    d, _, _, _ = real_pair
    _, _, info = _infer(d, tmp_path, "--focal-ratio", "5")
    assert info["geometry"]["source"] == "--focal-ratio" and not info["used_reference"]


def test_exif_35mm_focal_lengths_give_the_ratio(real_pair, tmp_path):
    d, w, t, _ = real_pair
    for name, arr, f35 in (("W.jpg", w, 26), ("T.jpg", t, 52)):
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0xA405] = f35
        Image.fromarray(arr).save(tmp_path / name, quality=95, exif=exif)
    assert exif_focal_35mm(tmp_path / "W.jpg") == 26 and exif_focal_35mm(tmp_path / "T.jpg") == 52
    assert exif_focal_35mm(d / "W.png") is None
    out = tmp_path / "o.png"
    assert main(["model", "infer", str(tmp_path / "W.jpg"), "--ref", str(tmp_path / "T.jpg"), "--out", str(out)]) == 0
    info = json.loads((tmp_path / "o.png.json").read_text())
    assert info["geometry"]["source"] == "exif" and info["focal_ratio"] == pytest.approx(2.0, rel=1e-6)
    assert info["used_reference"]


def test_unrelated_images_fall_back_with_a_warning(real_pair):
    _, w, _, _ = real_pair
    noise = np.random.default_rng(0).integers(0, 256, w.shape, dtype=np.uint8)
    g = resolve_geometry(None, w, noise)
    assert g.source == "assumed" and any("no trustworthy estimate" in m for m in g.warnings)


def test_a_focal_ratio_out_of_range_is_one_line(real_pair, tmp_path, capsys):
    d, _, _, _ = real_pair
    assert main(["model", "infer", str(d / "W.png"), "--ref", str(d / "T.png"), "--out", str(tmp_path / "o.png"),
                 "--focal-ratio", "0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--focal-ratio" in err
