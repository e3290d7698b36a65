"""``dataset ingest --layout camerafusion`` fills the intrinsics as ``model infer`` finds them (issue 20, item 2).

The pair is cut from a real photograph (matplotlib's ``grace_hopper.jpg``): W the whole frame at
half resolution, T an off-centre half at the same pixel count (2x).
"""

import subprocess
import sys

import cv2
import matplotlib.cbook as cbook
import numpy as np
import pytest
from PIL import Image

from hzsr.dataset.reader import ShardReader

X0, Y0 = 140, 100


def _pair():
    img = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    h0, w0 = img.shape[:2]
    w = cv2.resize(img, (w0 // 2, h0 // 2), interpolation=cv2.INTER_AREA)
    t = cv2.resize(img[Y0:Y0 + h0 // 2, X0:X0 + w0 // 2], (w0 // 2, h0 // 2), interpolation=cv2.INTER_AREA)
    return w, t


@pytest.mark.parametrize("exif", [False, True])
def test_ingest_fills_intrinsics_from_exif_or_the_pixels(tmp_path, exif):
    w, t = _pair()
    cf = tmp_path / "cf"
    for sub, arr, f35 in (("LR/x1", w, 26), ("Ref/x1", t, 52)):
        (cf / "test" / sub).mkdir(parents=True)
        e = Image.Exif()
        if exif:
            e.get_ifd(0x8769)[0xA405] = f35
        Image.fromarray(arr).save(cf / "test" / sub / "a.jpg", quality=95, exif=e)
    # An unrelated pair: nothing to estimate, so the intrinsics stay absent (never invented).
    noise = np.random.default_rng(0).integers(0, 256, w.shape, dtype=np.uint8)
    for sub, arr in (("LR/x1", noise), ("Ref/x1", t)):
        Image.fromarray(arr).save(cf / "test" / sub / "b.jpg", quality=95)
    out = tmp_path / "ds"
    r = subprocess.run([sys.executable, "-m", "hzsr.cli", "dataset", "ingest", str(cf), "--layout", "camerafusion",
                        "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rd = ShardReader(out)
    a = rd.read("cf/test-a").meta
    assert a["frames"]["main_T"]["intrinsics_source"] == ("exif" if exif else "estimated")
    kw, kt = a["frames"]["main_W"]["intrinsics"], a["frames"]["main_T"]["intrinsics"]
    # Both frames are 256 px wide, so fx_T / fx_W is the field-of-view ratio: 2.
    assert kt["fx"] / kw["fx"] == pytest.approx(2.0, rel=0.02)
    if not exif:
        # T's principal point seen from W: c_W = s c_T + t puts T's centre 70, 50 W px off W's.
        assert kw["cx"] - (0.5 * kt["cx"] + X0 / 2) == pytest.approx(0, abs=2)
    b = rd.read("cf/test-b").meta
    assert "intrinsics" not in b["frames"]["main_W"] and "intrinsics_source" not in b["frames"]["main_W"]
    assert "intrinsics unknown" in b["notes"]
    rd.close()
