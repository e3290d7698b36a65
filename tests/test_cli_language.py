"""One language across the commands: help and defaults on every option, workflow order, old spellings.

Walks the whole parser tree, so a verb added later without help text fails here.
"""

from __future__ import annotations

import argparse
import re

import pytest

from hzsr.cli import build_parser, main, rewrite_deprecated

WORKFLOW = ["rig", "capture", "session", "sync", "qa", "dataset", "model", "sim", "demo", "status"]


def _verbs(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) of every parser in the tree, the root included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _verbs(sub, (*path, name))


def _options(parser: argparse.ArgumentParser):
    for a in parser._actions:
        if a.option_strings and not isinstance(a, argparse._HelpAction):
            yield a


def test_every_option_has_help_and_shows_its_default():
    parser = build_parser()
    missing, no_default = [], []
    for path, sub in _verbs(parser):
        text = sub.format_help()
        for a in _options(sub):
            name = f"hzsr {' '.join(path)} {a.option_strings[-1]}"
            if not (a.help or "").strip() or a.help is argparse.SUPPRESS:
                missing.append(name)
                continue
            shown = sub._get_formatter()._expand_help(a) if "%(" in a.help else a.help
            formatted = sub._get_formatter()._get_help_string(a)
            if not re.search(r"default|required", formatted, re.I):
                no_default.append(f"{name}: {shown!r}")
        assert "%(default)" not in text  # every placeholder was expanded
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose help shows no default: {no_default}"


