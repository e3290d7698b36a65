"""``$(( ... ))`` of the virtual phone's shell, as mksh evaluates it.

mksh's integers are 32-bit signed and wrap; a leading zero is decimal (``010`` is ten), ``0x``
is hexadecimal; division truncates toward zero and a zero divisor is an error. A name is the
value of that variable (unset or empty: 0; a name again: followed, as mksh does). Operators, by
precedence: unary ``+ - ! ~``; ``* / %``; ``+ -``; ``<< >>``; ``< <= > >=``; ``== !=``; ``&``;
``^``; ``|``; ``&&``; ``||``; parentheses. Assignments (``=``, ``+=``, ``++``), the conditional
``?:``, the comma and ``base#digits`` are not modelled: they raise ``ShellNotModelled``, never a
different number.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hzsr.core.errors import ShellArithError, ShellNotModelled

__all__ = ["evaluate"]


_TOKEN = re.compile(r"\s*(0[xX][0-9a-fA-F]+|\d+|[A-Za-z_][A-Za-z0-9_]*|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%<>&^|!~()])")
_UNMODELLED = re.compile(r"\+\+|--|[-+*/%&^|]?=(?!=)|<<=|>>=|[?:,#\[\]]")
_BINARY = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">="), ("<<", ">>"),
           ("+", "-"), ("*", "/", "%")]


def _wrap(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def evaluate(expr: str, lookup: Callable[[str], str | None], depth: int = 0) -> int:
    """The value of ``expr``; ``lookup(name)`` is a variable's value (None: unset)."""
    text = expr.replace("!=", "\0").replace("==", "\1").replace("<=", "\2").replace(">=", "\3")
    if _UNMODELLED.search(text):
        raise ShellNotModelled(f"{expr.strip()}: this arithmetic is not modelled by the virtual phone")
    toks: list[str] = []
    pos = 0
    stripped = expr.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if not m:
            raise ShellArithError(f"{expr.strip()}: unexpected '{stripped[pos:].strip()[:1]}'")
        toks.append(m.group(1))
        pos = m.end()
    if not toks:
        return 0
    k = 0

    def peek() -> str | None:
        return toks[k] if k < len(toks) else None

    def take() -> str:
        nonlocal k
        k += 1
        return toks[k - 1]

    def unary() -> int:
        t = peek()
        if t is None:
            raise ShellArithError(f"{expr.strip()}: unexpected end of expression")
        if t in ("+", "-", "!", "~"):
            take()
            v = unary()
            return _wrap({"+": v, "-": -v, "!": int(not v), "~": ~v}[t])
        if t == "(":
            take()
            v = binary(0)
            if take_if(")") is None:
                raise ShellArithError(f"{expr.strip()}: missing )")
            return v
        take()
        if t[0].isdigit():
            return _wrap(int(t, 16) if t[:2] in ("0x", "0X") else int(t))
        if t[0].isalpha() or t[0] == "_":
            val = lookup(t)
            if val is None or val.strip() == "":
                return 0
            if depth > 8:
                raise ShellNotModelled(f"{t}: deeply recursive arithmetic is not modelled by the virtual phone")
            return evaluate(val, lookup, depth + 1)
        raise ShellArithError(f"{expr.strip()}: unexpected '{t}'")

    def take_if(t: str) -> str | None:
        return take() if peek() == t else None

    def binary(level: int) -> int:
        if level == len(_BINARY):
            return unary()
        left = binary(level + 1)
        while peek() in _BINARY[level]:
            op = take()
            right = binary(level + 1)
            left = _apply(op, left, right, expr)
        return left

    value = binary(0)
    if k != len(toks):
        raise ShellArithError(f"{expr.strip()}: unexpected '{toks[k]}'")
    return value


def _apply(op: str, a: int, b: int, expr: str) -> int:
    if op in ("/", "%"):
        if b == 0:
            raise ShellArithError(f"{expr.strip()}: zero divisor")
        q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # C: truncate toward zero
        return _wrap(q if op == "/" else a - q * b)
    if op in ("<<", ">>"):
        b &= 31
        return _wrap(a << b if op == "<<" else a >> b)
    return _wrap({
        "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "<": lambda: int(a < b),
        "<=": lambda: int(a <= b), ">": lambda: int(a > b), ">=": lambda: int(a >= b), "==": lambda: int(a == b),
        "!=": lambda: int(a != b), "&": lambda: a & b, "^": lambda: a ^ b, "|": lambda: a | b,
        "&&": lambda: int(bool(a) and bool(b)), "||": lambda: int(bool(a) or bool(b)),
    }[op]())
