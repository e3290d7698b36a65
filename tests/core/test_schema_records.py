import json

import pytest

from hzsr.core.config import load_config
from hzsr.core.errors import ConfigError, SessionFormatError
from hzsr.core.records import CaptureRecord, Intrinsics, SessionRecord
from hzsr.core.schema import parse_dataclass, to_plain


def test_parse_reports_unknown_missing_and_mistyped_fields():
    obj, problems = parse_dataclass(Intrinsics, {"fx": 1, "fy": "a", "cx": 2, "zz": 1})
    assert obj is None
    assert {(p.field, p.message) for p in problems} == {
        ("zz", "unknown key"),
        ("fy", "expected number, got str"),
        ("cy", "missing required field"),
    }


def test_bool_is_not_a_number_and_int_is_a_float():
    _, problems = parse_dataclass(Intrinsics, {"fx": True, "fy": 1, "cx": 0, "cy": 0})
    assert [p.field for p in problems] == ["fx"]
    obj, problems = parse_dataclass(Intrinsics, {"fx": 3, "fy": 1, "cx": 0, "cy": 0})
    assert problems == [] and isinstance(obj.fx, float)


def test_capture_roundtrip(sim_session):
    cdir = sim_session / "captures" / "c00000"
    rec = CaptureRecord.load(cdir)
    assert {f.slot for f in rec.frames} == {"main_W", "main_T", "ref_T"}
    rec.notes = "re-saved"
    rec.save(cdir)
    again = CaptureRecord.load(cdir)
    assert to_plain(again) == to_plain(rec)


def test_nested_field_path_named(sim_session):
    path = sim_session / "captures" / "c00001" / "capture.json"
    data = json.loads(path.read_text())
    data["frames"][2]["iso"] = "800"
    path.write_text(json.dumps(data))
    with pytest.raises(SessionFormatError) as ei:
        CaptureRecord.load(path.parent)
    assert ei.value.field == "frames[2].iso"
    assert "capture.json: frames[2].iso: expected integer, got str" in str(ei.value)


def test_session_duplicate_roles_rejected(sim_session):
    path = sim_session / "session.json"
    data = json.loads(path.read_text())
    data["devices"][1]["role"] = "main"
    path.write_text(json.dumps(data))
    with pytest.raises(SessionFormatError, match="devices: two devices with role 'main'"):
        SessionRecord.load(sim_session)


def test_config_unknown_key_named(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        count: int = 3
        name: str = "x"

    p = tmp_path / "c.yaml"
    p.write_text("count: 4\nnmae: y\n")
    with pytest.raises(ConfigError, match=r"c.yaml: nmae: unknown key"):
        load_config(Cfg, p)
    p.write_text("count: four\n")
    with pytest.raises(ConfigError, match=r"count: expected integer, got str"):
        load_config(Cfg, p)
    p.write_text("count: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Cfg, p)
    assert load_config(Cfg, _write(tmp_path / "ok.yaml", "count: 9\n")) == Cfg(count=9)


def _write(p, text):
    p.write_text(text)
    return p
