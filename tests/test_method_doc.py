"""docs/method.md's table of unpublished values says what the code uses.

Every ``ClassName.field`` = value in the table (and each bare ``field`` = value after it, in the
same cell) must be that dataclass field's default; each number in the pipeline column after
``pipeline_qa_defaults``: must be the blending-map constant the pipeline really uses.
"""

from __future__ import annotations

import ast
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from hzsr.baseline_model import config as model_config
from hzsr.qa import config as qa_config

ROOT = Path(__file__).resolve().parents[1]
CLASSES: dict[str, type] = {c.__name__: c for c in (
    qa_config.AlignConfig, qa_config.MapsConfig, qa_config.Thresholds, model_config.UNetConfig,
    model_config.LossConfig, model_config.DataConfig, model_config.OptimConfig, model_config.PipelineConfig)}
TOKEN = re.compile(r"`(?:(\w+)\.)?(\w+)`(?:\s*=\s*(\([^)]*\)|\[[^\]]*\]|`[^`]*`|[-\w.+]+)|:)?")


def _table_rows() -> list[list[str]]:
    text = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    section = re.search(r"^## Values the paper does not publish\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "docs/method.md has no 'Values the paper does not publish' section"
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in section.group(1).splitlines() if line.startswith("| ") and not line.startswith("| parameter")]
    assert len(rows) > 15
    return rows


def _value(text: str) -> Any:
    if text.startswith("`"):
        return text.strip("`")
    if text in ("true", "false"):
        return text == "true"
    return ast.literal_eval(text)


def _claims() -> list[tuple[str, str, Any]]:
    out = []
    for row in _table_rows():
        for cell in row[2:]:
            cls = None
            for m in TOKEN.finditer(cell):
                prefix, name, value = m.groups()
                if prefix in CLASSES:
                    cls = prefix
                elif prefix is None and name in CLASSES:
                    cls = name
                    continue
                if value is not None and cls is not None:
                    out.append((cls, name, _value(value)))
    return out


CLAIMS = _claims()


def test_the_table_names_many_fields():
    assert len(CLAIMS) > 30


@pytest.mark.parametrize("cls,name,value", CLAIMS, ids=[f"{c}.{n}" for c, n, _ in CLAIMS])
def test_documented_default_is_the_code_default(cls, name, value):
    known = {f.name for f in fields(CLASSES[cls])}
    assert name in known, f"{cls} has no field {name!r}"
    actual = getattr(CLASSES[cls](), name)
    if isinstance(actual, tuple | list):
        assert list(actual) == list(value)
    else:
        assert actual == value


def test_pipeline_constants():
    maps = model_config.pipeline_qa_defaults().maps
    checked = 0
    for row in _table_rows():
        qa_cell, pipe_cell = row[2], row[3]
        m = re.match(r"`pipeline_qa_defaults`: ([^(*]+)", pipe_cell)
        if not m:
            continue
        numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?(?:e-?\d+)?", m.group(1))]
        names = [n for p, n, _ in TOKEN.findall(qa_cell) if p in ("MapsConfig", "")
                 and n in {f.name for f in fields(qa_config.MapsConfig)}]
        assert len(names) >= len(numbers), row
        for name, number in zip(names[: len(numbers)], numbers, strict=True):  # gamma_ref etc. are qa-only
            assert getattr(maps, name) == pytest.approx(number), (name, row[0])
            checked += 1
    assert checked >= 5