def test_help_output_shows_defaults_and_metavars(capsys):
    with pytest.raises(SystemExit):
        main(["capture", "purge", "--help"])
    out = capsys.readouterr().out
    assert "RESUME_RIG" not in out and "--rig RIG" in out and "default: the one the session used" in out
    with pytest.raises(SystemExit):
        main(["capture", "run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--count COUNT number of captures to take (default: 1)" in out
    assert "(default: .hzsr-rig/rig.yaml, which hzsr rig up --virtual writes)" in out
    assert "--no-phase-align" in out and "(default: off, align them)" in out


def test_top_help_is_plain_text_in_workflow_order(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out and ":class:" not in out
    listed = [m.group(1) for m in re.finditer(r"^    (\w+)\s{2,}", out, re.M)]
    expected = [s for s in WORKFLOW if s in listed]
    assert listed == expected and listed[:8] == WORKFLOW[:8]
    assert ".hzsr-rig/rig.yaml" in out


def test_verbs_work_on_a_positional_folder_and_out_only_creates():
    """The folder a verb works on is a positional argument; ``--out`` is never required to exist."""
    parser = build_parser()
    for path, sub in _verbs(parser):
        names = {s for a in _options(sub) for s in a.option_strings}
        assert not names & {"--session", "--dir", "--data", "--source", "--onnx"}, (path, names)


@pytest.mark.parametrize("old,new", [
    (["capture", "--rig", "R", "--session", "S", "--count", "3"],
     ["capture", "run", "S", "--rig", "R", "--count", "3"]),
    (["capture", "--session=S", "--interactive"], ["capture", "run", "S", "--interactive"]),
    (["rig", "up", "--virtual", "--dir", "D", "--background"],
     ["rig", "up", "--virtual", "--out", "D", "--background"]),
    (["rig", "up", "--virtual", "--dir=D"], ["rig", "up", "--virtual", "--out", "D"]),
    (["model", "train", "--data", "DS", "--out", "RUN"], ["model", "train", "DS", "--out", "RUN"]),
    (["model", "eval", "--ckpt", "m.pt", "--data", "DS"], ["model", "eval", "DS", "--ckpt", "m.pt"]),
    (["model", "infer", "--source", "w.jpg", "--ref", "t.jpg", "--out", "o.png"],
     ["model", "infer", "w.jpg", "--ref", "t.jpg", "--out", "o.png"]),
    (["model", "export", "--onnx", "m.onnx"], ["model", "export", "--out", "m.onnx"]),
])
def test_old_spellings_are_rewritten_with_a_warning(old, new):
    got, warnings = rewrite_deprecated(old)
    assert got == new
    assert len(warnings) == 1 and "deprecated" in warnings[0]
    assert build_parser().parse_args(got)  # and the new spelling parses


@pytest.mark.parametrize("argv", [
    ["capture", "run", "S", "--rig", "R"], ["capture", "resume", "S"], ["capture", "purge", "S", "--rig", "R"],
    ["rig", "up", "--virtual", "--out", "D"], ["sync", "check", "S", "--json"], ["capture", "--help"],
    ["model", "infer", "--ref", "--source"],  # values that look like old options are left alone
])
def test_new_spellings_are_left_alone(argv):
    assert rewrite_deprecated(argv) == (argv, [])


def test_old_capture_spelling_runs_with_one_warning_line(tmp_path, capsys):
    """``hzsr capture --session D`` still reaches ``capture run D``: same one-line error as the new one."""
    rig = str(tmp_path / "none.yaml")
    assert main(["capture", "--rig", rig, "--session", str(tmp_path / "s")]) == 2
    old = capsys.readouterr().err.splitlines()
    assert main(["capture", "run", str(tmp_path / "s"), "--rig", rig]) == 2
    new = capsys.readouterr().err.splitlines()
    assert len(old) == 2 and old[0].startswith("hzsr: warning: '--session ") and "capture run" in old[0]
    assert old[1:] == new and len(new) == 1 and "none.yaml" in new[0]


def test_old_rig_up_spelling_runs_with_one_warning_line(tmp_path, capsys):
    assert main(["rig", "up", "--virtual", "--dir", str(tmp_path / "r"), "--scene", "disco"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("hzsr: warning: '--dir ") and "'--out " in err[0]
    assert len(err) == 2 and "--scene" in err[1]


def test_capture_line_speaks_pass_warn_fail_and_advises_a_retake():
    from hzsr.capture.session_run import CaptureResult

    def line(verdict, reason=""):
        return CaptureResult("c00007", "complete", skew_us=1500.4, bound_us=60.0, verdict=verdict, reason=reason).line()

    assert line("pass") == "c00007: skew +1500 us (bound +-60 us): pass"
    assert line("fail", "skew surely above 1000 us") == \
        "c00007: skew +1500 us (bound +-60 us): fail: skew surely above 1000 us; retake"
    assert CaptureResult("c00008", "abandoned", reason="camera_error").line() == "c00008: abandoned: camera_error"


# -- issue 22: broken pipe, "did you mean" ------------------------------------------------------
@pytest.mark.parametrize("argv, hint", [
    (["dataset", "pack", "s", "--out", "o", "--shard-sise", "3"], "did you mean --shard-size?"),
    (["dataset", "verify", "d", "--repiar"], "did you mean --repair?"),
    (["datset", "info", "d"], "did you mean 'dataset'?"),
    (["dataset", "verfy", "d"], "did you mean 'verify'?"),
])
def test_typos_get_did_you_mean(argv, hint, capsys):
    from hzsr.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hzsr") and err.endswith(hint), err


def test_no_suggestion_for_a_far_typo(capsys):
    from hzsr.cli import main

    with pytest.raises(SystemExit):
        main(["dataset", "verify", "d", "--zzzzzz"])
    assert "did you mean" not in capsys.readouterr().err


def test_broken_pipe_is_silent(tmp_path):
    """`hzsr ... | head`: the reader is gone before hzsr writes; hzsr says nothing and exits 0."""
    import os
    import subprocess
    import sys

    for argv in (["--help"], ["sim", "session", "--out", str(tmp_path / "s"), "--captures", "1", "--size", "64x48",
                              "--quiet"]):
        r, w = os.pipe()
        os.close(r)  # the reader (head) has exited: every write to w fails with EPIPE
        try:
            p = subprocess.run([sys.executable, "-m", "hzsr.cli", *argv], stdout=w, stderr=subprocess.PIPE,
                               text=True, timeout=120)
        finally:
            os.close(w)
        assert p.returncode == 0 and p.stderr == "", p.stderr
    assert (tmp_path / "s" / "session.json").is_file()  # the work was done; only its summary went nowhere


@pytest.mark.parametrize("n", ["1", "0", "-3", "5000"])
def test_demo_captures_is_validated_before_anything_runs(n, tmp_path, capsys):
    """Out-of-range counts are refused up front; 2 .. 5 captures get one scene each for train and test
    (`Demo.split_ratios`; `hzsr demo --captures 4` once failed at eval with an empty test split)."""
    from hzsr.cli import main

    assert main(["demo", "--captures", n, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hzsr: error: --captures: must be in 2 .. 1000 (two scenes at least: one to train on, one to "
                   f"test), got {n}"]
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("n, per_scene, ratios", [(2, 1, "0.5,0,0.5"), (3, 1, "0.5,0.25,0.25"),
                                                  (4, 2, "0.5,0,0.5"), (6, 2, "0.5,0.25,0.25"),
                                                  (16, 2, "0.5,0.25,0.25")])
def test_small_demos_still_get_a_test_scene(n, per_scene, ratios, tmp_path):
    from hzsr.demo import Demo, DemoConfig

    d = Demo(DemoConfig(out=tmp_path / "d", captures=n))
    assert (d.per_scene, d.split_ratios) == (per_scene, ratios)
