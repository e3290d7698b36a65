"""Every ``hzsr`` command shown in README.md and docs/*.md parses, with no deprecated spelling.

Commands are taken from fenced code blocks (``sh``, ``bash``, ``console`` or untagged): lines are
joined at trailing backslashes, split at ``&&``, ``;``, ``||`` and pipes, ``for V in A B; do``
loops get their first value, and synopsis brackets (``[--opt VALUE]``, ``a|b``, ``...``) are
opened to the fullest form. Each command then goes through the CLI's own deprecation rewrite
(which must warn about nothing) and its argparse parser (which must accept it). A misspelt
verb or option, an option that no longer exists, or an old spelling in the docs fails here with
the file and line.

What this does not do: run the commands. Most need a rig, a session or minutes of training;
the demo test and each stage's tests run the same verbs for real.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from hzsr.cli import build_parser, rewrite_deprecated

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")


def _blocks(path: Path):
    """(first line number, text) of each shell-ish fenced block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            lang, start, body = m.group(1), i + 2, []
            i += 1
            while i < len(lines) and not FENCE.match(lines[i]):
                body.append(lines[i])
                i += 1
            if lang in ("", "sh", "bash", "console", "shell"):
                yield start, body
        i += 1


#: Synopsis placeholders of typed values, and what stands in for them.
PLACEHOLDERS = {"WxH": "640x480"}


def _open_synopsis(cmd: str) -> str:
    """``[--a X] [--b]`` -> ``--a X --b``; ``x|y`` -> ``x``; ``...`` dropped; ``N`` -> ``1``."""
    cmd = cmd.replace("[", " ").replace("]", " ").replace("...", " ")
    out = []
    for t in cmd.split():
        if "|" in t and not t.startswith(("'", '"')):
            t = t.split("|")[0]
        if t in PLACEHOLDERS:
            t = PLACEHOLDERS[t]
        elif re.fullmatch(r"[A-Z]", t):  # N, S, K, R, Z: a number
            t = "1"
        out.append(t)
    return " ".join(out)


def _commands(path: Path):
    for start, body in _blocks(path):
        joined, first = [], None
        for k, line in enumerate(body):
            line = line.split(" # ")[0].rstrip() if not line.lstrip().startswith("#") else ""
            if first is None:
                first = start + k
            if line.endswith("\\"):
                joined.append(line[:-1])
                continue
            joined.append(line)
            text, lineno = " ".join(joined), first
            joined, first = [], None
            text = re.sub(r"^\s*\$\s+", "", text)  # console prompts
            loop = re.search(r"for (\w+) in ([^;]+); do (.*?)(?:; )?done", text)
            if loop:
                var, values, inner = loop.group(1), loop.group(2).split(), loop.group(3)
                text = text[:loop.start()] + inner.replace(f"${var}", values[0]).replace(f"${{{var}}}", values[0]) \
                    + text[loop.end():]
            for seg in re.split(r"&&|\|\||;|\s\|\s", text):
                seg = seg.strip()
                if seg.startswith("hzsr "):
                    yield lineno, seg


def _cases():
    out = []
    for doc in DOCS:
        for lineno, cmd in _commands(doc):
            out.append(pytest.param(cmd, id=f"{doc.relative_to(ROOT)}:{lineno}"))
    return out


CASES = _cases()


def test_the_docs_show_commands():
    assert len(CASES) >= 40  # the extractor finds them (README's tour, every stage's doc)


@pytest.mark.parametrize("cmd", CASES)
def test_documented_command_parses_without_deprecation(cmd):
    argv = shlex.split(_open_synopsis(cmd), comments=True)[1:]
    if argv[-1:] == ["--help"] or "-h" in argv:
        argv = [a for a in argv if a not in ("--help", "-h")]
    new, warnings = rewrite_deprecated(argv)
    assert not warnings, f"{cmd!r}: {warnings}"
    for _ in range(4):
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                build_parser().parse_args(new)
            return
        except SystemExit:
            # A one-letter placeholder (``--compression C``) for an option with choices: take the
            # first choice and try again; anything else is a real error in the docs.
            m = re.search(r"invalid choice: '1' \(choose from '([^']+)'", err.getvalue())
            if not m or "1" not in new:
                break
            new[new.index("1")] = m.group(1)
    pytest.fail(f"{cmd!r} does not parse: {err.getvalue().strip().splitlines()[-1]}")
