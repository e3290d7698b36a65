"""The demo end to end at reduced size: every stage's outputs exist and agree; no leftovers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hzsr.capture.adb_server import pid_alive
from hzsr.demo import Demo, DemoConfig
from tests.signals import ctrl_c_reaches_child

pytestmark = pytest.mark.adb


def _rig_pids(rig_yaml: Path) -> list[int]:
    doc = yaml.safe_load(rig_yaml.read_text())
    v = doc.get("virtual") or {}
    return [int(p) for p in (v.get("pid"), v.get("adb_server_pid")) if p]


def _interrupt_after_first_capture(out: Path) -> list[int]:
    """Start ``python -m hzsr.demo`` and SIGINT it as soon as its first capture lands (an event,
    not a timer); return the rig's PIDs, which must all be gone once the demo has exited."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hzsr.demo", "--out", str(out), "--captures", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=ctrl_c_reaches_child)
    pids: list[int] = []
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            rig_yaml = out / "rig" / "rig.yaml"
            if not pids and rig_yaml.exists():
                try:
                    pids = _rig_pids(rig_yaml)
                except (yaml.YAMLError, TypeError, AttributeError, ValueError):
                    pass
            caps = out / "session" / "captures"
            if pids and caps.is_dir() and any(caps.iterdir()):
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.05)
        else:
            pytest.fail("the demo never reached its first capture")
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, output[-3000:]
    assert "the rig was stopped" in output
    return pids


# 50 s on 2 cores: in `make test-slow`; the default run keeps the Ctrl-C-at-every-stage tests below.
@pytest.mark.slow
def test_demo_interrupted_then_rerun_every_stage_agrees(tmp_path):
    out = tmp_path / "demo"
    # Ctrl-C mid-capture stops the rig: no adb server or virtual phone is left running.
    pids = _interrupt_after_first_capture(out)
    assert pids and not any(pid_alive(p) for p in pids)
    assert not (out / "rig" / "rig.yaml").exists()

    # Rerunning into the same folder starts afresh and runs every stage.
    cfg = DemoConfig(out=out, captures=8, size=(320, 240), train_steps=4, train_patch=48, examples=1,
                     bad_shots={(1, 1): "rig_bump"})
    demo = Demo(cfg)
    seen_pids: list[int] = []
    orig = demo.doctor

    def doctor_and_note_pids():
        seen_pids.extend(_rig_pids(demo.rig_yaml))
        orig()

    demo.doctor = doctor_and_note_pids
    assert demo.run() == 0

    # The rig is gone: its processes ended and rig.yaml removed.
    assert seen_pids and not any(pid_alive(p) for p in seen_pids)
    assert not demo.rig_yaml.exists()

    caps = sorted(p.name for p in (out / "session" / "captures").iterdir())
    assert len(caps) == 8
    qa = pd.read_csv(out / "session" / "qa" / "qa.csv")
    assert sorted(qa["capture_id"]) == caps
    # The bumped shot is found by QA (from the images alone) and kept out of the data set.
    manifest = pd.read_csv(out / "dataset" / "manifest.csv")
    kept = set(qa.loc[qa["verdict"] != "fail", "capture_id"])
    assert set(manifest["source_capture_id"]) == kept  # the manifest counts match the QA verdicts
    assert "c00003" not in kept  # the bumped shot
    sync = json.loads((out / "session" / "sync" / "summary.json").read_text())
    assert sync["captures"] == 8 and sum(sync["verdicts"].values()) == 8
    splits = pd.read_csv(out / "dataset" / "splits.csv")
    assert set(splits["capture_id"]) == set(manifest["capture_id"])
    assert splits.groupby("group")["split"].nunique().max() == 1  # no scene in two splits
    assert set(splits["split"]) == {"train", "val", "test"}

    log = pd.read_csv(out / "train" / "log.csv")
    assert len(log) >= 1
    metrics = pd.read_csv(out / "eval" / "metrics.csv")
    for method in ("bicubic", "warped_ref", "fusion", "full"):  # the eval table has all four methods
        assert metrics[f"psnr_{method}"].notna().all() and metrics[f"ssim_{method}"].notna().all()
    assert set(metrics["capture_id"]) == set(splits.loc[splits["split"] == "test", "capture_id"])
    infer_dirs = [d for d in (out / "infer").iterdir() if d.is_dir()]
    assert infer_dirs and (infer_dirs[0] / "output.png").is_file()

    page = (out / "report.html").read_text()
    for heading in ("Rig and clock sync", "Sync", "Quality (QA)", "Data set", "Training", "Evaluation",
                    "Examples"):
        assert heading in page
    assert "did not run" not in page  # every stage ran and the report found its outputs
    assert page.count("data:image/png;base64,") >= 10
    _check_in_browser(out / "report.html", tmp_path, qa_rows=8)


