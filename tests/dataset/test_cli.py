"""The dataset verbs' summaries, --json, and one-line errors with the README's exit codes."""

import json
import os
import subprocess
import sys

import pytest

from hzsr.dataset.pack import parse_shard_size


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hzsr.cli", *map(str, args)], capture_output=True, text=True,
                          env=os.environ, timeout=300)


def test_pack_summary_filter_and_info(sessions, tmp_path):
    ds = tmp_path / "ds"
    r = _cli("dataset", "pack", *sessions, "--out", ds, "--filter", "verdict != 'fail'", "--shard-size", "2",
             "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["filtered_out"] == 1 and out["captures"] == 7  # sB/c00002 failed QA
    assert out["shards_written"] == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5", "shard-00003.h5"]
    r = _cli("dataset", "info", ds, "--json")
    info = json.loads(r.stdout)
    assert info["captures"] == 7 and info["by_verdict"]["warn"]["captures"] == 1
    assert set(info["by_kind"]) == {"portrait", "architecture", "landscape", "night"}
    assert info["by_device"]["HZSR Virtual 5x"]["captures"] == 7
    r = _cli("dataset", "info", ds)
    assert r.returncode == 0 and "by scene kind:" in r.stdout and "7 captures" in r.stdout


@pytest.mark.parametrize("args,code,line", [
    (["pack", "{tmp}/nope", "--out", "{tmp}/o"], 2, "hzsr: error: {tmp}/nope: session folder not found"),
    (["pack", "{s0}", "--out", "{tmp}/o", "--shard-size", "big"], 2,
     "hzsr: error: --shard-size: expected a capture count (64) or a size (1GiB, 500MB), got 'big'"),
    (["pack", "{s0}", "--out", "{tmp}/o", "--filter", "verdict = 'fail'"], 2,
     "hzsr: error: --filter: bad expression \"verdict = 'fail'\": at character 9: '=' is not a comparison; use '=='"),
    (["verify", "{tmp}"], 2, "hzsr: error: {tmp}: not a data set: no shards/ folder"),
    (["split", "{tmp}", "--ratios", "0.5,0.6"], 2,
     "hzsr: error: --ratios: need two or more non-negative ratios summing to 1, got '0.5,0.6'"),
])
def test_one_line_errors(sessions, tmp_path, args, code, line):
    fill = {"tmp": tmp_path, "s0": sessions[0]}
    r = _cli("dataset", *[a.format(**fill) for a in args])
    assert r.returncode == code, r.stderr
    assert r.stderr.strip() == line.format(**fill)


def test_bad_capture_json_is_one_line(sessions, tmp_path):
    # A file that is not JSON could not be read: exit 2 (core/errors.py), as `sync check` exits on it.
    (sessions[0] / "session.json").write_text("{not json")
    r = _cli("dataset", "pack", sessions[0], "--out", tmp_path / "o")
    assert r.returncode == 2
    assert r.stderr.startswith(f"hzsr: error: {sessions[0]}/session.json: line 1: invalid JSON")
    assert len(r.stderr.splitlines()) == 1


def test_parse_shard_size():
    assert parse_shard_size("64") == ("captures", 64)
    assert parse_shard_size("1GiB") == ("bytes", 2**30)
    assert parse_shard_size("500MB") == ("bytes", 500e6)


def test_dataset_does_not_import_torch():
    code = ("import sys, hzsr.dataset.reader, hzsr.dataset.pack, hzsr.dataset.cli, hzsr.dataset.verify; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_damaged_frames(sessions, tmp_path):
    # A truncated JPEG is seen before packing: that capture is skipped, with the reason, the rest packed.
    t = sessions[0] / "captures" / "c00001" / "main_T.jpg"
    t.write_bytes(t.read_bytes()[:-100])
    r = _cli("dataset", "pack", *sessions, "--out", tmp_path / "ds", "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["captures"] == 7
    assert f"warning: {t}: frames[1].size_bytes: file has" in r.stderr
    # A flipped byte (same size) is caught by the phone's sha256 while packing: one line, exit 1.
    w = sessions[1] / "captures" / "c00000" / "main_W.jpg"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0xFF
    w.write_bytes(bytes(data))
    r = _cli("dataset", "pack", *sessions, "--out", tmp_path / "ds2", "--quiet")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == (
        f"hzsr: error: {w}: sha256: file changed since capture: its sha256 differs from capture.json's "
        "(run `hzsr session validate`)")
