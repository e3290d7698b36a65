"""QAConfig: defaults, YAML round trip, and a one-line error for unknown keys."""

from __future__ import annotations

import pytest

from hzsr.core.errors import ConfigError
from hzsr.qa.config import QAConfig


def test_yaml_round_trip_and_overrides(tmp_path):
    p = tmp_path / "qa.yaml"
    p.write_text(QAConfig().to_yaml())
    assert QAConfig.load(p) == QAConfig()
    p.write_text("align:\n  flow_size: [256, 192]\nthresholds:\n  fail_psnr_db: 18\n")
    cfg = QAConfig.load(p)
    assert cfg.align.flow_size == (256, 192)
    assert cfg.thresholds.fail_psnr_db == 18.0
    assert cfg.maps == QAConfig().maps


def test_unknown_key_names_the_key(tmp_path):
    p = tmp_path / "qa.yaml"
    p.write_text("maps:\n  occlusion_scal: 2\n")
    with pytest.raises(ConfigError, match=r"maps\.occlusion_scal: unknown key"):
        QAConfig.load(p)
    p.write_text("maps:\n  occlusion_scale: big\n")
    with pytest.raises(ConfigError, match=r"maps\.occlusion_scale: expected number"):
        QAConfig.load(p)
