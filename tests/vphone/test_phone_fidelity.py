"""The virtual phone answers as a real Android 13-15 phone does, through the adb binary and adbutils."""

import os
import shlex
import socket
import threading
import time

import pytest
from adbutils import AdbError

from hzsr.capture.adb_server import AdbServer
from hzsr.sim.profiles import VPHONE_5X
from hzsr.vphone.phone import VirtualPhone

pytestmark = pytest.mark.adb


@pytest.fixture(scope="module")
def rig():
    server = AdbServer.start()
    phone = VirtualPhone(VPHONE_5X, "VPH5XFID001")
    assert "connected" in server.run("connect", phone.address).stdout
    client = server.client()
    t0 = time.time()
    while time.time() - t0 < 10 and {d.serial: d.state for d in client.list()}.get(phone.address) != "device":
        time.sleep(0.1)
    yield server, phone, client.device(phone.address)
    phone.stop()
    server.stop()


def adb(rig, *args):
    server, phone, _ = rig
    return server.run("-s", phone.address, *args)


# -- sync: ls / stat / pull / push --------------------------------------------------------------
def test_sync_missing_paths(rig, tmp_path):
    _, _, d = rig
    r = adb(rig, "ls", "/nope")  # adbd answers DONE with nothing
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert d.sync.list("/nope") == []
    st = d.sync.stat("/nope")
    assert (st.mode, st.size) == (0, 0)
    with pytest.raises(AdbError, match="No such file or directory"):
        d.sync.read_bytes("/sdcard/nope.jpg")
    r = adb(rig, "pull", "/sdcard/nope.jpg", str(tmp_path / "x"))
    assert r.returncode == 1 and "No such file or directory" in r.stderr
    assert d.shell("echo still-serving").strip() == "still-serving"


def test_sync_file_empty_dir_denied(rig):
    _, phone, d = rig
    d.shell("mkdir -p /sdcard/empty")
    assert adb(rig, "ls", "/sdcard/empty").stdout.split()[3::4] == [".", ".."]
    assert [e.path for e in d.sync.list("/sdcard/empty")] == [".", ".."]
    assert adb(rig, "ls", "/system/build.prop").stdout == ""  # opendir() of a file fails
    assert d.sync.list("/system/build.prop") == []
    assert d.sync.stat("/system/build.prop").size > 0
    assert adb(rig, "ls", "/data").stdout == "" and d.sync.list("/data") == []  # EACCES
    assert "sys.boot_completed=1" not in d.sync.read_text("/system/build.prop")  # only ro.*
    assert "ro.build.version.sdk=35" in d.sync.read_text("/system/build.prop")


def test_push_to_read_only_partitions_fails(rig, tmp_path):
    _, phone, d = rig
    f = tmp_path / "f.bin"
    f.write_bytes(b"payload")
    for dest, msg in (("/system/x", "remote couldn't create file: Read-only file system"),
                      ("/vendor/etc/x", "remote couldn't create file: Read-only file system"),
                      ("/product/new/x", "remote secure_mkdirs failed: Read-only file system"),
                      ("/data/system/x", "Permission denied")):
        r = adb(rig, "push", str(f), dest)
        assert r.returncode == 1 and msg in r.stderr, (dest, r.stderr)
    assert not (phone.storage.root / "system/x").exists()
    with pytest.raises(AdbError):
        d.sync.push(b"x", "/system/y")
    r = adb(rig, "shell", "echo x > /system/z")
    assert r.returncode == 1 and "can't create /system/z: Read-only file system" in r.stderr
    assert d.shell2("touch /product/etc/x").returncode == 1
    r = adb(rig, "push", str(f), "/sdcard/Download/f.bin")
    assert r.returncode == 0 and d.sync.read_bytes("/sdcard/Download/f.bin") == b"payload"


# -- the shell ---------------------------------------------------------------------------------
def test_pipes_redirects_and_status(rig):
    _, _, d = rig
    r = adb(rig, "shell", "dumpsys battery | grep level")
    assert r.stdout == "  level: 87\n"
    assert d.shell2("echo hi > /sdcard/r.txt; echo there >> /sdcard/r.txt; wc -l < /sdcard/r.txt").output == "2\n"
    assert d.shell2("cat /sdcard/r.txt | head -n 1 | frob 2>/dev/null; echo $?").output == "127\n"
    assert d.shell2("cat /sdcard/r.txt | tail -n 1").output == "there\n"
    r = d.shell2("ls /nope 2>&1 | wc -c; false || echo recovered && echo chained")
    assert r.output == "37\nrecovered\nchained\n"
    assert adb(rig, "shell", "echo -n a; echo -e 'b\\tc'").stdout == "ab\tc\n"
    r = adb(rig, "shell", "frobnicate --now")
    assert r.returncode == 127 and r.stderr == "/system/bin/sh: frobnicate: inaccessible or not found\n"
    r = adb(rig, "shell", "while true; do sleep 1; done")  # not modelled: says so, exit 2
    assert r.returncode == 2 and "not modelled" in r.stderr


