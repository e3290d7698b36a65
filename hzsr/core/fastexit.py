"""How an ``hzsr`` process ends: without the interpreter's teardown after a verb that allows it (issue 19).

A verb that has finished all its work (files written and closed, thread pools shut down: ``hzsr
model infer``) calls ``allow_fast_exit``; the command's entry point (``hzsr.cli.run``) then ends
the process through ``finish``. Lives in ``core`` so that any stage's verb may call it.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

#: Non-empty once a verb has said its process may end without the interpreter's teardown (``finish``).
_ALLOWED: list[bool] = []


def allow_fast_exit() -> None:
    """Called by a verb that has finished: its files written and closed, its thread pools shut
    down, nothing left for a destructor to do. ``finish`` then skips the interpreter's teardown."""
    _ALLOWED.append(True)


#: Exit status when stdout or stderr could not be flushed (as the interpreter's own teardown gives).
FLUSH_FAILED = 120


def finish(rc: int) -> NoReturn:
    """End the ``hzsr`` process with exit status ``rc``.

    After a verb that called ``allow_fast_exit`` (``hzsr model infer``), the exit handlers run
    (``atexit``), stdout and stderr are flushed, and the process ends there (``os._exit``): the
    interpreter's teardown (collecting every object, clearing every module, the native libraries'
    destructors: OpenVINO's compiled model trims the heap) took 0.16 s after a 12 MP inference on
    two near-idle cores against 0.05 s without it, 0.38 s against 0.18 s at load 9-11
    (``bench/infer_exit.py``, ``docs/benchmarks.md``), and only returns memory that the system
    takes back whole anyway. Otherwise, or while a non-daemon thread still
    runs (the teardown would wait for it), ``sys.exit`` as usual.
    """
    import threading

    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if not _ALLOWED or others:
        sys.exit(rc)
    import atexit

    atexit._run_exitfuncs()  # what the teardown would run first: handlers, weakref.finalize's
    for name in ("stdout", "stderr"):
        try:
            getattr(sys, name).flush()
        except (BrokenPipeError, ValueError, AttributeError):  # a reader gone, a closed stream: nothing to tell
            pass
        except OSError as e:  # a full disk under `--json > file`: the output is cut short, so say so and fail
            rc = rc or FLUSH_FAILED
            try:
                os.write(2, f"hzsr: could not write {name}: {e.strerror or e}\n".encode())
            except OSError:
                pass
    os._exit(rc)


def reset() -> None:
    """Forget an earlier verb's ``allow_fast_exit`` (``hzsr.cli.main`` calls it first: a test may
    run several verbs in one process)."""
    _ALLOWED.clear()
