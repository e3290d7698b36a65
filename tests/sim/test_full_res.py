"""Full-resolution (4000x3000) simulation: marked slow, run with ``make test-slow``."""

import pytest

from hzsr.core.records import CaptureRecord
from hzsr.core.validate import validate_session
from hzsr.sim.simsession import SimConfig, simulate_session


@pytest.mark.slow
def test_full_res_session_is_valid(tmp_path):
    d = simulate_session(tmp_path / "full", SimConfig(captures=1, size=(4000, 3000), truth=True), progress=False)
    assert [f for f in validate_session(d) if f.severity == "error"] == []
    rec = CaptureRecord.load(d / "captures" / "c00000")
    assert all((f.width, f.height) == (4000, 3000) for f in rec.frames)
    t = rec.frame("main_T").intrinsics.fx
    assert 15700 < t < 15900  # 15.8 mm at 1.0 um
