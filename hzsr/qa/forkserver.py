"""The fork server that ``hzsr qa check --workers N`` forks its workers from (standard library only).

Kept free of QA's own imports so that the CLI can start the server before it imports QA
(``start_early``): the server's imports then run beside the CLI's, on the other core, instead of
after them.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import forkserver
from multiprocessing.context import BaseContext

#: What the server imports once, so that a forked worker starts with it (``hzsr.qa.work``).
WORKER_MODULE = "hzsr.qa.work"


def qa_context() -> BaseContext:
    """The forkserver context with QA's worker module preloaded."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([WORKER_MODULE])
    return ctx


def start_early() -> None:
    """Start the server now (it imports ``WORKER_MODULE`` in its own process) and return at once.

    A fresh ``hzsr qa check --workers 2`` otherwise imports QA (pandas, OpenCV: ~0.9 s of CPU on
    this VM) and only then starts the server, which imports OpenCV and QA again (~0.4 s) before
    the first worker can fork: two imports in series before any capture is analysed. Started
    first, they overlap. A later ``ProcessPoolExecutor`` with ``qa_context()`` uses this server.
    """
    qa_context()
    forkserver.ensure_running()
