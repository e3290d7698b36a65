"""A tiny POSIX-ish shell for the virtual phone: ``;``, ``&&``, ``||`` and ``$?``.

Enough for what hosts send: ``getprop``, ``echo``, ``true``/``false``, ``date``, and adbutils'
``shell2`` wrapper (``CMD; echo X4EXIT:$?``). Commands are functions ``(argv) -> (bytes, rc)``.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable

Command = Callable[[list[str]], tuple[bytes, int]]


class VirtualShell:
    def __init__(self, props: dict[str, str]):
        self.props = props
        self.commands: dict[str, Command] = {
            "getprop": self._getprop,
            "echo": lambda a: ((" ".join(a[1:]) + "\n").encode(), 0),
            "true": lambda a: (b"", 0),
            "false": lambda a: (b"", 1),
            "date": self._date,
        }

    def _getprop(self, argv: list[str]) -> tuple[bytes, int]:
        if len(argv) > 1:
            return (self.props.get(argv[1], "") + "\n").encode(), 0
        return "".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items())).encode(), 0

    def _date(self, argv: list[str]) -> tuple[bytes, int]:
        if len(argv) > 1 and argv[1] == "+%s":
            return f"{int(time.time())}\n".encode(), 0
        return (time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()) + "\n").encode(), 0

    def run(self, line: str) -> tuple[bytes, int]:
        """Run a command line; returns (output, exit status of the last command run)."""
        out = bytearray()
        rc = 0
        # Split on ; && || outside quotes, keeping the operators.
        tokens = re.split(r"""(;|&&|\|\|)(?=(?:[^'"]|'[^']*'|"[^"]*")*$)""", line)
        op = ";"
        for tok in tokens:
            if tok in (";", "&&", "||"):
                op = tok
                continue
            if not tok.strip() or (op == "&&" and rc != 0) or (op == "||" and rc == 0):
                continue
            try:
                argv = shlex.split(tok.replace("$?", str(rc)))
            except ValueError as exc:
                out += f"sh: syntax error: {exc}\n".encode()
                rc = 2
                continue
            fn = self.commands.get(argv[0])
            if fn is None:
                out += f"/system/bin/sh: {argv[0]}: inaccessible or not found\n".encode()
                rc = 127
                continue
            o, rc = fn(argv)
            out += o
        return bytes(out), rc
