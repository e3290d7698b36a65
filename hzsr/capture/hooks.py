"""Checks that later stages offer for the crew's per-capture line.

Imports flow downstream only, so capture cannot import ``hzsr.qa``. A stage that wants to judge
each shot as it lands registers a function under the entry-point group ``hzsr.post_capture``
(``pyproject.toml``); ``hzsr capture run`` calls every one on the finished capture folder and
prints its verdict beside the sync verdict. With no stage installed that offers one, nothing runs.

A check is ``check(capture_dir: Path) -> (verdict, reasons)`` with ``verdict`` in pass/warn/fail.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

Check = Callable[[Path], tuple[str, list[str]]]
GROUP = "hzsr.post_capture"


@cache
def post_capture_checks() -> tuple[tuple[str, Check], ...]:
    """The registered checks, loaded once, by entry-point name."""
    out = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            out.append((ep.name, ep.load()))
        except ImportError:  # a stage installed without its extras: it offers nothing here
            continue
    return tuple(out)


def run_checks(capture_dir: Path) -> dict[str, tuple[str, list[str]]]:
    """Every registered check's (verdict, reasons) for one capture; a check that crashes gives
    ``warn`` with the error as its reason, so a bug in QA never stops a shoot."""
    results = {}
    for name, check in post_capture_checks():
        try:
            verdict, reasons = check(capture_dir)
        except Exception as exc:  # noqa: BLE001 - the crew keeps shooting; the reason says why
            verdict, reasons = "warn", [f"{name} check could not run: {type(exc).__name__}: {exc}"]
        results[name] = (str(verdict), [str(r) for r in reasons])
    return results
