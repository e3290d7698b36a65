"""No traceback from user input: property-based fuzzing of rig.yaml, session.json, capture.json,
the journal and CLI options, plus every case the capture-safety issue listed.

Each property runs the real CLI entry point (``hzsr.cli.main``, in-process) and asserts: it
returns (no exception escapes, so no traceback), with a documented exit code (0, 1 = read but
bad, 2 = unreadable or bad options; argparse's own usage errors also exit 2), and, on an error,
one ``hzsr: error:`` line.
"""

import json
import math
import os
import shutil

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hzsr.cli import main

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Plain-data values, hostile ones included: huge ints, NaN/inf, deep-ish nesting, odd strings.
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10**18, max_value=10**40),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                  st.dictionaries(st.text(max_size=8), c, max_size=4)),
                      max_leaves=12)


LAST_ERR = {"text": ""}


def _call(argv, capsys) -> int:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: bad options
        code = exc.code
    err = capsys.readouterr().err
    LAST_ERR["text"] = err
    assert "Traceback" not in err
    assert code in (0, 1, 2), (argv, code, err)
    if code and "usage:" not in err:
        assert err.count("hzsr: error:") <= 1, err
    return code


def _mutate(doc, path, value):
    """``doc`` with the node at ``path`` (a list of keys / indices, taken modulo) set to ``value``."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    keys = list(doc) if isinstance(doc, dict) else list(range(len(doc)))
    k = keys[path[0] % len(keys)]
    out = dict(doc) if isinstance(doc, dict) else list(doc)
    out[k] = _mutate(doc[k], path[1:], value)
    return out


# -- rig.yaml ----------------------------------------------------------------------------------
RIG = {"adb": {"host": "127.0.0.1", "port": 5137},
       "phones": [{"serial": "a:1", "role": "main"}, {"serial": "b:2", "role": "reference"}],
       "virtual": {"pid": 2, "workdir": "/tmp", "truth_dir": "/tmp", "profile": "vphone-5x", "processes": {
           "rig": {"pid": 2, "start_ticks": 1, "cmdline": ["x"]}}}}


@SETTINGS
@given(path=st.lists(st.integers(0, 50), max_size=5), value=values)
def test_fuzz_rig_yaml_rig_down(tmp_path, capsys, monkeypatch, path, value):
    killed = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append(pid))  # nothing may be signalled
    doc = _mutate(RIG, path, value)
    p = tmp_path / "rig.yaml"
    try:
        p.write_text(yaml.safe_dump(doc))
    except (yaml.YAMLError, ValueError):
        return
    _call(["rig", "down", "--rig", str(p)], capsys)
    assert killed == []  # no fuzzed file can prove ownership of a running process


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_fuzz_rig_yaml_raw_bytes(tmp_path, capsys, monkeypatch, raw):
    monkeypatch.setattr(os, "kill", lambda pid, sig: pytest.fail("signalled"))
    p = tmp_path / "rig.yaml"
    p.write_bytes(raw)
    _call(["rig", "down", "--rig", str(p)], capsys)


# -- session.json, capture.json, the journal ---------------------------------------------------------
@pytest.fixture(scope="module")
def small_session(tmp_path_factory):
    from hzsr.sim.simsession import SimConfig, simulate_session

    root = tmp_path_factory.mktemp("fuzz")
    return simulate_session(root / "sess", SimConfig(captures=2, seed=3, size=(128, 96)), progress=False)


def _copy(small_session, tmp_path):
    d = tmp_path / "s"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(small_session, d)
    return d


@SETTINGS
@given(which=st.sampled_from(["session.json", "captures/c00000/capture.json"]),
       path=st.lists(st.integers(0, 50), max_size=6), value=values)
def test_fuzz_session_and_capture_json(small_session, tmp_path, capsys, which, path, value):
    d = _copy(small_session, tmp_path)
    f = d / which
    doc = _mutate(json.loads(f.read_text()), path, value)
    try:
        f.write_text(json.dumps(doc))  # NaN/Infinity are written as JSON's extensions
    except (ValueError, RecursionError):
        return
    _call(["session", "validate", str(d), "--no-pixels"], capsys)
    _call(["sync", "check", str(d), "--no-plots"], capsys)


@SETTINGS
@given(lines=st.lists(st.one_of(values.map(lambda v: json.dumps(v, default=str)),
                                st.dictionaries(st.sampled_from(["event", "capture_id", "reason", "x"]),
                                                values).map(lambda v: json.dumps(v, default=str)),
                                st.text(max_size=30)), max_size=6))
def test_fuzz_journal(small_session, tmp_path, capsys, lines):
    d = _copy(small_session, tmp_path)
    with open(d / "journal.jsonl", "a") as f:
        f.write("\n".join(lines))
    _call(["session", "validate", str(d), "--no-pixels"], capsys)
    _call(["sync", "check", str(d), "--no-plots"], capsys)
    from hzsr.capture.session_run import journal_state
    from hzsr.core.journal import Journal

    assert all(isinstance(k, str) for k in journal_state(Journal(d / "journal.jsonl")))


@pytest.mark.parametrize("which", ["session.json", "captures/c00000/capture.json", "journal.jsonl"])
@pytest.mark.parametrize("hostile", ["deep", "bigint", "latin1"])
def test_hostile_json_files_are_one_line(small_session, tmp_path, capsys, which, hostile):
    d = _copy(small_session, tmp_path)
    data = {"deep": b"[" * 100_000 + b"]" * 100_000, "bigint": b"{\"a\": " + b"9" * 5000 + b"}",
            "latin1": "{\"a\": \"\u00e9\"}".encode("latin-1")}[hostile]
    with open(d / which, "ab" if which == "journal.jsonl" else "wb") as f:
        f.write(data + b"\n")
    for argv in (["session", "validate", str(d), "--no-pixels"], ["sync", "check", str(d), "--no-plots"]):
        code = _call(argv, capsys)
        if which == "session.json":
            assert code in (1, 2)  # validate: a finding (1); sync check: unreadable (2)


# -- CLI options -------------------------------------------------------------------------------------
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                    st.text(max_size=6))


@SETTINGS
@given(interval=numbers, count=numbers, seconds=numbers, skew=numbers, planned=numbers)
def test_fuzz_cli_options(small_session, tmp_path, capsys, interval, count, seconds, skew, planned):
    none = str(tmp_path / "no-rig.yaml")  # every adb command stops at the missing rig.yaml at the latest
    assert _call(["capture", "run", str(tmp_path / "x"), "--rig", none, "--interval", interval,
                  "--count", count], capsys) in (1, 2)
    assert _call(["rig", "clock", "--rig", none, "--seconds", seconds, "--every", seconds], capsys) == 2
    assert _call(["rig", "doctor", "--rig", none, "--planned-captures", planned], capsys) == 2
    code = _call(["sync", "check", str(small_session), "--no-plots", "--max-skew-us", skew], capsys)
    try:
        ok = math.isfinite(float(skew)) and float(skew) > 0
    except ValueError:
        ok = False
    assert code == (0 if ok else 2)


@pytest.mark.parametrize("argv, text", [
    (["sim", "session", "--out", "OUT", "--seed", "-1", "--captures", "1"], "--seed: must be in 0"),
    (["sim", "session", "--out", "/proc/x", "--captures", "1", "--size", "64x48", "--quiet"], "--out: cannot write"),
    (["sync", "check", "SESS", "--max-skew-us", "-1"], "--max-skew-us: must be a finite number > 0"),
    (["sync", "check", "SESS", "--max-skew-us", "nan"], "--max-skew-us: must be a finite number > 0"),
    (["capture", "run", "S", "--interval", "-5"], "--interval: must be a finite number >= 0"),
    (["capture", "run", "S", "--interval", "nan"], "--interval: must be a finite number >= 0"),
    (["rig", "up", "--virtual", "--adb-port", "5037", "--out", "D"], "--adb-port"),
    (["rig", "up", "--virtual", "--faults", "kill_adb_server=0", "--out", "D"], "must be a whole number >= 1"),
])
def test_listed_option_cases_are_one_line_exit_2(small_session, tmp_path, capsys, argv, text):
    argv = [a.replace("OUT", str(tmp_path / "o")).replace("SESS", str(small_session))
            .replace("D", str(tmp_path / "d")) if a in ("OUT", "SESS", "D") else a for a in argv]
    argv = [str(tmp_path / "s") if a == "S" else a for a in argv]
    assert _call(argv, capsys) == 2
    assert text in LAST_ERR["text"] and len(LAST_ERR["text"].strip().splitlines()) == 1, LAST_ERR["text"]


def test_symlinked_capture_folders_do_not_crash_sync_check(small_session, tmp_path, capsys):
    d = _copy(small_session, tmp_path)
    caps = d / "captures"
    (caps / "loop").symlink_to(caps / "loop")
    (caps / "dangling").symlink_to(tmp_path / "nowhere")
    (caps / "to_file").symlink_to(d / "session.json")
    shutil.move(str(caps / "c00001"), str(tmp_path / "elsewhere"))
    (caps / "c00001").symlink_to(tmp_path / "elsewhere")
    assert _call(["sync", "check", str(d), "--no-plots"], capsys) == 0
    assert _call(["session", "validate", str(d)], capsys) in (0, 1)
