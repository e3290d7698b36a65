"""Size before decode (``hzsr.core.imageio``) where qa takes images in, and the inlier gate."""

from __future__ import annotations

import struct
import time

import cv2
import numpy as np
import pandas as pd
import pytest

from hzsr.cli import main
from hzsr.core.errors import ImageRefused, ImageTooLarge
from hzsr.core.imageio import MAX_PIXELS, check_image_size, image_header
from hzsr.qa.align import GlobalShift, gate_shift
from hzsr.qa.check import run_check
from hzsr.qa.config import QAConfig
from hzsr.qa.register import register_pair


def bomb_jpeg(path, width: int = 20000, height: int = 20000, n_bytes: int = 752) -> bytes:
    """A valid tiny JPEG whose SOF0 declares ``width x height``, padded to ``n_bytes`` with a COM
    segment: what a decoder would try to allocate 1.2 GB for."""
    ok, buf = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])
    data = bytearray(buf.tobytes())
    i = data.find(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    pad = n_bytes - len(data) - 4
    assert pad >= 0
    data[2:2] = b"\xff\xfe" + struct.pack(">H", pad + 2) + b"\0" * pad
    path.write_bytes(bytes(data))
    assert len(data) == n_bytes
    return bytes(data)


def test_header_sizes_of_jpeg_png_bmp(tmp_path):
    img = np.zeros((30, 40, 3), np.uint8)
    for ext in (".jpg", ".png", ".bmp"):
        cv2.imwrite(str(tmp_path / f"a{ext}"), img)
        h = image_header(tmp_path / f"a{ext}")
        assert (h.width, h.height) == (40, 30), ext
    # EXIF-like APP1 segments before the frame header are walked over.
    data = (tmp_path / "a.jpg").read_bytes()
    app1 = b"\xff\xe1" + struct.pack(">H", 5002) + b"\x01" * 5000
    (tmp_path / "b.jpg").write_bytes(data[:2] + app1 + data[2:])
    assert image_header(tmp_path / "b.jpg").pixels == 1200
    (tmp_path / "c.jpg").write_bytes(data[:40])  # cut before SOF
    with pytest.raises(ImageRefused, match="c.jpg: JPEG header without a frame size"):
        image_header(tmp_path / "c.jpg")


def test_a_752_byte_jpeg_declaring_20000x20000_is_refused_from_its_header(tmp_path):
    p = tmp_path / "bomb.jpg"
    bomb_jpeg(p)
    t0 = time.perf_counter()
    with pytest.raises(ImageTooLarge) as exc:
        check_image_size(p, field="SRC")
    took = time.perf_counter() - t0
    line = exc.value.one_line()
    assert "\n" not in line and line.startswith(f"{p}: SRC: JPEG header declares 20000x20000 = 400 MP")
    assert str(MAX_PIXELS // 1_000_000) in line and exc.value.exit_code == 2
    assert took < 1.0  # a header read, not a decode (decoding it took 10-23 s)


def test_qa_align_gives_one_line_on_the_bomb(tmp_path, capsys):
    bomb_jpeg(tmp_path / "bomb.jpg")
    cv2.imwrite(str(tmp_path / "ref.jpg"), np.zeros((64, 64, 3), np.uint8))
    rc = main(["qa", "align", str(tmp_path / "bomb.jpg"), str(tmp_path / "ref.jpg"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "bomb.jpg: SRC: JPEG header declares 20000x20000" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_qa_check_makes_the_bomb_a_reason_and_goes_on(sim_session):
    caps = sorted((sim_session / "captures").iterdir())
    bomb_jpeg(caps[0] / "main_T.jpg")
    t0 = time.perf_counter()
    run_check(sim_session, QAConfig(), progress=False, report=False, maps=False)
    assert time.perf_counter() - t0 < 120  # never the 10-23 s decode per frame; generous under load
    df = pd.read_csv(sim_session / "qa" / "qa.csv").set_index("capture_id")
    row = df.loc[caps[0].name]
    assert row["verdict"] == "fail" and "image_too_large" in row["codes"], row["reasons"]
    assert "main_T.jpg: JPEG header declares 20000x20000" in row["reasons"]
    assert len(df) == len(caps)


def test_a_header_size_that_disagrees_with_capture_json_is_caught_before_decoding(sim_session):
    caps = sorted((sim_session / "captures").iterdir())
    p = caps[1] / "ref_T.jpg"
    data = bytearray(p.read_bytes())
    i = data.find(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", 3000, 4000)  # 12 MP declared, 320x240 in capture.json
    p.write_bytes(bytes(data))
    run_check(sim_session, QAConfig(), progress=False, report=False, maps=False)
    row = pd.read_csv(sim_session / "qa" / "qa.csv").set_index("capture_id").loc[caps[1].name]
    assert "size_mismatch" in row["codes"] and "header declares 4000x3000" in row["reasons"]


def test_the_inlier_gate_refuses_a_shift_from_too_few_inliers():
    cfg = QAConfig()
    few = GlobalShift(37.0, -12.0, cfg.align.min_inliers - 1, 40)
    used, ok = gate_shift(few, cfg)
    assert not ok and (used.dx, used.dy) == (0.0, 0.0) and used.inliers == few.inliers
    enough = GlobalShift(37.0, -12.0, cfg.align.min_inliers, 40)
    assert gate_shift(enough, cfg) == (enough, True)
    # register_pair: a one-inlier shift handed to it is not applied; the flow starts from zero.
    rng = np.random.default_rng(0)
    src = cv2.GaussianBlur((rng.random((240, 320)) * 255).astype(np.uint8), (0, 0), 1.5)
    ref = np.roll(src, 3, axis=1)
    r = register_pair(src, ref, cfg, shift=GlobalShift(80.0, 40.0, 1, 5))
    assert r.stats["shift_used"] == 0.0 and r.stats["found_shift_px"] == pytest.approx(np.hypot(80, 40))
    assert np.median(r.flow_fwd[60:180, 60:260, 0]) == pytest.approx(3.0, abs=0.5)  # DIS found the truth
    r2 = register_pair(src, ref, cfg)
    assert r2.stats["shift_used"] == 1.0
