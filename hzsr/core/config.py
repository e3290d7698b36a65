"""YAML configs, validated into typed dataclasses.

An unknown or mistyped key is a ``ConfigError`` naming the file and the key. Defaults live only in
the dataclass definitions, so there is one place to read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml

from hzsr.core.errors import ConfigError
from hzsr.core.fileio import read_text
from hzsr.core.schema import parse_or_raise

T = TypeVar("T")


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; anything that keeps it from being read is a one-line ``ConfigError``.

    Missing, a folder, unreadable, not UTF-8, not YAML, or nested too deep for the parser: each
    is ``unreadable`` (exit 2).
    """
    path = Path(path)
    text = read_text(path, ConfigError)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else None
        raise ConfigError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=path, field=where,
                          unreadable=True) from None
    except RecursionError:
        raise ConfigError("invalid YAML: nested too deeply", file=path, unreadable=True) from None
    except ValueError as exc:  # e.g. a date-like scalar that is no date: `2024-13-45`
        raise ConfigError(f"invalid YAML: {exc}", file=path, unreadable=True) from None


def load_config(cls: type[T], path: str | Path) -> T:
    """Load ``path`` and validate it into the dataclass ``cls``."""
    data = load_yaml(path)
    if data is None:
        data = {}
    return parse_or_raise(cls, data, file=str(path), error=ConfigError)
