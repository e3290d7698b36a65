import json
import os
import subprocess
import sys

from hzsr.core.fileio import atomic_write_json, sha256_file
from hzsr.core.journal import Journal


def test_atomic_write_leaves_no_temp_and_replaces(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"v": 1})
    atomic_write_json(p, {"v": 2})
    assert json.loads(p.read_text()) == {"v": 2}
    assert os.listdir(tmp_path) == ["a.json"]


def test_killed_writer_never_leaves_half_a_file(tmp_path):
    """A process killed mid-way through many atomic writes leaves the old or the new file whole."""
    p = tmp_path / "state.json"
    atomic_write_json(p, {"i": -1, "pad": "x" * 100_000})
    code = (
        "import sys; from hzsr.core.fileio import atomic_write_json\n"
        f"for i in range(100000): atomic_write_json({str(p)!r}, {{'i': i, 'pad': 'x' * 100000}})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    import time

    time.sleep(1.0)
    proc.kill()
    proc.wait()
    data = json.loads(p.read_text())
    assert data["pad"] == "x" * 100_000 and data["i"] >= -1


def test_journal_append_and_torn_tail(tmp_path):
    j = Journal(tmp_path / "journal.jsonl")
    j.append("trigger", capture_id="c1")
    j.append("verified", capture_id="c1", file="main_W.jpg")
    with open(j.path, "a") as f:
        f.write('{"event": "pulled", "capt')  # the process died mid-line
    res = j.read()
    assert [e["event"] for e in res.events] == ["trigger", "verified"]
    assert res.bad_lines == [3]
    assert len(j.require_clean()) == 2  # a torn last line is not fatal


def test_sha256_file(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
