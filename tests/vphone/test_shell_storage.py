"""The virtual phone's shell and storage, in-process (no adb)."""

import os

import pytest

from hzsr.core.errors import ConfigError, StorageError
from hzsr.vphone.shell import VirtualShell
from hzsr.vphone.storage import PhoneStorage
from hzsr.vphone.virtual_rig import parse_faults


@pytest.fixture
def sh(tmp_path):
    st = PhoneStorage(tmp_path / "phone")
    return VirtualShell({"ro.product.model": "M", "ro.serialno": "S1"}, st)


def test_operators_and_status(sh):
    r = sh.run("false; echo $? && echo ok || echo never")
    assert (r.stdout, r.rc) == (b"1\nok\n", 0)
    r = sh.run("nosuch; echo X4EXIT:$?")
    assert r.combined == b"/system/bin/sh: nosuch: inaccessible or not found\nX4EXIT:127\n"
    assert sh.run("echo 'a;b' && true").stdout == b"a;b\n"


def test_files(sh):
    assert sh.run("mkdir -p /sdcard/x/y && echo made").stdout == b"made\n"
    sh.storage.write_atomic("/sdcard/x/y/f.jpg", b"abc")
    assert sh.run("cat /sdcard/x/y/f.jpg").stdout == b"abc"
    assert sh.run("sha256sum /sdcard/x/y/f.jpg").stdout.split()[0] == (
        b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert sh.run("ls /sdcard/x/y").stdout == b"f.jpg\n"
    assert sh.run("rm /sdcard/x/y").rc == 1  # a folder needs -r
    assert sh.run("rm -r /sdcard/x && ls /sdcard/x").rc == 1
    assert sh.run("rm -f /sdcard/nothing").rc == 0


def test_df_dumpsys_settings_getprop(sh):
    assert b"/storage/emulated" in sh.run("df /sdcard").stdout
    assert b"level: 87" in sh.run("dumpsys battery").stdout
    assert sh.run("settings get system screen_off_timeout").stdout == b"600000\n"
    assert sh.run("getprop ro.serialno").stdout == b"S1\n"
    sh.storage.full = True
    assert b" 0 100%" in sh.run("df").stdout or b" 0 " in sh.run("df").stdout


def test_paths_never_escape(tmp_path):
    st = PhoneStorage(tmp_path / "phone")
    assert st.host_path("/sdcard/../../../etc/passwd") == st.root / "etc/passwd"
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, st.root / "sdcard" / "link")
    with pytest.raises(StorageError) as ei:
        st.host_path("/sdcard/link/x")
    assert ei.value.errno == 13
    with pytest.raises(StorageError):
        st.remove("/")


def test_storage_full_refuses_writes(tmp_path):
    st = PhoneStorage(tmp_path / "phone")
    st.full = True
    with pytest.raises(StorageError) as ei:
        st.write_atomic("/sdcard/a", b"x")
    assert ei.value.errno == 28


def test_fault_spec():
    fs = parse_faults("drop_after_bytes=1000@reference, stall@main,flip_byte")
    assert [(f.name, f.value, f.role) for f in fs] == [
        ("drop_after_bytes", 1000.0, "reference"), ("stall", None, "main"), ("flip_byte", None, None)]
    for bad, msg in (("nosuch", "unknown fault 'nosuch'"), ("stall=3", "takes no value"),
                     ("drop_after_bytes", "needs a value"), ("clock_jump_ms=x", "not a number"),
                     ("stall@left", "role must be"), ("drop_after_bytes=inf", "whole number"),
                     ("kill_adb_server=2.5", "whole number")):
        with pytest.raises(ConfigError, match=msg):
            parse_faults(bad)


def test_unknown_profile_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "hzsr.cli", "rig", "up", "--virtual", "--out", str(tmp_path),
                        "--profile", "pixel99"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--profile: unknown phone profile 'pixel99'" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("line, out, rc", [
    ("echo hi > /sdcard/f; echo more >> /sdcard/f; cat /sdcard/f | wc -l", b"2\n", 0),
    ("echo -n a; echo -e 'b\\tc\\x41\\0101'; echo -e 'x\\cy'", b"ab\tcAA\nxy", 0),  # mksh: \c drops the newline only
    ("echo 'a  b;c' \"$?-\\$(x)\" $(echo 'sub   split') \"$(echo 'kept   spaces')\"",
     b"a  b;c 0-$(x) sub split kept   spaces\n", 0),
    ("false; echo $? && false || echo or", b"1\nor\n", 0),
    ("ls /nope 2>&1 >/dev/null | grep -c nope", b"1\n", 0),
    ("cat < /nope", b"", 1),
    ("frob; echo $?", b"127\n", 0),
    ("if true; then echo; fi", b"", 2),
    ("echo a | | b", b"", 2),
    ("echo 'open", b"", 2),
    ("sleep 0 &", b"", 2),
    ("[ \"$(getprop ro.serialno)\" = S1 ] && echo yes", b"yes\n", 0),
    ("sh -c 'echo in; exit 3'; echo $?", b"in\n3\n", 0),
    ("printf '%s=%d\\n' a 5", b"a=5\n", 0),
])
def test_shell_syntax(sh, line, out, rc):
    r = sh.run(line)
    assert (r.stdout, r.rc) == (out, rc), r


def test_globs_redirect_errors_and_read_only(sh):
    sh.run("mkdir -p /sdcard/g && touch /sdcard/g/a.jpg /sdcard/g/b.jpg /sdcard/g/c.txt")
    assert sh.run("ls /sdcard/g/*.jpg").stdout == b"/sdcard/g/a.jpg\n/sdcard/g/b.jpg\n"
    assert sh.run("echo /sdcard/g/*.png").stdout == b"/sdcard/g/*.png\n"  # no match: literal
    assert sh.run("echo '/sdcard/g/*.jpg'").stdout == b"/sdcard/g/*.jpg\n"  # quoted: no glob
    r = sh.run("rm /sdcard/g/a.jpg > /system/log")  # the redirect fails first: rm never runs
    assert r.rc == 1 and r.stderr == b"/system/bin/sh: can't create /system/log: Read-only file system\n"
    assert (sh.storage.root / "sdcard/g/a.jpg").exists()
    for line in ("mkdir /system/x", "touch /vendor/x", "rm /system/build.prop", "cp /sdcard/g/c.txt /product/",
                 "mv /sdcard/g/c.txt /system/bin/"):
        r = sh.run(line)
        assert r.rc == 1 and b"Read-only file system" in r.stderr, (line, r)
    r = sh.run("ls /data")
    assert r.rc == 1 and r.stderr == b"ls: /data: Permission denied\n"
    assert sh.run("ls /data/local/tmp").rc == 0 and sh.run("touch /data/local/tmp/x").rc == 0
    assert sh.run("setprop ro.serialno X").rc == 1 and sh.run("getprop ro.serialno").stdout == b"S1\n"


def test_stdin_is_read_only_by_commands_that_want_it(sh):
    calls = []

    def stdin():
        calls.append(1)
        return b"l1\nl2\n"

    assert sh.run("echo x; wc -l", stdin).stdout == b"x\n2\n"
    assert sh.run("echo y", stdin).stdout == b"y\n"
    assert sh.run("cat /system/build.prop > /dev/null; head -n 1 -", stdin).stdout == b"l1\n"
    assert len(calls) == 2
