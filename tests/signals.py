"""Signals for the tests that Ctrl-C a child process."""

import signal


def ctrl_c_reaches_child() -> None:
    """``preexec_fn``: SIGINT back to its default in the child, as in a terminal.

    A shell that starts a job in the background without job control (``make test &``, some CI
    runners) leaves SIGINT ignored in it and everything it starts, and Python keeps an inherited
    "ignore": the child would never see the Ctrl-C a test sends, and exit 0 as if it was never
    interrupted.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
