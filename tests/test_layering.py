"""Imports flow downstream only, and nothing upstream of baseline_model imports torch."""

import subprocess
import sys

import pytest

UPSTREAM = ["hzsr.core", "hzsr.sim", "hzsr.sim.simsession", "hzsr.sim.world", "hzsr.capture", "hzsr.sync.check",
            "hzsr.core.validate", "hzsr.cli"]


@pytest.mark.parametrize("module", UPSTREAM)
def test_no_torch_upstream(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_sim_does_not_import_capture():
    code = ("import sys, hzsr.sim.simsession, hzsr.sim.world, hzsr.sim.rig; "
            "print(sorted(m for m in sys.modules if m.startswith('hzsr.capture')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_capture_does_not_import_downstream_stages():
    code = ("import sys, hzsr.sim.simsession, hzsr.vphone.virtual_rig, hzsr.capture.cli; "
            "print(sorted(m for m in sys.modules if m.startswith(('hzsr.sync', 'hzsr.qa', 'hzsr.dataset', "
            "'hzsr.baseline_model'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
