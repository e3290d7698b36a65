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


@pytest.mark.parametrize("yaml_text, field", [
    ("rig:\n  wt_baseline_m: [1.0e+308, 0]\n", "rig.wt_baseline_m"),  # overflowed to an infinite parallax (review1)
    ("rig:\n  ref_baseline_m: [8, 8]\n", "rig.ref_baseline_m"),
    ("rig:\n  t_min_focus_m: 0\n", "rig.t_min_focus_m"),  # 1 / 0 in the along-baseline depth range
    ("rig:\n  tt_rotation_max_deg: 90\n", "rig.tt_rotation_max_deg"),  # tan(90 deg)
    ("rig:\n  tt_depth_margin_d: -1\n", "rig.tt_depth_margin_d"),
    # review2: a negative floor let two agreeing captures set the quick check's offset to the px
    ("rig:\n  tt_offset_scatter_frac: -0.5\n", "rig.tt_offset_scatter_frac"),
])
def test_rig_geometry_out_of_range_is_a_one_line_error(tmp_path, yaml_text, field):
    p = tmp_path / "qa.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        QAConfig.load(p)
    msg = str(e.value)
    assert field in msg and "\n" not in msg, msg
    p.write_text("rig:\n  ref_baseline_m: [0.0, 0.09]\n  t_min_focus_m: 0.5\n")  # a real mount and module load
    assert QAConfig.load(p).rig.ref_baseline_m == (0.0, 0.09)
