"""Process proofs: what rig down checks before it signals anything."""

import subprocess
import sys

from hzsr.core.process import ProcessProof


def test_process_proof_waits_for_exec():
    """A proof read between fork and exec would record the parent's command line."""
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    child = subprocess.Popen(argv)
    try:
        proof = ProcessProof.once_running(child.pid, argv)
        assert proof is not None and proof.cmdline == argv and proof.matches()
        assert ProcessProof.once_running(child.pid, ["something", "else"], timeout_s=0.2) is None
    finally:
        child.kill()
        child.wait()
    assert ProcessProof.once_running(child.pid, argv, timeout_s=0.2) is None  # gone
