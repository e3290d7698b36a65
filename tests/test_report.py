"""The demo report's examples (issue 22, item 10): fallback flagged, 1:1 detail, the QA report linked."""

import json
import re
from pathlib import Path

import cv2
import numpy as np

from hzsr.report import DETAIL_PX, ReportInputs, build_report, detail_window


def _png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _example(d: Path, used_reference: bool, rng) -> None:
    h, w = 480, 640
    flat = np.full((h, w, 3), 120, np.uint8)
    textured = flat.copy()
    # The detail the reference brings sits in one place, away from the centre.
    textured[300:460, 40:200] = rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)
    for name, img in (("source_bicubic", flat), ("warped_ref", textured), ("fusion", textured), ("final", textured)):
        _png(d / f"{name}.png", img)
    _png(d / "blend.png", np.full((h // 4, w // 4, 3), 255, np.uint8))
    fallback = ("the reference does not overlap the source (structure correlation 0.05 < 0.4, 3 keypoint inliers): "
                "output is the bicubic W crop")
    warnings = [] if used_reference else [fallback]
    (d / "output.png.json").write_text(json.dumps({"used_reference": used_reference, "warnings": warnings}))


def test_detail_window_finds_the_textured_region():
    img = np.full((480, 640, 3), 90, np.uint8)
    img[300:460, 40:200] = np.random.default_rng(0).integers(0, 256, (160, 160, 3), dtype=np.uint8)
    y0, y1, x0, x1 = detail_window(img)
    assert (y1 - y0, x1 - x0) == (DETAIL_PX, DETAIL_PX)
    # The window overlaps the textured patch by most of the patch.
    oy = max(0, min(y1, 460) - max(y0, 300))
    ox = max(0, min(x1, 200) - max(x0, 40))
    assert oy * ox >= 0.9 * 160 * 160


def test_examples_flag_the_fallback_show_1to1_detail_and_link_the_qa_report(tmp_path):
    rng = np.random.default_rng(1)
    infer = tmp_path / "out" / "infer"
    _example(infer / "c00001", True, rng)
    _example(infer / "c00002", False, rng)
    session = tmp_path / "out" / "session"
    (session / "qa").mkdir(parents=True)
    (session / "qa" / "report.html").write_text("<html>qa</html>")
    page = build_report(ReportInputs(session=session, infer_dir=infer), tmp_path / "out" / "report.html").read_text()

    blocks = dict(re.findall(r"<h3>(c\d+)</h3>(.*?)(?=<h3>|<h2>|$)", page, re.S))
    assert "Bicubic fallback" in blocks["c00002"] and "structure correlation 0.05" in blocks["c00002"]
    assert "Bicubic fallback" not in blocks["c00001"]
    # 1:1 windows: every image of the used capture, at its own pixel size, none for the fallback.
    sizes = re.findall(r'class="one2one"[^>]*width="(\d+)" height="(\d+)"', blocks["c00001"])
    assert len(sizes) == 4 and set(sizes) == {(str(DETAIL_PX), str(DETAIL_PX))}
    assert "one2one" not in blocks["c00002"]
    # The QA link is relative to the report and points at the session's report.
    href = re.search(r'<a id="qa-report" href="([^"]+)"', page).group(1)
    assert not href.startswith(("/", "file:")) and (tmp_path / "out" / href).resolve() == (
        session / "qa" / "report.html").resolve()
