"""The parts of a verb's command line that every stage spells the same way.

Each stage's ``add_*_parser`` declares only the options that are its own; a verb's parser, the
``--json`` and ``--quiet`` flags, and the folder a verb works on come from here, so they read the
same in every ``hzsr STAGE VERB --help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Verb = Callable[[argparse.Namespace], int]


def add_verb(verbs: Any, name: str, help: str, func: Verb, **kwargs: Any) -> argparse.ArgumentParser:
    """A verb's parser under ``verbs`` (an ``add_subparsers`` action) that runs ``func``.

    Args:
        verbs: the stage's sub-parsers action.
        name: the verb.
        help: its one-line help in the stage's list of verbs.
        func: what runs it; returns the exit code.
        **kwargs: more ``add_parser`` arguments (``formatter_class``, ...).
    """
    p = verbs.add_parser(name, help=help, **kwargs)
    p.set_defaults(func=func)
    return p


def add_folder(p: argparse.ArgumentParser, dest: str, help: str, metavar: str | None = None) -> None:
    """The folder (or file) a verb works on: its first positional argument (the CLI's convention)."""
    p.add_argument(dest, help=help, **({"metavar": metavar} if metavar else {}))


def add_json(p: argparse.ArgumentParser, help: str = "print the result as JSON") -> None:
    """``--json``: the machine form on stdout instead of the human summary."""
    p.add_argument("--json", action="store_true", help=help)


def add_quiet(p: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bar."""
    p.add_argument("--quiet", action="store_true", help="no progress bar")
