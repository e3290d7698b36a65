"""The virtual phone's shell against real mksh and toybox: never silently wrong.

Every line of ``shell_lines.LINES`` runs in both. The virtual shell must give the real one's
stdout and exit status, or refuse with status 2 and "not modelled" on stderr. A different answer
(above all with status 0) is a silent difference, and none is allowed.

Real mksh and toybox come from Debian (``apt-get install mksh toybox``; ``make test-setup`` runs
it). Without them this test is skipped, saying so; docs/virtual-rig.md says the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hzsr.vphone.shell import VirtualShell
from hzsr.vphone.storage import PhoneStorage

from .shell_lines import FIXTURE, LINES

MKSH = shutil.which("mksh")
TOYBOX = shutil.which("toybox")
PHONE_DIR = "/data/local/tmp/dt"

pytestmark = pytest.mark.skipif(MKSH is None or TOYBOX is None,
                                reason="needs real mksh and toybox (apt-get install mksh toybox; make test-setup)")


def _fixture(root: Path) -> None:
    for name, data in FIXTURE.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _real_env(tmp: Path) -> tuple[dict[str, str], Path]:
    """A PATH of toybox applets only, as on a phone (mksh's builtins first, as on a phone)."""
    bindir = tmp / "bin"
    bindir.mkdir()
    applets = subprocess.run([TOYBOX], capture_output=True, text=True).stdout.split()
    for a in applets:
        os.symlink(TOYBOX, bindir / a)
    os.symlink(MKSH, bindir / "sh")
    env = {"PATH": str(bindir), "HOME": "/", "LANG": "C", "LC_ALL": "C", "TZ": "UTC"}
    return env, bindir


def run_both(tmp: Path, lines: list[str]) -> list[dict]:
    """Each line's (stdout, status) in real mksh and in the virtual shell, with their stderr."""
    real_dir = tmp / "real" / "dt"
    real_dir.mkdir(parents=True)
    env, _ = _real_env(tmp)
    storage = PhoneStorage(tmp / "phone")
    shell = VirtualShell({"ro.serialno": "X"}, storage)
    out = []
    for line in lines:
        # A fresh copy of the fixture per line: lines that write cannot change the next.
        shutil.rmtree(real_dir)
        _fixture(real_dir)
        pd = storage.host_path(PHONE_DIR)
        if pd.exists():
            shutil.rmtree(pd)
        pd.mkdir(parents=True)
        _fixture(pd)
        real = subprocess.run([MKSH, "-c", line.replace("@T@", str(real_dir))], capture_output=True, env=env,
                              cwd="/", timeout=20)
        virt = shell.run(line.replace("@T@", PHONE_DIR))
        real_out = real.stdout.replace(str(real_dir).encode(), PHONE_DIR.encode())
        out.append({"line": line, "real": (real_out, real.returncode), "virtual": (virt.stdout, virt.rc),
                    "real_err": real.stderr, "virtual_err": virt.stderr})
    return out


def verdict(r: dict) -> str:
    """``same``, ``refused`` (status 2, "not modelled") or ``silent`` (a different answer)."""
    if r["real"] == r["virtual"]:
        return "same"
    if r["virtual"][1] == 2 and b"not modelled" in r["virtual_err"]:
        return "refused"
    return "silent"


def test_no_silent_difference_from_mksh_and_toybox(tmp_path):
    assert len(LINES) >= 150
    res = run_both(tmp_path, LINES)
    silent = [r for r in res if verdict(r) == "silent"]
    report = "\n".join(f"{r['line']!r}: real {r['real']!r}, virtual {r['virtual']!r} {r['virtual_err'][:80]!r}"
                       for r in silent[:20])
    assert not silent, f"{len(silent)} of {len(res)} lines differ silently:\n{report}"
    # The point is to model, not to refuse: most lines must give the real answer.
    same = sum(verdict(r) == "same" for r in res)
    assert same >= 0.8 * len(res), f"only {same} of {len(res)} lines give the real answer"
