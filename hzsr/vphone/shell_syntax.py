"""Parsing of the virtual phone's shell lines: POSIX ``sh`` tokens, lists, pipelines, redirects.

``lex`` splits a line into words (quotes kept; ``shell.VirtualShell.expand`` removes them when the
command runs, so ``$?`` sees the status of the command before it) and operators. ``parse``
groups them into ``[(connector, pipeline)]``. Compound commands (``if``, ``while``, ``for``,
``case``, functions, ``{ }``, subshells) and background jobs (``&``) raise ``ShellSyntaxError``
saying they are not modelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hzsr.core.errors import ShellSyntaxError

_OPS = ("2>&1", ">&2", "1>&2", "2>>", "&&", "||", ">>", "2>", "1>", ";;", ">", "<", "|", ";", "&", "(", ")")
_WORD_END = " \t\n;&|<>()"
_UNSUPPORTED = {"if", "then", "else", "elif", "fi", "while", "until", "for", "do", "done", "case", "esac",
                "function", "select", "{", "}", "[[", "]]"}


@dataclass
class Cmd:
    words: list[str] = field(default_factory=list)  # raw (still quoted) words
    redirs: list[tuple[str, str]] = field(default_factory=list)  # (op, raw target or "")
    negate: bool = False  # the first command of a pipeline that `!` negates


# -- parsing --------------------------------------------------------------------------------
def end_single(s: str, i: int) -> int:
    k = s.find("'", i + 1)
    if k < 0:
        raise ShellSyntaxError("unterminated quote (')")
    return k + 1


def _skip_expansion(s: str, j: int) -> int | None:
    """If an escape, backquote, ``$(`` or ``${`` starts at ``j``, the index after it (else None).

    These nest the same way inside double quotes and outside them; only quotes differ.
    """
    c = s[j]
    if c == "\\":
        return j + 2
    if c == "`":
        return end_backquote(s, j)
    if s.startswith("$(", j):
        return end_paren(s, j + 2)
    if s.startswith("${", j):
        return end_brace(s, j + 2)
    return None


def _skip(s: str, j: int) -> int | None:
    """If a quote or anything ``_skip_expansion`` knows starts at ``j``, the index after it."""
    if s[j] == "'":
        return end_single(s, j)
    if s[j] == '"':
        return end_double(s, j)
    return _skip_expansion(s, j)


def end_double(s: str, i: int) -> int:
    """Index just past the ``"`` closing the one at ``i`` (single quotes are plain inside)."""
    j = i + 1
    while j < len(s):
        if s[j] == '"':
            return j + 1
        nxt = _skip_expansion(s, j)
        j = j + 1 if nxt is None else nxt
    raise ShellSyntaxError('unterminated quote (")')


def end_paren(s: str, i: int) -> int:
    """Index just past the ``)`` closing a ``$(`` whose body starts at ``i``."""
    depth, j = 1, i
    while j < len(s):
        nxt = _skip(s, j)
        if nxt is not None:
            j = nxt
            continue
        if s[j] == "(":
            depth += 1
        elif s[j] == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise ShellSyntaxError("unterminated $(")


def end_backquote(s: str, i: int) -> int:
    """Index just past the backquote closing the one at ``i``."""
    j = i + 1
    while j < len(s):
        if s[j] == "\\":
            j += 2
            continue
        if s[j] == "`":
            return j + 1
        j += 1
    raise ShellSyntaxError("unterminated `")


def unescape_backquote(body: str) -> str:
    """Inside backquotes, ``\\`` before ``$``, a backquote or ``\\`` quotes only that character."""
    return re.sub(r"\\([$`\\])", r"\1", body)


def end_brace(s: str, i: int) -> int:
    """Index just past the ``}`` closing a ``${`` whose body starts at ``i``."""
    j = i
    while j < len(s):
        nxt = _skip(s, j)
        if nxt is not None:
            j = nxt
            continue
        if s[j] == "}":
            return j + 1
        j += 1
    raise ShellSyntaxError("${: missing }")


def brace_expand(word: str) -> list[str]:
    """mksh's brace expansion of one raw word: ``a{b,c}d`` -> ``abd acd``, nested and repeated.

    Only an unquoted ``{...}`` holding an unquoted comma at its own level expands; ``{a}``,
    ``{1..3}`` (mksh has no sequences) and quoted braces stay as written.
    """
    j = 0
    while j < len(word):
        nxt = _skip(word, j)
        if nxt is not None:
            j = nxt
            continue
        if word[j] == "{":
            commas, depth, k = [], 1, j + 1
            while k < len(word) and depth:
                nk = _skip(word, k)
                if nk is not None:
                    k = nk
                    continue
                ch = word[k]
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        break
                elif ch == "," and depth == 1:
                    commas.append(k)
                k += 1
            if depth == 0 and commas:
                head, tail = word[:j], word[k + 1:]
                cuts = [j, *commas, k]
                out: list[str] = []
                for a, b in zip(cuts, cuts[1:], strict=False):
                    out.extend(brace_expand(head + word[a + 1:b] + tail))
                return out
        j += 1
    return [word]


def lex(line: str) -> list[tuple[str, str]]:
    """Split a line into ``("w", raw word)`` and ``("op", operator)`` tokens, quotes kept."""
    toks: list[tuple[str, str]] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t\r":
            i += 1
            continue
        if c == "\n":
            toks.append(("op", "\n"))
            i += 1
            continue
        if c == "#":
            nl = line.find("\n", i)
            i = n if nl < 0 else nl
            continue
        op = next((o for o in _OPS if line.startswith(o, i)), None)
        if op is not None:
            toks.append(("op", op))
            i += len(op)
            continue
        j = i
        while j < n and line[j] not in _WORD_END:
            nxt = _skip(line, j)
            j = j + 1 if nxt is None else nxt
        toks.append(("w", line[i:min(j, n)]))
        i = j
    return toks


def parse(line: str) -> list[tuple[str, list[Cmd]]]:
    """``[(connector, pipeline)]``: connector is how the pipeline joins the one before it."""
    out: list[tuple[str, list[Cmd]]] = []
    conn, pipe, cmd = ";", [], Cmd()
    toks = lex(line)
    need_cmd = False  # after a "|", "&&" or "||" a command must follow
    k = 0
    while k < len(toks):
        kind, tok = toks[k]
        if kind == "w" and tok == "!" and not cmd.words and not cmd.redirs and not pipe:
            cmd.negate = not cmd.negate
            need_cmd = True
        elif kind == "w":
            if not cmd.words and tok in _UNSUPPORTED:
                raise ShellSyntaxError(f"{tok}: compound commands are not modelled by the virtual phone")
            cmd.words.append(tok)
            need_cmd = False
        elif tok in (">", ">>", "<", "2>", "2>>", "1>"):
            if k + 1 >= len(toks) or toks[k + 1][0] != "w":
                raise ShellSyntaxError(f"syntax error: '{tok}' unexpected")
            cmd.redirs.append((">" if tok == "1>" else tok, toks[k + 1][1]))
            need_cmd = False
            k += 1
        elif tok in ("2>&1", ">&2", "1>&2"):
            cmd.redirs.append((">&2" if tok == "1>&2" else tok, ""))
        elif tok == "|":
            if not (cmd.words or cmd.redirs):
                raise ShellSyntaxError("syntax error: '|' unexpected")
            pipe.append(cmd)
            cmd, need_cmd = Cmd(), True
        elif tok in (";", "\n", "&&", "||"):
            if cmd.words or cmd.redirs:
                pipe.append(cmd)
                cmd = Cmd()
            elif need_cmd or (tok != "\n" and not pipe):
                raise ShellSyntaxError(f"syntax error: '{tok}' unexpected")
            if pipe:
                out.append((conn, pipe))
                conn, pipe = (";" if tok == "\n" else tok), []
            need_cmd = tok in ("&&", "||")
        elif tok == "&":
            raise ShellSyntaxError("&: background jobs are not modelled by the virtual phone")
        else:
            raise ShellSyntaxError(f"{tok}: subshells and case are not modelled by the virtual phone")
        k += 1
    if cmd.words or cmd.redirs:
        pipe.append(cmd)
    elif need_cmd:
        raise ShellSyntaxError("syntax error: unexpected end of line")
    if pipe:
        out.append((conn, pipe))
    return out
