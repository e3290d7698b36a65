"""``hzsr model infer`` ends its process without the interpreter's teardown (``hzsr.cli.finish``,
issue 19: 0.11 s of a 12 MP run), and loses nothing by it: stdout, exit handlers, the files, the
exit status; other verbs, and any process with a non-daemon thread still running, exit as before.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

# A module-level object whose destructor runs only in the interpreter's teardown, an exit handler,
# and the command line on argv; prints the marks on stderr.
_RUN = r"""
import atexit, sys, threading, time
class Teardown:
    def __del__(self):
        sys.stderr.write("teardown\n")
keep = Teardown()
atexit.register(lambda: sys.stderr.write("atexit\n"))
if sys.argv[1] == "thread":
    def late(path=sys.argv[2], after=sys.argv[sys.argv.index("--out") + 1] + ".json"):
        import os
        while not os.path.exists(after):  # still running when the verb has returned
            time.sleep(0.01)
        time.sleep(0.5)
        open(path, "w").write("done")
    threading.Thread(target=late).start()
from hzsr.cli import run
sys.argv = ["hzsr", *sys.argv[3:]]
run()
"""


def _run(args, thread=None):
    mode, path = ("thread", str(thread)) if thread else ("plain", "-")
    return subprocess.run([sys.executable, "-c", _RUN, mode, path, *args], capture_output=True, text=True,
                          timeout=300)


def _infer_args(tiny_run, tiny_session, out):
    cap = tiny_session / "captures" / "c00002"
    return ["model", "infer", str(cap / "main_W.jpg"), "--ref", str(cap / "ref_T.jpg"), "--meta",
            str(cap / "capture.json"), "--ckpt", str(tiny_run / "model.pt"), "--tile", "64", "--threads", "1",
            "--out", str(out), "--json"]


def test_infer_skips_the_teardown_and_keeps_its_output(tiny_run, tiny_session, tmp_path):
    out = tmp_path / "o.png"
    r = _run(_infer_args(tiny_run, tiny_session, out))
    assert r.returncode == 0, r.stderr
    assert "atexit" in r.stderr and "teardown" not in r.stderr  # handlers ran; the teardown did not
    res = json.loads(r.stdout)  # all of stdout arrived (flushed before the process ended)
    assert res["output"] == str(out) and out.is_file() and (tmp_path / "o.png.json").is_file()


def test_other_verbs_and_failures_exit_as_before(tiny_run, tiny_session, tmp_path):
    r = _run(["status", str(tiny_session)])
    assert r.returncode == 0 and "teardown" in r.stderr and "atexit" in r.stderr
    args = _infer_args(tiny_run, tiny_session, tmp_path / "o.png")
    args[args.index("--ref") + 1] = str(tmp_path / "missing.jpg")
    r = _run(args)  # a user's mistake: one line, status 2 or 1, and the ordinary exit
    assert r.returncode != 0 and "teardown" in r.stderr and "missing.jpg" in r.stderr


def test_a_running_thread_is_waited_for(tiny_run, tiny_session, tmp_path):
    mark = tmp_path / "thread_done"
    r = _run(_infer_args(tiny_run, tiny_session, tmp_path / "o.png"), thread=mark)
    assert r.returncode == 0, r.stderr
    assert mark.read_text() == "done" and "teardown" in r.stderr


def test_output_that_cannot_be_written_fails_the_exit(tmp_path):
    """``--json > file`` on a full disk: the fast exit says so and fails (status 120, as the
    interpreter's teardown), instead of ending 0 with the output cut short; a closed pipe stays quiet.
    The full disk is a file size limit (``RLIMIT_FSIZE``, ``SIGXFSZ`` ignored: the write fails with EFBIG)."""
    import resource
    import signal

    code = ("import sys; from hzsr.core import fastexit; fastexit.allow_fast_exit(); "
            "print('x' * 100); fastexit.finish(0)")

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as a user's is
    with open(tmp_path / "out.json", "w") as out:
        p = subprocess.run([sys.executable, "-c", code], stdout=out, stderr=subprocess.PIPE, text=True,
                           timeout=60, preexec_fn=small_disk, env=env)
    assert p.returncode == 120
    assert p.stderr.strip().splitlines() == ["hzsr: could not write stdout: File too large"]
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the process writes
    p = subprocess.run([sys.executable, "-c", code], stdout=w, stderr=subprocess.PIPE, text=True, timeout=60, env=env)
    os.close(w)
    assert p.returncode == 0 and "could not write" not in p.stderr
