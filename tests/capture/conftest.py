import pytest

from hzsr.vphone.virtual_rig import VirtualRig, VirtualRigConfig


@pytest.fixture
def rig(tmp_path):
    """A small virtual rig (160x120 frames) of its own for each test."""
    r = VirtualRig(tmp_path / "rig", VirtualRigConfig(size=(160, 120))).start()
    yield r
    r.stop()
