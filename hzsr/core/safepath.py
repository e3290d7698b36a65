"""Folders a verb must never take as its own: ``/``, the system's folders, the home folder itself.

``hzsr capture run /`` once wrote ``captures/``, ``journal.jsonl`` and ``.hzsr.lock`` into ``/``;
a session (or any folder hzsr fills) goes in a folder of its own. The check resolves symbolic
links first, so ``/tmp/link-to-etc`` is refused as ``/etc`` is.
"""

from __future__ import annotations

import os
from pathlib import Path

from hzsr.core.errors import ConfigError

#: Refused themselves and, for the first group, anything inside them (the OS owns every file there).
SYSTEM_TREES = ("/proc", "/sys", "/dev", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot",
                "/usr")
#: Refused themselves only: a session folder inside them is fine (``/tmp/s1``, ``/home/me/s1``).
SYSTEM_FOLDERS = ("/", "/home", "/root", "/tmp", "/var", "/opt", "/srv", "/mnt", "/media", "/run", "/snap")


def system_folder(path: str | Path) -> str | None:
    """Why ``path`` must not be used as a folder hzsr fills, or None when it may."""
    p = Path(os.path.realpath(path))
    s = str(p)
    if s in SYSTEM_FOLDERS:
        return f"{s} is a system folder"
    for tree in SYSTEM_TREES:
        if s == tree or s.startswith(tree + "/"):
            return f"{s} is {'inside ' if s != tree else ''}the system folder {tree}"
    home = os.path.realpath(os.path.expanduser("~"))
    if s == home and home != "/":
        return f"{s} is your home folder"
    return None


def refuse_system_folder(path: str | Path, field: str) -> None:
    """Raise a one-line ``ConfigError`` (exit 2, a wrong argument) when ``path`` is a system folder."""
    why = system_folder(path)
    if why:
        raise ConfigError(f"{why}; give a folder of its own (e.g. sessions/2026-01-01-park)", file=path,
                          field=field, unreadable=True)  # a wrong argument: exit 2
