"""One table of exit codes: the README documents the one in ``core/errors.py``, and the CLI uses it.

Also: every error class is defined in ``core/errors.py`` (one hierarchy, unique names), so a
reader finds them all in one place and no two classes share a name.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hzsr.cli import main
from hzsr.core import errors as E

ROOT = Path(__file__).resolve().parents[1]


def _readme_exit_codes() -> dict[int, str]:
    """The rows of the README's table under the heading ``Exit codes``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^#+ Exit codes\n(.*?)(?=^#|\Z)", text, re.M | re.S)
    assert section, "README.md has no 'Exit codes' section"
    rows: dict[int, str] = {}
    for line in section.group(1).splitlines():
        m = re.fullmatch(r"\| `(\d+)` \| (.+) \|", line.strip())
        if m:
            rows[int(m.group(1))] = m.group(2)
    return rows


def test_readme_table_is_the_code_table():
    assert _readme_exit_codes() == E.EXIT_CODES


def test_constants_are_the_table():
    assert {E.EXIT_OK, E.EXIT_PROBLEMS, E.EXIT_USAGE, E.EXIT_INTERRUPTED} == set(E.EXIT_CODES)


@pytest.mark.parametrize("err,code", [
    (E.ConfigError("must be >= 1", field="--workers"), E.EXIT_USAGE),
    (E.SessionFormatError("file not found", file="s/session.json", unreadable=True), E.EXIT_USAGE),
    (E.SessionFormatError("must be an integer", file="s/session.json", field="rig.x"), E.EXIT_PROBLEMS),
    (E.DatasetError("not a data set: no shards/ folder", file="d"), E.EXIT_PROBLEMS),
    (E.AgentError("a:1", "busy", "capture still in progress", {}), E.EXIT_PROBLEMS),
])
def test_error_exit_codes(err, code):
    assert err.exit_code == code


def test_argparse_usage_errors_use_the_usage_code(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["dataset", "split"])  # a missing positional: argparse's own error
    assert exc.value.code == E.EXIT_USAGE
    assert "usage:" in capsys.readouterr().err


def _exception_classes() -> list[tuple[str, str]]:
    """(file, class name) of every class in hzsr/ whose name says it is an error."""
    out = []
    for path in sorted((ROOT / "hzsr").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and re.search(r"(Error|Lost|NotFound|Failed|Closed)$", node.name):
                out.append((str(path.relative_to(ROOT)), node.name))
    return out


def test_every_error_class_lives_in_core_errors():
    # `rig conformance`'s RuleFailed is a rule's outcome, not an error (core/errors.py says why).
    elsewhere = [(f, n) for f, n in _exception_classes() if f != "hzsr/core/errors.py" and n != "RuleFailed"]
    assert elsewhere == []


def test_error_names_are_unique():
    names = [n for _, n in _exception_classes()]
    assert sorted(names) == sorted(set(names))


def test_two_roots():
    host = [c for c in vars(E).values() if isinstance(c, type) and issubclass(c, E.HzsrError)]
    phone = [c for c in vars(E).values() if isinstance(c, type) and issubclass(c, E.VirtualPhoneError)]
    assert not set(host) & set(phone)
    assert issubclass(E.StorageError, OSError) and issubclass(E.ThreeAError, ValueError)


@pytest.mark.parametrize("argv", [
    ["session", "validate", "{m}"], ["sync", "check", "{m}"], ["qa", "check", "{m}"],
    ["dataset", "verify", "{m}"], ["dataset", "verify", "{m}", "--repair"], ["dataset", "info", "{m}"],
    ["dataset", "split", "{m}"], ["dataset", "export", "{m}", "--out", "{t}/x"],
    ["dataset", "curate", "{m}", "--query", "verdict == 'pass'", "--out", "{t}/c"],
    ["dataset", "ingest", "{m}", "--layout", "camerafusion", "--out", "{t}/i"],
    ["dataset", "pack", "{m}", "--out", "{t}/p"], ["capture", "resume", "{m}"], ["status", "{m}"],
])
def test_a_missing_folder_is_the_same_code_in_every_verb(argv, tmp_path, capsys):
    """One error, one code: a folder that is not there could not be read, exit 2, in every verb."""
    args = [a.format(m=tmp_path / "missing", t=tmp_path) for a in argv]
    assert main(args) == E.EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hzsr: error: ") and str(tmp_path / "missing") in err[0], err
    assert not (tmp_path / "missing").exists()
