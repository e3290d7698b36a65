"""report.html in headless Chromium: no console errors, the script ran, and a screenshot that
shows the plots and the table. Skips, saying why, where Debian's chromium is not installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import cv2
import numpy as np
import pytest

from hzsr.qa.check import run_check
from hzsr.qa.config import QAConfig

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium; "
                                                         ".ci/run installs it)")


def _chromium(tmp_path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", *args]
    # Chromium's singleton socket dir goes into a folder of our own, removed after the run (in /tmp it
    # was left behind); short, because a Unix socket's path has at most 107 bytes (tmp_path under xdist
    # is longer: "Socket path too long").
    with tempfile.TemporaryDirectory(prefix="hzsr-chromium-") as own_tmp:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "TMPDIR": own_tmp})


def console_errors(stderr: str) -> list[str]:
    """Console messages and uncaught errors Chromium logs for the page."""
    return [ln for ln in stderr.splitlines()
            if re.search(r"CONSOLE|Uncaught|SyntaxError|ReferenceError|TypeError", ln)]


@pytest.fixture
def report(sim_session):
    run_check(sim_session, QAConfig(), progress=False)
    return sim_session / "qa" / "report.html"


def test_report_runs_its_script_without_console_errors(report, tmp_path):
    r = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    assert console_errors(r.stderr) == []
    # The filter script ran on load: it counts the shown rows (the static page says 0).
    m = re.search(r'<span id="shown">(\d+)</span>', r.stdout)
    assert m and int(m.group(1)) == 4, r.stdout[:500]


def test_console_errors_are_caught(report, tmp_path):
    """The check above can fail: a page whose script throws is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text(report.read_text().replace("(function(){", "(function(){ undefinedCall();", 1))
    r = _chromium(tmp_path, "--dump-dom", bad.as_uri())
    assert any("undefinedCall" in ln for ln in console_errors(r.stderr)), r.stderr[-2000:]


def test_screenshot_shows_plots_and_table(report, tmp_path):
    shot = tmp_path / "report.png"
    r = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,1100", "--hide-scrollbars",
                  report.as_uri())
    assert shot.is_file(), r.stderr[-2000:]
    img = cv2.imread(str(shot))[..., ::-1].astype(int)
    assert img.shape[:2] == (1100, 1400)

    def share(rgb, tol=6):
        return float((np.abs(img - np.array(rgb)).max(-1) <= tol).mean())

    assert share((0x5B, 0x8D, 0xEF), 12) > 0.002  # histogram bars of the plots
    assert share((0xF3, 0xF3, 0xF3)) > 0.002  # the table's header row
    verdict_cells = share((0xDF, 0xF5, 0xDF)) + share((0xFF, 0xF3, 0xCD)) + share((0xF8, 0xD7, 0xDA))
    assert verdict_cells > 0.0005  # coloured verdict cells in the rows
    shutil.copy(shot, report.parent / "report_screenshot.png")