@pytest.mark.parametrize("name", ["with space", "it's \"quoted\"", "a;b&&c|d", "$(id)`id`$HOME", "ünï 日本 🙂"])
def test_quoted_names_pass_through(rig, name):
    _, _, d = rig
    path = f"/sdcard/Download/{name}/f.jpg"
    d.sync.push(b"jpeg bytes", path)
    q = shlex.quote(path)
    r = d.shell2(f"sha256sum {q} && ls {shlex.quote(path.rsplit('/', 1)[0])}")
    assert r.returncode == 0, r.output
    assert r.output.splitlines()[0].endswith(f"  {path}") and r.output.splitlines()[1] == "f.jpg"
    r = adb(rig, "shell", f"stat -c %s {q}")
    assert (r.returncode, r.stdout) == (0, "10\n")
    assert d.shell2(f"rm -r {shlex.quote(path.rsplit('/', 1)[0])}").returncode == 0
    assert d.sync.stat(path).mode == 0


COMMANDS = {
    "cat": "cat /system/build.prop", "echo": "echo x", "ls": "ls /sdcard", "mkdir": "mkdir -p /sdcard/c/d",
    "touch": "touch /sdcard/c/d/f", "cp": "cp /sdcard/c/d/f /sdcard/c/g", "mv": "mv /sdcard/c/g /sdcard/c/h",
    "stat": "stat /sdcard/c/h", "wc": "wc -c /system/build.prop", "head": "head -n 2 /system/build.prop",
    "tail": "tail -n 2 /system/build.prop", "grep": "grep sdk /system/build.prop", "sleep": "sleep 0.01",
    "pwd": "pwd", "df": "df /sdcard", "du": "du -s /sdcard/c", "getprop": "getprop ro.product.model",
    "setprop": "setprop debug.hzsr.x 1", "sha256sum": "sha256sum /sdcard/c/h", "md5sum": "md5sum /sdcard/c/h",
    "date": "date +%s", "id": "id", "uname": "uname -a", "dumpsys": "dumpsys battery",
    "rm": "rm /sdcard/c/h /sdcard/c/d/f", "rmdir": "rmdir /sdcard/c/d",
}


def test_common_commands(rig):
    _, _, d = rig
    for name, line in COMMANDS.items():  # in order: later ones use what earlier ones made
        r = adb(rig, "shell", line)
        assert r.returncode == 0 and "not found" not in r.stderr, (name, r.stderr)
    assert d.shell("getprop debug.hzsr.x").strip() == "1"
    assert d.shell2("ls /sdcard/c").output == ""
    assert adb(rig, "shell", "pwd").stdout == "/\n"
    assert adb(rig, "shell", "id -u").stdout == "2000\n"


def test_standard_properties(rig):
    _, phone, d = rig
    want = {"ro.build.version.sdk": "35", "ro.build.version.release": "15", "ro.product.cpu.abi": "arm64-v8a",
            "sys.boot_completed": "1", "ro.serialno": "VPH5XFID001", "ro.product.manufacturer": "hzsr",
            "ro.product.model": "HZSR Virtual 5x", "ro.product.device": "v5x",
            "ro.build.fingerprint": VPHONE_5X.build_fingerprint}
    for k, v in want.items():
        assert adb(rig, "shell", "getprop", k).stdout == v + "\n"
        assert d.getprop(k) == v
    # The usual "wait for boot" loop of a host script ends at once.
    assert adb(rig, "wait-for-device", "shell", "getprop sys.boot_completed").stdout.strip() == "1"
    assert d.prop.model == "HZSR Virtual 5x"


# -- exec: and reverse: ------------------------------------------------------------------------
def test_exec_out_is_raw(rig):
    _, _, d = rig
    blob = bytes(range(256)) * 3 + b"\r\n\n\r"
    d.sync.push(blob, "/sdcard/blob.bin")
    server, phone, _ = rig
    import subprocess

    raw = subprocess.run([server.adb, "-P", str(server.port), "-s", phone.address, "exec-out",
                          "cat /sdcard/blob.bin"], capture_output=True, timeout=20)
    assert raw.returncode == 0 and raw.stdout == blob  # no pty: no \n -> \r\n, no stripping
    with d.open_transport() as c:  # adbutils, the same service
        c.send_command("exec:cat /sdcard/blob.bin")
        c.check_okay()
        got = b""
        while chunk := c.read(65536):
            got += chunk
    assert got == blob


