"""The UNet's runtime imports OpenVINO without its model converter (``runtime._import_openvino``,
issue 19): no converter, no usage telemetry (a Google Analytics event from a non-daemon thread the
exit waits for), and the converter still imports when something asks for it afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("openvino")

_CHECK = r"""
import json, sys, threading
from hzsr.baseline_model.runtime import _ov_core
core = _ov_core()
out = {"devices": core.available_devices,
       "loaded": sorted(m for m in sys.modules if m.startswith(("openvino.tools", "openvino_telemetry"))),
       "threads": [t.name for t in threading.enumerate() if t is not threading.main_thread()],
       "intel_dir": __import__("os").path.exists(__import__("os").path.expanduser("~/intel"))}
from openvino.tools.ovc import convert_model  # asked for later: imports as usual
out["converter_later"] = callable(convert_model)
print(json.dumps(out))
"""


def test_runtime_imports_openvino_without_converter_or_telemetry(tmp_path):
    # HOME elsewhere: the user's own consent file (if any) must not decide the outcome.
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    r = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "CPU" in out["devices"]
    assert out["loaded"] == [] and out["threads"] == []
    assert out["intel_dir"] is False  # no telemetry stats or client id written
    assert out["converter_later"] is True
