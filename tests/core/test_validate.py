import json
import subprocess
import sys

import pytest

from hzsr.cli import main
from hzsr.core.validate import validate_session


def _errors(d):
    return [f for f in validate_session(d) if f.severity == "error"]


def test_clean_session_is_valid(sim_session, capsys):
    assert _errors(sim_session) == []
    assert main(["session", "validate", str(sim_session)]) == 0
    assert capsys.readouterr().out == f"{sim_session}: pass: 0 errors, 0 warnings; wrote nothing\n"


def _capture_json(d, cid="c00001"):
    return d / "captures" / cid / "capture.json"


def _mutate_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


CORRUPTIONS = {
    "truncated_jpeg": (
        lambda d: _truncate(d / "captures/c00001/main_T.jpg", 5000),
        ["captures/c00001/main_T.jpg: frames[1].sha256", "truncated JPEG", "frames[1].size_bytes"],
    ),
    "flipped_byte": (
        lambda d: _flip(d / "captures/c00002/ref_T.jpg", 3000),
        ["captures/c00002/ref_T.jpg: frames[2].sha256: mismatch"],
    ),
    "missing_field": (
        lambda d: _mutate_json(_capture_json(d), lambda j: j["frames"][0].pop("sensor_timestamp_ns")),
        ["captures/c00001/capture.json: frames[0].sensor_timestamp_ns: missing required field"],
    ),
    "wrong_type": (
        lambda d: _mutate_json(_capture_json(d), lambda j: j["frames"][1].__setitem__("width", "640")),
        ["captures/c00001/capture.json: frames[1].width: expected integer, got str"],
    ),
    "missing_file": (
        lambda d: (d / "captures/c00003/main_W.jpg").unlink(),
        ["captures/c00003/main_W.jpg: frames[0].file: missing file"],
    ),
    "broken_json": (
        lambda d: _capture_json(d).write_text('{"capture_id": "c00001", '),
        ["captures/c00001/capture.json: line 1: invalid JSON"],
    ),
    "bad_session_json": (
        lambda d: _mutate_json(d / "session.json", lambda j: j["devices"][0].__setitem__("serial", 5)),
        ["session.json: devices[0].serial: expected str, got int"],
    ),
}


def _truncate(path, n):
    path.write_bytes(path.read_bytes()[:n])


def _flip(path, offset):
    b = bytearray(path.read_bytes())
    b[offset] ^= 0x40
    path.write_bytes(bytes(b))


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_is_named_and_fails(sim_session, name):
    corrupt, expected = CORRUPTIONS[name]
    corrupt(sim_session)
    proc = subprocess.run([sys.executable, "-m", "hzsr.cli", "session", "validate", str(sim_session)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    for needle in expected:
        assert needle in proc.stderr, proc.stderr
    # The other captures are still checked: only the corrupted one is reported.
    assert "c00000" not in proc.stderr


def test_declared_size_mismatch_named(sim_session):
    _mutate_json(_capture_json(sim_session, "c00000"), lambda j: j["frames"][0].__setitem__("width", 321))
    (f,) = _errors(sim_session)
    assert f.field == "frames[0].width/height" and "declared 321x240" in f.message


def test_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["session", "validate", str(tmp_path / "nope")]) == 2  # could not be read
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a folder" in err[0]


def test_journal_torn_tail_warns_interior_corruption_errors(sim_session):
    j = sim_session / "journal.jsonl"
    with open(j, "a") as f:
        f.write('{"event": "pulled", "capt')
    found = validate_session(sim_session)
    assert [(f.severity, f.file) for f in found] == [("warning", "journal.jsonl")]
    lines = j.read_text().splitlines()
    lines.insert(2, "garbage")
    j.write_text("\n".join(lines) + "\n")
    errs = _errors(sim_session)
    assert [(f.file, f.field, f.message) for f in errs] == [("journal.jsonl", "line 3", "unparseable line")]


def test_truncated_jpeg_resealed_is_an_error_naming_the_file(sim_session):
    """Cut in half, EOI appended, sha256 and size re-sealed: libjpeg decodes it with a warning."""
    from hzsr.core.fileio import sha256_file

    cdir = sim_session / "captures" / "c00000"
    img = cdir / "main_T.jpg"
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    _mutate_json(cdir / "capture.json", lambda j: [fr.update(sha256=sha256_file(img), size_bytes=img.stat().st_size)
                                                  for fr in j["frames"] if fr["file"] == "main_T.jpg"])
    (f,) = _errors(sim_session)
    assert f.file == "captures/c00000/main_T.jpg" and "corrupt JPEG" in f.message


@pytest.mark.parametrize("field, value, msg", [
    ("sensor_timestamp_ns", -5, "must be >= 0"),
    ("sensor_timestamp_ns", 10**30, "beyond about 31 years"),
    ("sensor_timestamp_ns", 1e30, "expected integer, got float"),
    ("exposure_time_ns", 10**15, "beyond 10 minutes"),
    ("focus_distance_diopters", float("nan"), "expected a finite number"),
])
def test_absurd_numbers_are_errors(sim_session, field, value, msg):
    _mutate_json(_capture_json(sim_session, "c00001"), lambda j: j["frames"][0].__setitem__(field, value))
    (f,) = _errors(sim_session)
    assert f.field == f"frames[0].{field}" and msg in f.message, f


def test_validate_lines_put_the_path_first(sim_session, capsys):
    img = sim_session / "captures" / "c00000" / "ref_T.jpg"
    img.write_bytes(img.read_bytes()[:-100])
    assert main(["session", "validate", str(sim_session)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith(f"error: {sim_session}/captures/c00000/ref_T.jpg: ") for line in err), err


def test_files_follow_the_umask(tmp_path):
    import os

    from hzsr.core.fileio import atomic_write_bytes

    for mask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
        old = os.umask(mask)
        try:
            atomic_write_bytes(tmp_path / f"f{mask}", b"x")
        finally:
            os.umask(old)
        assert (tmp_path / f"f{mask}").stat().st_mode & 0o777 == mode