def test_reverse_forward(rig):
    _, phone, _ = rig
    host = socket.socket()
    host.bind(("127.0.0.1", 0))
    host.listen(1)
    port = host.getsockname()[1]

    def serve():
        c, _ = host.accept()
        c.sendall(b"host saw " + c.recv(100))
        c.close()

    threading.Thread(target=serve, daemon=True).start()
    assert adb(rig, "reverse", "tcp:7777", f"tcp:{port}").returncode == 0
    assert adb(rig, "reverse", "--list").stdout.split()[1:] == ["tcp:7777", f"tcp:{port}"]
    r = adb(rig, "reverse", "--no-rebind", "tcp:7777", f"tcp:{port}")
    assert r.returncode == 1 and "cannot rebind existing socket" in r.stderr
    app = socket.create_connection(("127.0.0.1", phone.device_port(7777)), timeout=5)  # an app on the phone
    app.sendall(b"hello")
    assert app.recv(100) == b"host saw hello"
    app.close()
    assert adb(rig, "reverse", "--remove", "tcp:7777").returncode == 0
    r = adb(rig, "reverse", "--remove", "tcp:7777")
    assert r.returncode == 1 and "listener 'tcp:7777' not found" in r.stderr
    assert phone.device_port(7777) is None
    r = adb(rig, "reverse", "localabstract:foo", f"tcp:{port}")
    assert r.returncode == 1 and "models only tcp:PORT" in r.stderr
    # The same through adbutils.
    d = rig[2]
    threading.Thread(target=serve, daemon=True).start()
    d.reverse("tcp:7778", f"tcp:{port}")
    assert [(i.remote, i.local) for i in d.reverse_list()] == [("tcp:7778", f"tcp:{port}")]
    with pytest.raises(AdbError, match="cannot rebind"):
        d.reverse("tcp:7778", f"tcp:{port}", norebind=True)
    app = socket.create_connection(("127.0.0.1", phone.device_port(7778)), timeout=5)
    app.sendall(b"again")
    assert app.recv(100) == b"host saw again"
    app.close()
    d.reverse_remove_all()
    assert d.reverse_list() == [] and phone.device_port(7778) is None
    host.close()


def test_stdin_reaches_commands(rig):
    import subprocess

    server, phone, d = rig
    base = [server.adb, "-P", str(server.port), "-s", phone.address]

    def run(args, data):
        return subprocess.run(base + args, input=data, capture_output=True, timeout=20)

    assert run(["shell", "cat"], b"piped in\n").stdout == b"piped in\n"  # shell v2 stdin packets
    assert run(["shell", "wc -c"], b"12345").stdout == b"5\n"
    assert run(["shell", "sh"], b"echo from-script; getprop sys.boot_completed\n").stdout == b"from-script\n1\n"
    blob = bytes(range(256)) * 4
    assert run(["exec-in", "cat > /sdcard/in.bin"], blob).returncode == 0  # raw stdin
    # adb exec-in returns once it has closed the stream, which is the command's end of stdin, not
    # its end (adbd's bare pipe: the command runs on, as on a real phone), so under load `cat` may
    # still be writing: wait for the bytes, not a fixed time (a busy CI run read b"" here).
    deadline = time.monotonic() + 20
    while (got := d.sync.read_bytes("/sdcard/in.bin")) != blob and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got == blob
    r = run(["shell"], b"")
    assert r.returncode == 1 and b"interactive shells are not supported" in r.stderr


def test_push_of_a_symlink_makes_a_symlink(rig, tmp_path):
    """adb pushes the links of a folder as links (SEND with S_IFLNK, data = target + NUL)."""
    _, phone, d = rig
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "real.txt").write_text("t\n")
    os.symlink("/sdcard/Download/tree/real.txt", tree / "abs-link")
    os.symlink("../../../../../../etc/passwd", tree / "up-link")
    r = adb(rig, "push", str(tree), "/sdcard/Download/")
    assert r.returncode == 0, r
    host = phone.storage.host_path("/sdcard/Download/tree/abs-link")
    assert host.is_symlink()  # not a regular file holding the target and a NUL
    assert d.shell("cat /sdcard/Download/tree/abs-link").strip() == "t"
    # A target above the root stays inside the phone: the device's /etc/passwd, not the host's.
    up = phone.storage.host_path("/sdcard/Download/tree/up-link")
    assert up.is_symlink() and phone.storage.root in up.resolve().parents
    assert "root:" not in d.shell("cat /sdcard/Download/tree/up-link")


def test_a_write_through_a_link_into_system_is_refused(rig, tmp_path):
    _, phone, d = rig
    tree = tmp_path / "tree2"
    tree.mkdir()
    os.symlink("/system", tree / "sys")
    assert adb(rig, "push", str(tree), "/sdcard/Download/").returncode == 0
    (tmp_path / "f.txt").write_text("x\n")
    r = adb(rig, "push", str(tmp_path / "f.txt"), "/sdcard/Download/tree2/sys/f.txt")
    assert r.returncode == 1 and "Read-only file system" in r.stdout + r.stderr, r
    assert not phone.storage.host_path("/system/f.txt").exists()
    assert "Read-only file system" in d.shell("echo y > /sdcard/Download/tree2/sys/g.txt")