def _check_in_browser(report: Path, tmp_path: Path, qa_rows: int) -> None:
    """The page in headless Chromium: no console errors, its script ran, and a screenshot shows the
    tables with coloured verdict cells and the plots. Skipped (saying why) without chromium."""
    import cv2
    import numpy as np

    from tests.qa.test_report_browser import CHROMIUM, _chromium, console_errors

    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium; .ci/run installs it)")
    r = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert r.returncode == 0 and console_errors(r.stderr) == [], r.stderr[-2000:]
    assert f'data-ready="{qa_rows}"' in r.stdout  # the script ran and found the QA rows
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1300,2600", "--hide-scrollbars", report.as_uri())
    img = cv2.imread(str(shot))[..., ::-1].astype(int)

    def share(rgb, tol=6):
        return float((np.abs(img - np.array(rgb)).max(-1) <= tol).mean())

    assert share((0xF3, 0xF3, 0xF3)) > 0.002  # table header rows
    assert share((0xD9, 0xF2, 0xD9)) + share((0xF8, 0xD0, 0xD0)) + share((0xFF, 0xF2, 0xCC)) > 0.0005  # verdicts
    assert share((0x1F, 0x77, 0xB4), 20) > 0.0002  # matplotlib's first colour: the sync plots' points and lines


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    from hzsr.cli import main

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("do not delete")
    assert main(["demo", "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine" / "thesis.tex").exists()


STAGES = ["rig up", "rig doctor", "capture", "validate, sync check, qa check", "rig down", "pack and split",
          "train", "eval", "infer", "report"]


@pytest.mark.parametrize("event", ["start-up", *STAGES, "rig down twice"])
def test_ctrl_c_at_every_stage_boundary_exits_130_and_stops_the_rig(tmp_path, event):
    """SIGINT at the start of each stage (and while start-up imports every stage) exits 130 and
    leaves no rig process; a second Ctrl-C during rig down waits until the rig is down."""
    out = tmp_path / "demo"
    real_rig = event in ("rig doctor", "capture", "validate, sync check, qa check", "rig down", "rig down twice")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DRIVER_REAL_RIG": "1" if real_rig else "0"}
    driver = Path(__file__).with_name("demo_interrupt_driver.py")
    try:
        r = subprocess.run([sys.executable, str(driver), event, str(out)], capture_output=True, text=True, env=env,
                           timeout=120, preexec_fn=ctrl_c_reaches_child)
    finally:  # whatever the verdict, leave no rig behind for the next test
        if (out / "rig" / "rig.yaml").exists():
            subprocess.run([sys.executable, "-m", "hzsr.cli", "rig", "down", "--rig", str(out / "rig" / "rig.yaml")],
                           capture_output=True, timeout=60)
    assert r.returncode == 130, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "driver: SIGINT at" in r.stdout and "interrupted" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    if real_rig:
        assert "=== rig down" in r.stdout and "rig down: stopped pid" in r.stdout, r.stdout[-2000:]
        assert not (out / "rig" / "rig.yaml").exists()
        # Every process rig up started (the rig, its adb server) is gone.
        pids = [int(x) for x in re.search(r"driver: rig pids (\d+) (\d+)", r.stdout).groups()]
        assert not any(pid_alive(p) for p in pids), pids
