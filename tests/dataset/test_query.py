"""The query language of ``pack --filter`` and ``curate --query`` (``hzsr/dataset/query.py``).

Four groups: the grammar's features one by one, each against the equivalent pandas boolean mask
on a small frame shaped like a manifest; every documented example against pandas on a real packed
manifest; the two CLI paths; and hostile input (a list of payloads, through the CLI, and
hypothesis throwing random text and token soups at the parser), which must never run anything and
always end in one line and exit 2.

"Never runs anything" is checked two ways: each payload that would run code tries to create a
marker file, which must not exist afterwards; and an audit hook (``sys.addaudithook``), armed only
while a query is parsed and evaluated, records any ``compile``/``exec`` of text that is not a
module file (what ``eval``/``DataFrame.query`` of the user's text does), and any ``os.system``,
``subprocess.Popen``, ``os.posix_spawn`` or ``os.exec*``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hzsr.cli import main
from hzsr.core.errors import DatasetError
from hzsr.dataset.manifest import load_manifest
from hzsr.dataset.pack import candidate_table, gather
from hzsr.dataset.query import FUNCTIONS, MAX_DEPTH, MAX_LENGTH, parse_query, query_mask, select_rows

ROOT = Path(__file__).resolve().parents[2]

# -- the audit hook: armed only around parse + evaluate ------------------------------------------
_ARMED: list[bool] = [False]
_EVENTS: list[str] = []
_RUN_EVENTS = ("os.system", "subprocess.Popen", "os.posix_spawn", "os.exec", "os.spawn", "os.fork")


def _audit(event: str, args: tuple) -> None:
    if not _ARMED[0]:
        return
    if event in _RUN_EVENTS:
        _EVENTS.append(event)
    elif event == "compile":  # compile()/eval()/exec() of text; an import compiles a .py file
        name = args[1] if len(args) > 1 else None
        if not (isinstance(name, (str, bytes)) and str(name).endswith(".py")):
            _EVENTS.append(f"compile {name!r}")
    elif event == "exec":  # exec() of a code object; an import runs a module's
        code = args[0] if args else None
        if not str(getattr(code, "co_filename", "")).endswith(".py"):
            _EVENTS.append(f"exec {getattr(code, 'co_filename', '?')!r}")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True, scope="module")
def _warm_up():
    """Run every feature once unguarded, so a lazy import inside pandas is not taken for code running."""
    for expr, _ in FEATURES:
        query_mask(DF, expr)
    for expr, _ in ERRORS:
        with pytest.raises(DatasetError):
            query_mask(DF, expr)


def _guarded(fn: Callable[[], object]) -> object:
    """``fn()`` with the audit hook armed; fails if anything ran code or a process."""
    _EVENTS.clear()
    _ARMED[0] = True
    try:
        return fn()
    finally:
        _ARMED[0] = False
        assert not _EVENTS, f"code or a process ran: {_EVENTS}"


# -- a small frame shaped like a manifest ----------------------------------------------------------
def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "capture_id": ["sA/c00000", "sA/c00001", "sA/c00002", "sB/c00000", "sB/c00001", "sB/c00002"],
        "scene_kind": ["portrait", "night", "landscape", "night", "portrait", "architecture"],
        "scene_tags": ["portrait;moving", "night", "landscape;nightly", "night;moving", "", "architecture"],
        "verdict": ["pass", "warn", None, "fail", "pass", None],
        "qa_ncc": [0.91, 0.55, np.nan, 0.2, 0.75, np.nan],
        "qa_other": [0.5, 0.6, 0.1, np.nan, 0.75, 0.3],
        "main_W_iso": [100, 200, 400, 100, 800, 50],
        "has_reference": [True, True, False, True, False, True],
        "has_ref_obj": pd.Series([True, None, False, True, None, False], dtype=object),
        "empty_col": [np.nan] * 6,
        "odd name": [1, 2, 3, 4, 5, 6],
        "mixed": pd.Series([1, "a", 2.5, None, "b", 1], dtype=object),
    })


DF = _frame()

# (query, the equivalent pandas mask)
FEATURES: list[tuple[str, Callable[[pd.DataFrame], pd.Series]]] = [
    # comparisons of text, with empty cells as pandas treats them
    ("verdict != 'fail'", lambda d: d.verdict != "fail"),
    ("verdict == 'pass'", lambda d: d.verdict == "pass"),
    ('verdict == "pass"', lambda d: d.verdict == "pass"),
    ("scene_kind < 'n'", lambda d: d.scene_kind < "n"),
    ("scene_kind >= 'night'", lambda d: d.scene_kind >= "night"),
    ("'night' == scene_kind", lambda d: d.scene_kind == "night"),
    ("verdict < 'q'", lambda d: d.verdict < "q"),
    # numbers: ints, floats, exponents, signs, NaN
    ("qa_ncc > 0.5", lambda d: d.qa_ncc > 0.5),
    ("qa_ncc >= 0.55", lambda d: d.qa_ncc >= 0.55),
    ("qa_ncc < 0.5", lambda d: d.qa_ncc < 0.5),
    ("qa_ncc <= .2", lambda d: d.qa_ncc <= 0.2),
    ("qa_ncc != 0.2", lambda d: d.qa_ncc != 0.2),
    ("qa_ncc > 1e-3", lambda d: d.qa_ncc > 1e-3),
    ("qa_ncc > -1", lambda d: d.qa_ncc > -1),
    ("main_W_iso == 100", lambda d: d.main_W_iso == 100),
    ("main_W_iso != 100", lambda d: d.main_W_iso != 100),
    ("100 < main_W_iso", lambda d: d.main_W_iso > 100),
    ("main_W_iso >= 2E2", lambda d: d.main_W_iso >= 200),
    ("main_W_iso < 99999999999999999999999", lambda d: d.main_W_iso < 1e23),
    # chains, as Python
    ("0.2 < qa_ncc <= 0.91", lambda d: (d.qa_ncc > 0.2) & (d.qa_ncc <= 0.91)),
    ("100 <= main_W_iso < 800 != 5", lambda d: (d.main_W_iso >= 100) & (d.main_W_iso < 800)),
    # column with column
    ("capture_id == capture_id", lambda d: d.capture_id == d.capture_id),
    ("qa_ncc < qa_other", lambda d: d.qa_ncc < d.qa_other),
    ("qa_ncc != qa_other", lambda d: d.qa_ncc != d.qa_other),
    # and / or / not, precedence, parentheses, newlines
    ("scene_kind == 'night' or verdict == 'fail'", lambda d: (d.scene_kind == "night") | (d.verdict == "fail")),
    ("verdict != 'fail' and scene_kind != 'night'", lambda d: (d.verdict != "fail") & (d.scene_kind != "night")),
    ("not scene_kind == 'night'", lambda d: ~(d.scene_kind == "night")),
    ("not not has_reference", lambda d: d.has_reference),
    ("verdict == 'pass' or verdict == 'warn' and main_W_iso > 100",
     lambda d: (d.verdict == "pass") | ((d.verdict == "warn") & (d.main_W_iso > 100))),
    ("(verdict == 'pass' or verdict == 'warn') and main_W_iso > 100",
     lambda d: ((d.verdict == "pass") | (d.verdict == "warn")) & (d.main_W_iso > 100)),
    ("((((main_W_iso > 100))))", lambda d: d.main_W_iso > 100),
    ("verdict != 'fail'\n\tand main_W_iso > 0\r\n", lambda d: (d.verdict != "fail") & (d.main_W_iso > 0)),
    # true/false columns and constants
    ("has_reference", lambda d: d.has_reference),
    ("not has_reference", lambda d: ~d.has_reference),
    ("has_reference == True", lambda d: d.has_reference),
    ("has_reference != false", lambda d: d.has_reference),
    ("has_reference == 1", lambda d: d.has_reference),
    ("has_ref_obj", lambda d: d.has_ref_obj.fillna(False).astype(bool)),
    ("has_reference and verdict == 'pass'", lambda d: d.has_reference & (d.verdict == "pass")),
    ("True", lambda d: pd.Series(True, index=d.index)),
    ("false", lambda d: pd.Series(False, index=d.index)),
    ("1 == 1", lambda d: pd.Series(True, index=d.index)),
    ("'a' > 'b'", lambda d: pd.Series(False, index=d.index)),
    ("None == null", lambda d: pd.Series(True, index=d.index)),
    ("(main_W_iso > 100) == True", lambda d: d.main_W_iso > 100),
    # in / not in, [..] and (..), None in the list
    ("scene_kind in ['night', 'portrait']", lambda d: d.scene_kind.isin(["night", "portrait"])),
    ("scene_kind in ('night',)", lambda d: d.scene_kind.isin(["night"])),
    ("scene_kind in ('night')", lambda d: d.scene_kind.isin(["night"])),
    ("scene_kind not in ['night']", lambda d: ~d.scene_kind.isin(["night"])),
    ("verdict not in ['fail']", lambda d: ~d.verdict.isin(["fail"])),
    ("verdict in ['pass', None]", lambda d: d.verdict.isin(["pass"]) | d.verdict.isna()),
    ("verdict not in ['fail', null]", lambda d: ~(d.verdict.isin(["fail"]) | d.verdict.isna())),
    ("main_W_iso in [100, 200.0, -3]", lambda d: d.main_W_iso.isin([100, 200])),
    ("scene_kind in []", lambda d: pd.Series(False, index=d.index)),
    ("scene_kind not in []", lambda d: pd.Series(True, index=d.index)),
    ("'x' in ['x', 'y']", lambda d: pd.Series(True, index=d.index)),
    # None / null
    ("verdict == None", lambda d: d.verdict.isna()),
    ("verdict != null", lambda d: d.verdict.notna()),
    ("None != verdict", lambda d: d.verdict.notna()),
    # functions
    ("isnull(verdict)", lambda d: d.verdict.isna()),
    ("isna(qa_ncc)", lambda d: d.qa_ncc.isna()),
    ("notnull(verdict)", lambda d: d.verdict.notna()),
    ("notna(qa_ncc)", lambda d: d.qa_ncc.notna()),
    ("contains(scene_tags, 'night')", lambda d: d.scene_tags.str.contains("night", regex=False)),
    ("contains(verdict, 'as')", lambda d: d.verdict.str.contains("as", regex=False).fillna(False).astype(bool)),
    ("contains(scene_kind, '.*')", lambda d: pd.Series(False, index=d.index)),  # text, not a regex
    ("contains(verdict, '')", lambda d: d.verdict.notna()),
    ("startswith(capture_id, 'sA/')", lambda d: d.capture_id.str.startswith("sA/")),
    ("endswith(capture_id, '1')", lambda d: d.capture_id.str.endswith("1")),
    ("has_tag(scene_tags, 'night')", lambda d: d.scene_tags.str.split(";").apply(lambda t: "night" in t)),
    ("has_tag(scene_tags, 'moving')", lambda d: d.scene_tags.str.split(";").apply(lambda t: "moving" in t)),
    ("not has_tag(scene_tags, 'moving') and startswith(capture_id, 'sB')",
     lambda d: ~d.scene_tags.str.split(";").apply(lambda t: "moving" in t) & d.capture_id.str.startswith("sB")),
    # backtick names, escapes
    ("`odd name` > 3", lambda d: d["odd name"] > 3),
    ("`verdict` == 'pass'", lambda d: d.verdict == "pass"),
    ("scene_kind == 'it\\'s' or scene_kind == \"a\\\"b\\\\\"", lambda d: pd.Series(False, index=d.index)),
    # a column with no value at all compares with anything
    ("empty_col == 'x'", lambda d: pd.Series(False, index=d.index)),
    ("empty_col != 3", lambda d: pd.Series(True, index=d.index)),
    ("empty_col < 3", lambda d: pd.Series(False, index=d.index)),
    ("empty_col", lambda d: pd.Series(False, index=d.index)),
    ("contains(empty_col, 'x')", lambda d: pd.Series(False, index=d.index)),
    ("isnull(empty_col)", lambda d: pd.Series(True, index=d.index)),
    # a column of mixed values: == and != as Python
    ("mixed == 1", lambda d: d.mixed == 1),
    ("mixed == 'a'", lambda d: d.mixed == "a"),
    ("mixed in [1, 'b']", lambda d: d.mixed.isin([1, "b"])),
]


@pytest.mark.parametrize("expr,want", FEATURES, ids=[f[0] for f in FEATURES])
def test_feature_matches_pandas(expr, want):
    got = _guarded(lambda: query_mask(DF, expr, "--query"))
    assert got.dtype == bool and got.index.equals(DF.index)
    exp = want(DF).astype(bool)
    assert got.tolist() == exp.tolist(), (expr, got.tolist(), exp.tolist())


def test_select_rows_keeps_order_and_index():
    df = DF.set_index(pd.Index([10, 5, 7, 1, 2, 3]))
    out = select_rows(df, "scene_kind == 'night' or verdict == 'pass'")
    assert out.index.tolist() == [10, 5, 1, 2]
    assert out.equals(df[(df.scene_kind == "night") | (df.verdict == "pass")])


def test_long_flat_chains_are_flat():
    expr = " or ".join(f"main_W_iso == {i}" for i in range(3000))  # far past MAX_DEPTH terms, not nested
    assert query_mask(DF, expr).tolist() == DF.main_W_iso.isin(range(3000)).tolist()
    ids = ", ".join(f"'sA/c{i:05d}'" for i in range(3000))
    assert query_mask(DF, f"capture_id in [{ids}]").tolist() == DF.capture_id.str.startswith("sA").tolist()


def test_parsed_once_evaluated_on_many_frames():
    q = parse_query("verdict != 'fail'", "--filter")
    assert q.mask(DF).tolist() == (DF.verdict != "fail").tolist()
    assert q.mask(DF.iloc[:0]).tolist() == []  # an empty frame: every column is empty
    assert q.mask(DF.iloc[3:4]).tolist() == [False]


def test_works_on_string_and_object_dtypes_alike():
    for conv in (lambda s: s.astype(object), lambda s: s.astype("string"), lambda s: s):
        df = DF.assign(scene_kind=conv(DF.scene_kind), verdict=conv(DF.verdict))
        assert query_mask(df, "scene_kind < 'n' and verdict != 'fail'").tolist() == (
            (df.scene_kind < "n") & (df.verdict != "fail").fillna(True)).tolist()
        assert query_mask(df, "contains(verdict, 'a')").tolist() == [True, True, False, True, True, False]


# -- errors: one line, the option as the field, what and where --------------------------------------
ERRORS = [
    # syntax
    ("", "at the end: empty expression"),
    ("   ", "at the end: empty expression"),
    ("scene_kind ==", "at the end: expected a column, a value or '(', found the end"),
    ("scene_kind = 'night'", "at character 12: '=' is not a comparison; use '=='"),
    ("verdict == 'pass", "at character 12: string opened with ' is never closed"),
    ("(verdict == 'pass'", "at character 1: '(' is never closed"),
    ("verdict == 'pass')", "at character 18: ')' without a matching '('"),
    ("verdict verdict", "at character 9: unexpected 'verdict' after a complete condition (missing 'and' / 'or'?)"),
    ("verdict == 'a' && x", "at character 16: '&' is not allowed; use 'and'"),
    ("verdict == 'a' | x", "at character 16: '|' is not allowed; use 'or'"),
    ("~has_reference", "at character 1: '~' is not allowed; use 'not'"),
    ("main_W_iso + 1 > 2", "at character 12: arithmetic ('+') is not supported"),
    ("main_W_iso - 1 > 2", "at character 12: arithmetic ('-') is not supported"),
    ("main_W_iso ** 2 > 2", "at character 12: arithmetic ('**') is not supported"),
    ("-main_W_iso > 2", "at character 1: '-' is only allowed before a number (no arithmetic)"),
    ("main_W_iso > 1x", "at character 14: bad number '1x'"),
    ("scene_kind in 'night'", "at character 15: 'in' takes a list of values, [..] or (..), found \"'night'\""),
    ("scene_kind in [verdict]", "at character 16: a list holds values only (numbers, strings, True, False, None), "
                                "found 'verdict'"),
    ("scene_kind in ['a' 'b']", "at character 20: expected ',' or ']' in the list, found \"'b'\""),
    ("scene_kind in ['a'", "at character 15: list opened with '[' is never closed"),
    ("['a'] == scene_kind", "at character 1: a list is only allowed after 'in'"),
    ("(1, 2) == scene_kind", "at character 1: a list is only allowed after 'in'"),
    ("scene_kind[0] == 'n'", "at character 11: indexing ('[') is not allowed"),
    ("verdict.upper() == 'PASS'", "at character 8: attribute access ('.') is not allowed"),
    ("@x == 1", "at character 1: '@' names (Python variables) are not allowed"),
    ("verdict is None", "at character 9: 'is' is Python, not part of the query language"),
    ("`verdict", "at character 1: backtick-quoted column name is never closed"),
    ("`` == 1", "at character 1: empty column name ``"),
    ("'a\\x41' == verdict", "at character 3: unknown escape '\\x' in a string (known: \\\\ \\' \\\" \\n \\t)"),
    ("verdict == 'pass' # comment", "at character 19: unexpected character '#'"),
    ("verdict == 'pass'; 1", "at character 18: unexpected character ';'"),
    ("véřdict == 1", "at character 2: unexpected character 'é'"),
    # functions
    ("open('/etc/passwd')", "at character 1: unknown function 'open'; functions: contains, endswith, has_tag, "
                            "isna, isnull, notna, notnull, startswith"),
    ("contains('x', verdict)", "at character 10: contains() takes a column name first: contains(column, 'text')"),
    ("contains(verdict)", "at character 17: expected ',' and a string: contains(column, 'text'), found ')'"),
    ("contains(verdict, 3)", "at character 19: contains() takes a quoted string second: contains(column, 'text')"),
    ("isnull(verdict, 'x')", "at character 15: too many arguments: isnull(column)"),
    ("has_tag(scene_tags, 'a;b')", "at character 21: a tag cannot contain ';'"),
    ("contains(main_W_iso, '1')", "at character 10: contains() needs a text column; 'main_W_iso' holds numbers"),
    ("`odd name`('x')", "at character 11: only the functions can be called"),
    ("(verdict)('x')", "at character 10: only the functions can be called"),
    # types
    ("scene_kind == 3", "at character 12: cannot compare column 'scene_kind' (text) with 3 "
                        "(quote the number to compare text)"),
    ("scene_kind > 3", "at character 12: cannot compare column 'scene_kind' (text) with 3 "
                       "(quote the number to compare text)"),
    ("main_W_iso < 'a'", "at character 12: cannot compare column 'main_W_iso' (numbers) with 'a' "
                         "(write a number without quotes)"),
    ("scene_kind in ['a', 3]", "at character 21: cannot compare column 'scene_kind' (text) with 3 "
                               "(quote the number to compare text)"),
    ("has_reference > False", "at character 15: '>' cannot order column 'has_reference' (true/false)"),
    ("mixed < 2", "at character 7: '<' cannot order column 'mixed' (mixed values)"),
    ("scene_kind < qa_ncc", "at character 12: cannot compare column 'scene_kind' (text) with column 'qa_ncc' "
                            "(numbers)"),
    ("verdict < None", "at character 9: '<' with None is always false; use isnull() or notnull()"),
    ("verdict", "at character 1: column 'verdict' holds text, not true/false; compare it (e.g. verdict == ...)"),
    ("3", "at character 1: 3 is not a condition; compare a column with it"),
    ("'pass' and has_reference", "at character 1: 'pass' is not a condition; compare a column with it"),
    ("None", "at character 1: None is not a condition; compare a column with it"),
    # unknown columns: the closest, or every column
    ("verdit == 'pass'", "at character 1: unknown column 'verdit'; did you mean 'verdict'?"),
    ("zzz == 1", "at character 1: unknown column 'zzz'; columns: capture_id, scene_kind, scene_tags, verdict, "
                 "qa_ncc, qa_other, main_W_iso, has_reference, has_ref_obj, empty_col, odd name, mixed"),
    ("has_reference and isnull(`#1`)", "at character 26: unknown column '#1'; columns: capture_id, "
     "scene_kind, scene_tags, verdict, qa_ncc, qa_other, main_W_iso, has_reference, has_ref_obj, empty_col, "
     "odd name, mixed"),
]


@pytest.mark.parametrize("expr,what", ERRORS, ids=[e[0] or "(empty)" for e in ERRORS])
def test_errors_are_one_line_with_what_and_where(expr, what):
    with pytest.raises(DatasetError) as ei:
        _guarded(lambda: query_mask(DF, expr, "--filter"))
    err = ei.value
    assert err.field == "--filter" and err.exit_code == 2 and err.file is None
    assert err.one_line() == f"--filter: bad expression {expr!r}: {what}"
    assert len(err.one_line().splitlines()) == 1


def test_long_expressions_are_shown_as_an_excerpt():
    expr = "verdict == 'pass' and " * 20 + "scene_kind == 3"
    with pytest.raises(DatasetError) as ei:
        query_mask(DF, expr, "--query")
    line = ei.value.one_line()
    assert f"at character {expr.rindex('==') + 1}: cannot compare column 'scene_kind' (text) with 3" in line
    assert f"of {len(expr)})" in line and "…" in line and len(line) < 300 and "\n" not in line


def test_limits():
    with pytest.raises(DatasetError, match=f"the limit is {MAX_LENGTH}"):
        parse_query("x" * (MAX_LENGTH + 1))
    parse_query("(" * MAX_DEPTH + "has_reference" + ")" * MAX_DEPTH)
    for deep in ("(" * (MAX_DEPTH + 1) + "has_reference" + ")" * (MAX_DEPTH + 1),
                 "not " * (MAX_DEPTH + 1) + "has_reference",
                 "(" * 100_000):
        with pytest.raises(DatasetError, match=f"nested deeper than {MAX_DEPTH} levels|the limit"):
            parse_query(deep)


# -- every documented example, against pandas on a real manifest ------------------------------------
def _documented_examples() -> list[str]:
    """Every --filter/--query example in README.md, docs/*.md, the CLI's help and hzsr/demo.py,
    plus the examples block of docs/dataset.md's Queries section."""
    found: list[str] = []
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "hzsr" / "dataset" / "cli.py"]
    for path in texts:
        text = path.read_text(encoding="utf-8").replace('\\"', '"')
        found += re.findall(r'--(?:filter|query)[ =]"([^"]+)"', text)
        found += re.findall(r'e\.g\. "([^"]+)"', text) if path.suffix == ".py" else []
    demo = (ROOT / "hzsr" / "demo.py").read_text(encoding="utf-8")
    found += re.findall(r'"--filter",\s*"([^"]+)"', demo)
    doc = (ROOT / "docs" / "dataset.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- query examples -->\s*```text\n(.*?)```", doc, re.S)
    assert block, "docs/dataset.md lost its query examples block"
    found += [line for line in block.group(1).splitlines() if line.strip()]
    return list(dict.fromkeys(found))


DOCUMENTED = _documented_examples()


def test_documented_examples_were_found():
    for must in ("verdict != 'fail'", "verdict != 'fail' and scene_kind != 'night'",
                 "scene_kind == 'portrait' and verdict == 'pass'"):
        assert must in DOCUMENTED
    assert len(DOCUMENTED) >= 10


@pytest.mark.parametrize("expr", DOCUMENTED)
def test_documented_example_works(packed, expr):
    man = load_manifest(packed)
    # Figures a real `hzsr qa check` writes that the fixture's hand-written qa.csv lacks.
    n = len(man)
    extra = {"qa_wt_psnr_db": [24.0, 31.5, np.nan, 40.0] * n,
             "qa_codes": ["motion_blur;sync_skew", "", None, "large_shift"] * n}
    man = man.assign(**{k: v[:n] for k, v in extra.items() if k not in man.columns})
    got = _guarded(lambda: query_mask(man, expr, "--query"))
    assert got.dtype == bool and len(got) == len(man)
    try:  # our own documentation's text, so pandas may evaluate it here for comparison
        want = man.eval(expr, engine="python")
    except Exception:  # noqa: BLE001 - a function pandas has not (contains, has_tag, ...)
        assert any(f"{f}(" in expr for f in FUNCTIONS) or "null" in expr or "`" in expr, expr
        return
    assert got.tolist() == want.astype(bool).tolist(), expr


# -- the CLI -------------------------------------------------------------------------------------
def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hzsr.cli", *map(str, args)], capture_output=True, text=True,
                          env=os.environ, timeout=300)


def test_cli_pack_filter(ds_sessions, tmp_path):
    expr = "has_tag(scene_tags, 'night') or qa_ncc < 0.5"
    r = _cli("dataset", "pack", *ds_sessions, "--out", tmp_path / "ds", f"--filter={expr}", "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    _, caps, _ = gather(ds_sessions)
    cand = candidate_table(caps)
    tags = cand.scene_tags.str.split(";").apply(lambda t: "night" in t)
    want = cand[tags | (cand.qa_ncc < 0.5)].capture_id.tolist()
    assert 0 < len(want) < len(cand)
    assert load_manifest(tmp_path / "ds").capture_id.tolist() == want
    out = json.loads(r.stdout)
    assert out["captures"] == len(want) and out["filtered_out"] == len(cand) - len(want)


def test_cli_pack_bad_filter_reads_and_writes_nothing(tmp_path):
    r = _cli("dataset", "pack", tmp_path / "no-such-session", "--out", tmp_path / "ds", "--filter", "verdict = 1")
    assert r.returncode == 2
    assert r.stderr == "hzsr: error: --filter: bad expression 'verdict = 1': at character 9: " \
                       "'=' is not a comparison; use '=='\n"
    assert not (tmp_path / "ds").exists()


def test_cli_curate_query(packed, tmp_path):
    r = _cli("dataset", "curate", packed, "--query", "startswith(capture_id, 'sB/') and verdict != 'fail'",
             "--out", tmp_path / "sub", "--json")
    assert r.returncode == 0, r.stderr
    man = load_manifest(packed)
    want = man[man.capture_id.str.startswith("sB/") & (man.verdict != "fail")].capture_id.tolist()
    assert pd.read_csv(tmp_path / "sub" / "manifest.csv").capture_id.tolist() == want and len(want) == 2
    sub = json.loads((tmp_path / "sub" / "subset.json").read_text())
    assert sub["query"] == "startswith(capture_id, 'sB/') and verdict != 'fail'"


def test_cli_curate_unknown_column(packed, tmp_path):
    r = _cli("dataset", "curate", packed, "--query", "scene_knd == 'night'", "--out", tmp_path / "sub")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("hzsr: error: --query: bad expression \"scene_knd == 'night'\": at character 1: "
                               "unknown column 'scene_knd'; did you mean 'scene_kind'")
    assert not (tmp_path / "sub").exists()


# -- hostile input ---------------------------------------------------------------------------------
def _payloads(marker: Path) -> list[str]:
    """Expressions that ran code, or tried to, under ``DataFrame.query(engine="python")``."""
    m = str(marker)
    touch = f"__import__('os').system('touch {m}')"
    return [
        f"@os.system('touch {m}') == 0",
        f"verdict == verdict or @os.system('touch {m}') == 0",
        f"@os.popen('touch {m}').read() == ''",
        f"@Path('{m}').touch() == None",
        f"@atomic_write_json('{m}', 1) == None",
        f"@pd.io.common.os.system('touch {m}') == 0",
        touch,
        f"verdict == 'x' or {touch}",
        f"({touch}) == 0",
        "verdict.__class__",
        "verdict.__class__.__base__.__subclasses__()",
        f"(lambda: {touch})()",
        f"open('{m}', 'w')",
        "open('/etc/passwd')",
        f"exec(\"import os; os.system('touch {m}')\")",
        "eval('1 + 1') == 2",
        "globals()",
        "@__builtins__",
        "[c for c in ().__class__.__bases__[0].__subclasses__()]",
        "getattr(verdict, 'upper')",
        "1 if True else 2",
        "f'{1}' == '1'",
        "verdict == 'pass'; import os",
        "'a' * 10**9 == 'a'",
        "[1] * 10**9",
        "verdict.str.contains('x')",
        # backtick tricks
        f"`verdict` == 'x' or `{touch}` == 1",
        f"`) or {touch} or (` == 1",
        "`verdict`.__class__",
        "`verdict",
        "`a``b` == 1",
        "``",
        # size, depth, control and unicode characters
        "verdict == 'pass' or " * 6000 + "has_reference",
        "(" * 1000 + "has_reference" + ")" * 1000,
        "not " * 1000 + "has_reference",
        "[" * 5000,
        "verdict == 'pa\x00ss'",
        "verdict\x00 == 'pass'",
        "verdict == 'pass'\x1b[2J",
        "verdict == 'pass' \u2028or has_reference",
        "\uff20os.system('id') == 0",
        "v\u0435rdict == 'pass'",  # a Cyrillic e
        "verdict \uff1d\uff1d 'pass'",
        "verdict == 'pass' \u202e or has_reference",
        "\udcff == 1",
        "__import__ == 1",
        "__class__",
    ]


def _run_main(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("option", ["--filter", "--query"])
def test_hostile_payloads_run_nothing(option, ds_sessions, packed, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    failures = []
    for i, payload in enumerate(_payloads(marker)):
        if option == "--filter":
            argv = ["dataset", "pack", *map(str, ds_sessions), "--out", str(tmp_path / f"o{i}"), "--quiet",
                    f"--filter={payload}"]
        else:
            argv = ["dataset", "curate", str(packed), f"--query={payload}", "--out", str(tmp_path / f"s{i}")]
        with pytest.raises(DatasetError):  # the parser and evaluator alone, with the audit hook armed
            _guarded(lambda payload=payload: query_mask(DF, payload, option))
        assert not marker.exists()
        code, err = _run_main(argv, capsys)
        lines = err.splitlines()
        ok = (code == 2 and len(lines) == 1 and lines[0].startswith(f"hzsr: error: {option}: bad expression ")
              and not marker.exists())
        if not ok:
            failures.append(f"{payload[:60]!r}: exit {code}, marker {marker.exists()}, stderr {err[:200]!r}")
        marker.unlink(missing_ok=True)
    assert not failures, "\n".join(failures)


def test_hostile_payload_through_a_real_process(packed, tmp_path):
    marker = tmp_path / "PWNED"
    r = _cli("dataset", "curate", packed, f"--query=@os.system('touch {marker}') == 0", "--out", tmp_path / "s")
    assert r.returncode == 2 and not marker.exists() and len(r.stderr.splitlines()) == 1
    assert r.stderr.startswith("hzsr: error: --query: bad expression \"@os.system('touch ")
    assert r.stderr.endswith(": at character 1: '@' names (Python variables) are not allowed\n")


# -- hypothesis: random text and token soups ---------------------------------------------------------
MARKER = Path(tempfile.gettempdir()) / f"hzsr-query-marker-{os.getpid()}"
TOKENS = [
    "verdict", "scene_kind", "scene_tags", "qa_ncc", "main_W_iso", "has_reference", "has_ref_obj", "empty_col",
    "mixed", "`odd name`", "`verdict`", "nosuch", "capture_id",
    "'pass'", "'night'", '"x"', "''", "3", "-1", "0.5", "1e3", ".5", "True", "false", "None", "null",
    "==", "!=", "<", "<=", ">", ">=", "=", "and", "or", "not", "in", "not in",
    "(", ")", "[", "]", ",", "-", "+", "*", "**", ".", "@", "`", "'", '"', "\\", "&", "|", "~", ";", ":", "#",
    *FUNCTIONS, "open", "eval", "exec", "__import__", "os", "system", "lambda", "is", "if", "else", "for",
    "__class__", "__subclasses__", "__builtins__", "globals", "pd", "np", f"'touch {MARKER}'", "\x00", "\n",
    "é", "\u2028", "\uff20",
]
HYP = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(expr: str) -> None:
    """``expr`` gives a mask of the right length or a one-line DatasetError, and runs nothing."""
    try:
        got = _guarded(lambda: query_mask(DF, expr, "--query"))
    except DatasetError as exc:
        assert exc.field == "--query" and exc.exit_code == 2
        assert len(exc.one_line().splitlines()) == 1 and exc.one_line().startswith("--query: bad expression ")
    else:
        assert isinstance(got, pd.Series) and got.dtype == bool and got.index.equals(DF.index)
    assert not MARKER.exists()


@HYP
@given(st.text(max_size=200))
def test_random_text(expr):
    _check(expr)


@HYP
@given(st.lists(st.sampled_from(TOKENS), max_size=25), st.sampled_from([" ", ""]))
def test_token_soup(tokens, sep):
    _check(sep.join(tokens))


_atom = st.one_of(
    st.builds("scene_kind {} '{}'".format, st.sampled_from(["==", "!=", "<", ">="]),
              st.sampled_from(["night", "portrait", "m"])),
    st.builds("verdict {} '{}'".format, st.sampled_from(["==", "!="]), st.sampled_from(["pass", "fail", "warn"])),
    st.builds("qa_ncc {} {}".format, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
              st.sampled_from(["0.2", "0.5", "0.91", "-1"])),
    st.builds("main_W_iso {} {}".format, st.sampled_from(["<", ">=", "=="]), st.sampled_from(["100", "200"])),
    st.builds("{} < main_W_iso <= {}".format, st.sampled_from(["0", "100"]), st.sampled_from(["200", "800"])),
    st.builds("scene_kind {}in {}".format, st.sampled_from(["", "not "]),
              st.sampled_from(["['night']", "['night', 'portrait']", "('landscape', 'x')"])),
    st.just("has_reference"),
)
_valid = st.recursive(_atom, lambda c: st.one_of(
    st.builds("({}) and ({})".format, c, c), st.builds("{} or {}".format, c, c), st.builds("not ({})".format, c),
    st.builds("{} and {}".format, c, c)), max_leaves=8)


@HYP
@given(_valid)
def test_random_valid_queries_match_pandas(expr):
    got = _guarded(lambda: query_mask(DF, expr))
    want = DF.eval(expr, engine="python")  # our generated text, trusted: the reference semantics
    assert got.tolist() == want.astype(bool).tolist(), expr
