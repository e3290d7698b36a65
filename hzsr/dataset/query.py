"""The query language of ``dataset pack --filter`` and ``dataset curate --query``: parsed, never run.

A query selects manifest rows. It is parsed into a tree by the small grammar below and evaluated
against the manifest's ``DataFrame`` with vectorised pandas/numpy operations. No part of the
user's text is ever handed to ``eval``, ``exec``, ``compile``, ``DataFrame.query`` or
``DataFrame.eval``: a name is looked up among the columns, a call among the functions listed
here, and everything else is refused with one line.

Grammar (EBNF; lowest precedence first, as in Python)::

    query      = or_expr ;
    or_expr    = and_expr { "or" and_expr } ;
    and_expr   = not_expr { "and" not_expr } ;
    not_expr   = "not" not_expr | comparison ;
    comparison = operand { cmp_op operand }
               | operand [ "not" ] "in" list ;
    cmp_op     = "==" | "!=" | "<" | "<=" | ">" | ">=" ;
    operand    = column | literal | call | "(" or_expr ")" ;
    column     = identifier | "`" { any character but "`" } "`" ;
    identifier = ( letter | "_" ) { letter | digit | "_" } ;      (ASCII letters and digits)
    call       = function "(" column [ "," string ] ")" ;
    list       = "[" [ literal { "," literal } [ "," ] ] "]"
               | "(" [ literal { "," literal } [ "," ] ] ")" ;
    literal    = number | string | "True" | "true" | "False" | "false" | "None" | "null" ;
    number     = [ "-" ] ( digits [ "." [ digits ] ] | "." digits ) [ ( "e" | "E" ) [ "+" | "-" ] digits ] ;
    digits     = ( "0" | ... | "9" ) { "0" | ... | "9" } ;           (ASCII digits)
    string     = "'" { character | escape } "'" | '"' { character | escape } '"' ;
    escape     = "\\\\" | "\\'" | '\\"' | "\\n" | "\\t" ;

``and``, ``or``, ``not``, ``in``, ``True``, ``False``, ``None`` and ``null`` are keywords; a
column with such a name, or with any character outside ``[A-Za-z0-9_]``, is written in
backticks (there is no escape for a backtick inside them)::

    `qa_flow epe` > 2

Spaces, tabs and newlines separate tokens.

Functions (the only calls; the first argument is a column name)::

    contains(col, 'x')      the text contains x (plain text, not a regular expression)
    startswith(col, 'x')    the text starts with x
    endswith(col, 'x')      the text ends with x
    has_tag(col, 'x')       x is one of the ";"-separated tags (scene_tags: "moving;night")
    isnull(col), isna(col)  the cell is empty
    notnull(col), notna(col)  the cell is not empty

Meaning, per row:

- ``a == b``, ``a != b``, ``a < b`` ...: text with text (``<`` in code-point order), numbers with
  numbers, true/false with true/false (``==`` and ``!=`` only; ``True == 1`` as in Python).
  Comparing a text column with a number, or any other mix, is an error rather than silently
  false: quote the number (``scene_id == '0003'``). Chains work as in Python:
  ``0.5 < qa_wt_ssim <= 0.9``. Column with column works too: ``qa_tt_psnr_db > qa_wt_psnr_db``.
- An empty cell (a capture with no QA verdict) makes ``==``, ``<``, ``<=``, ``>``, ``>=`` false
  and ``!=`` true, as pandas does: ``verdict != 'fail'`` keeps captures with no verdict.
  ``col == None`` is ``isnull(col)``, ``col != None`` is ``notnull(col)``.
- ``col in ['a', 'b']`` (or ``('a', 'b')``) is true where the cell equals one of the values;
  ``None`` in the list matches empty cells; ``not in`` is its negation (so an empty cell is ``not
  in`` a list without ``None``).
- A true/false column is a condition by itself (``has_reference and verdict == 'pass'``), its
  empty cells false. Other columns must be compared with something.
- A column whose every cell is empty (no QA ran anywhere) compares with anything.

Refused, each with a one-line ``DatasetError`` whose field is the option (``--filter`` or
``--query``, so the CLI exits 2), saying what is wrong and at which character: attribute access
(``.``), ``@`` names, indexing, calls of anything but the functions above, arithmetic, ``&``,
``|``, ``~`` (use ``and``, ``or``, ``not``), Python keywords (``lambda``, ``is``, ``if`` ...),
unknown columns (naming the closest ones, or every column), unknown functions, type mismatches,
control characters (NUL included), expressions longer than ``MAX_LENGTH`` characters or nested
deeper than ``MAX_DEPTH`` levels.

Use ``select_rows(df, text, option)`` for the selected rows, ``query_mask`` for the boolean mask,
or ``parse_query`` once and ``Query.mask`` on several frames.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from hzsr.core.errors import DatasetError

#: The longest expression accepted, in characters (a list of some thousands of capture ids fits).
MAX_LENGTH = 100_000
#: The deepest nesting accepted: parentheses, ``not`` and function calls, each counting one.
MAX_DEPTH = 50

#: The predicates a query may call, with their arity: (column) or (column, string).
FUNCTIONS: dict[str, int] = {
    "contains": 2, "startswith": 2, "endswith": 2, "has_tag": 2,
    "isnull": 1, "isna": 1, "notnull": 1, "notna": 1,
}

_KEYWORDS = {"and", "or", "not", "in"}
_CONSTANTS: dict[str, Any] = {"True": True, "true": True, "False": False, "false": False, "None": None,
                              "null": None}
#: Python words that are not part of the language; each is refused by name rather than as a column.
_PYTHON_WORDS = {"lambda", "is", "if", "else", "elif", "for", "while", "import", "from", "as", "def",
                 "class", "return", "yield", "await", "async", "with", "del", "global", "nonlocal",
                 "try", "except", "finally", "raise", "assert", "pass", "break", "continue", "match"}
_CMP_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
    ">=": operator.ge}
_FLIP = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_NUMBER_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = "0123456789"
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}
_WHITESPACE = " \t\r\n"
_REFUSED_CHARS = {
    ".": "attribute access ('.') is not allowed",
    "@": "'@' names (Python variables) are not allowed",
    "&": "'&' is not allowed; use 'and'",
    "|": "'|' is not allowed; use 'or'",
    "~": "'~' is not allowed; use 'not'",
    "+": "arithmetic ('+') is not supported",
    "*": "arithmetic ('*') is not supported",
    "/": "arithmetic ('/') is not supported",
    "%": "arithmetic ('%') is not supported",
    "^": "'^' is not supported",
    "=": "'=' is not a comparison; use '=='",
    "!": "'!' alone is not allowed; use '!=' or 'not'",
}
#: What a column's cells hold, by ``_kind``; "empty" (every cell empty) compares with anything.
_KIND_WORDS = {"text": "text", "number": "numbers", "bool": "true/false", "empty": "only empty cells",
               "mixed": "mixed values"}


# -- tokens -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    """One token of a query.

    Attributes:
        kind: ``name`` (a column or function name), ``kw`` (and/or/not/in), ``const``
            (True/False/None), ``number``, ``string``, ``op`` (a comparison), ``minus``, ``punct``
            (``( ) [ ] ,``) or ``end``.
        text: the token as written.
        value: the literal's value (``const``, ``number``, ``string``), the name (``name``).
        pos: the 0-based index of its first character in the expression.
    """

    kind: str
    text: str
    value: Any
    pos: int


# -- the tree ---------------------------------------------------------------------------------
# One node type per construct; ``pos`` is where it starts in the expression (for error lines).
#   Column(name, pos)                 a column reference
#   Literal(value, pos)               a number, string, True/False or None
#   Compare(operands, ops, op_pos)    operands[0] ops[0] operands[1] ... (a Python-style chain)
#   InList(operand, items, negate, pos)   operand [not] in [items]
#   BoolOp(op, operands)              operands joined by ``and`` or ``or``
#   Not(operand, pos)                 not operand
#   Call(func, column, arg, pos)      func(column[, string]), func one of FUNCTIONS
class Column(NamedTuple):
    name: str
    pos: int


class Literal(NamedTuple):
    value: Any
    pos: int


class Compare(NamedTuple):
    operands: tuple
    ops: tuple[str, ...]
    op_pos: tuple[int, ...]


class InList(NamedTuple):
    operand: Any
    items: tuple
    negate: bool
    pos: int


class BoolOp(NamedTuple):
    op: str
    operands: tuple


class Not(NamedTuple):
    operand: Any
    pos: int


class Call(NamedTuple):
    func: str
    column: Column
    arg: str | None
    pos: int


Node = Column | Literal | Compare | InList | BoolOp | Not | Call


# -- errors -----------------------------------------------------------------------------------
def _excerpt(text: str, pos: int, width: int = 80) -> str:
    """The expression as one line (``repr``), cut to about ``width`` characters around ``pos``."""
    if len(text) <= width:
        return repr(text)
    lo = max(0, min(pos - width // 2, len(text) - width))
    hi = lo + width
    return (f"{'…' if lo else ''}{text[lo:hi]!r}{'…' if hi < len(text) else ''} "
            f"(characters {lo + 1}-{min(hi, len(text))} of {len(text)})")


class _Fail(Exception):
    """Raised inside the parser and evaluator; ``Query`` turns it into a ``DatasetError``."""

    def __init__(self, message: str, pos: int):
        super().__init__(message)
        self.message, self.pos = message, pos


def _error(text: str, option: str, message: str, pos: int) -> DatasetError:
    """The one-line error: what is wrong, at which character (1-based), in which expression."""
    where = "at the end" if pos >= len(text) else f"at character {pos + 1}"
    return DatasetError(f"bad expression {_excerpt(text, pos)}: {where}: {message}", field=option)


# -- tokenizer --------------------------------------------------------------------------------
def _scan_quoted(text: str, start: int) -> tuple[str, int]:
    """The string literal starting at ``start`` (a quote) and the index just past it."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c == "\n":
            break
        if c == "\\":
            nxt = text[i + 1] if i + 1 < len(text) else ""
            if nxt not in _ESCAPES:
                raise _Fail(f"unknown escape '\\{nxt}' in a string (known: \\\\ \\' \\\" \\n \\t)", i)
            out.append(_ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    raise _Fail(f"string opened with {quote} is never closed", start)


def _number(digits: str, pos: int) -> int | float:
    """A number token's value; integers past int64 become floats, as a column of numbers holds them."""
    if re.fullmatch(r"[0-9]+", digits) and len(digits) <= 18:
        return int(digits)
    try:
        return float(digits)
    except ValueError:  # cannot happen for a _NUMBER_RE match; kept so a surprise is still one line
        raise _Fail(f"bad number {digits!r}", pos) from None


def _tokenize(text: str) -> list[Token]:
    """Split a query into tokens, refusing any character the grammar has no use for.

    Args:
        text: the expression.

    Returns:
        The tokens, ending with one of kind ``end``.

    Raises:
        _Fail: the first character or word that is not part of the language, with its index.
    """
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
            continue
        if c.isascii() and (c.isalpha() or c == "_"):
            m = _IDENT_RE.match(text, i)
            assert m is not None
            word = m.group(0)
            if word in _PYTHON_WORDS:
                raise _Fail(f"'{word}' is Python, not part of the query language", i)
            if word in _KEYWORDS:
                tokens.append(Token("kw", word, word, i))
            elif word in _CONSTANTS:
                tokens.append(Token("const", word, _CONSTANTS[word], i))
            else:
                tokens.append(Token("name", word, word, i))
            i = m.end()
            continue
        if c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUMBER_RE.match(text, i)
            assert m is not None
            end = m.end()
            if end < n and (text[end].isalnum() or text[end] in "_."):
                raise _Fail(f"bad number {text[i:end + 1]!r}", i)
            tokens.append(Token("number", m.group(0), _number(m.group(0), i), i))
            i = end
            continue
        if c in "'\"":
            value, end = _scan_quoted(text, i)
            tokens.append(Token("string", text[i:end], value, i))
            i = end
            continue
        if c == "`":
            end = text.find("`", i + 1)
            nl = text.find("\n", i + 1)
            if end < 0 or 0 <= nl < end:
                raise _Fail("backtick-quoted column name is never closed", i)
            if end == i + 1:
                raise _Fail("empty column name ``", i)
            tokens.append(Token("name", text[i:end + 1], text[i + 1:end], i))
            i = end + 1
            continue
        two = text[i:i + 2]
        if two in ("==", "!=", "<=", ">="):
            tokens.append(Token("op", two, two, i))
            i += 2
            continue
        if two in ("<<", ">>", "**", "//"):
            raise _Fail(f"arithmetic ('{two}') is not supported", i)
        if c in "<>":
            tokens.append(Token("op", c, c, i))
            i += 1
            continue
        if c in "()[],":
            tokens.append(Token("punct", c, c, i))
            i += 1
            continue
        if c == "-":
            tokens.append(Token("minus", c, c, i))
            i += 1
            continue
        if c in _REFUSED_CHARS:
            raise _Fail(_REFUSED_CHARS[c], i)
        raise _Fail(f"unexpected character {c!r}", i)
    tokens.append(Token("end", "", None, n))
    return tokens


# -- parser -----------------------------------------------------------------------------------
def _describe(tok: Token) -> str:
    """A token as an error message names it."""
    if tok.kind == "end":
        return "the end"
    return repr(tok.text) if len(tok.text) <= 40 else f"{tok.text[:40]!r}…"


class _Parser:
    """Recursive descent over the tokens, one method per rule of the grammar."""

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        """The current token."""
        return self.tokens[self.i]

    def take(self) -> Token:
        """The current token, moving past it (never past the end)."""
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        """Whether the current token is of ``kind`` (and is ``text``, when given)."""
        return self.tok.kind == kind and (text is None or self.tok.text == text)

    def expect(self, kind: str, text: str, what: str) -> Token:
        """Take the token ``text`` of ``kind``, or fail saying ``what`` was expected."""
        if not self.at(kind, text):
            raise _Fail(f"expected {what}, found {_describe(self.tok)}", self.tok.pos)
        return self.take()

    def enter(self, pos: int) -> None:
        """One level deeper (a parenthesis, ``not``, a call); fail past ``MAX_DEPTH``."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _Fail(f"nested deeper than {MAX_DEPTH} levels", pos)

    def parse(self) -> Node:
        """``query``: the whole expression, and nothing after it."""
        if self.at("end"):
            raise _Fail("empty expression", self.tok.pos)
        node = self.or_expr()
        if not self.at("end"):
            tok = self.tok
            if tok.kind == "punct" and tok.text == ")":
                raise _Fail("')' without a matching '('", tok.pos)
            raise _Fail(f"unexpected {_describe(tok)} after a complete condition "
                        "(missing 'and' / 'or'?)", tok.pos)
        return node

    def _joined(self, op: str, operand: Callable[[], Node]) -> Node:
        """``operand { op operand }`` as one flat ``BoolOp`` (whatever its length: no deep tree)."""
        parts = [operand()]
        while self.at("kw", op):
            self.take()
            parts.append(operand())
        return parts[0] if len(parts) == 1 else BoolOp(op, tuple(parts))

    def or_expr(self) -> Node:
        """``or_expr``."""
        return self._joined("or", self.and_expr)

    def and_expr(self) -> Node:
        """``and_expr``."""
        return self._joined("and", self.not_expr)

    def not_expr(self) -> Node:
        """``not_expr``."""
        if self.at("kw", "not"):
            tok = self.take()
            self.enter(tok.pos)
            node = Not(self.not_expr(), tok.pos)
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        """``comparison``: an operand alone, a chain of comparisons, or ``[not] in`` a list."""
        first = self.operand()
        if self.at("kw", "in") or (self.at("kw", "not") and self.tokens[self.i + 1].text == "in"
                                   and self.tokens[self.i + 1].kind == "kw"):
            negate = self.take().text == "not"
            pos = self.tok.pos
            if negate:
                self.take()
            return InList(first, self.list_literal(), negate, pos)
        operands, ops, op_pos = [first], [], []
        while self.at("op"):
            tok = self.take()
            ops.append(tok.text)
            op_pos.append(tok.pos)
            operands.append(self.operand())
        if not ops:
            return first
        return Compare(tuple(operands), tuple(ops), tuple(op_pos))

    def operand(self) -> Node:
        """``operand``, refusing what may not follow one (indexing, a call, arithmetic)."""
        tok = self.tok
        if tok.kind == "name":
            self.take()
            if self.at("punct", "("):
                if tok.text.startswith("`"):
                    raise _Fail("only the functions can be called", self.tok.pos)
                node: Node = self.call(tok)
            else:
                node = Column(tok.value, tok.pos)
        elif tok.kind in ("number", "string", "const"):
            node = Literal(self.take().value, tok.pos)
        elif tok.kind == "minus":
            self.take()
            if not self.at("number"):
                raise _Fail("'-' is only allowed before a number (no arithmetic)", tok.pos)
            node = Literal(-self.take().value, tok.pos)
        elif tok.kind == "punct" and tok.text == "(":
            self.take()
            self.enter(tok.pos)
            node = self.or_expr()
            if self.at("punct", ","):
                raise _Fail("a list is only allowed after 'in'", tok.pos)
            if not self.at("punct", ")"):
                if self.at("end"):
                    raise _Fail("'(' is never closed", tok.pos)
                raise _Fail(f"expected ')', found {_describe(self.tok)}", self.tok.pos)
            self.take()
            self.depth -= 1
        elif tok.kind == "punct" and tok.text == "[":
            raise _Fail("a list is only allowed after 'in'", tok.pos)
        elif tok.kind == "end":
            raise _Fail("expected a column, a value or '(', found the end", tok.pos)
        else:
            raise _Fail(f"expected a column, a value or '(', found {_describe(tok)}", tok.pos)
        if self.at("punct", "["):
            raise _Fail("indexing ('[') is not allowed", self.tok.pos)
        if self.at("punct", "("):
            raise _Fail("only the functions can be called", self.tok.pos)
        if self.at("minus"):
            raise _Fail("arithmetic ('-') is not supported", self.tok.pos)
        return node

    def call(self, name: Token) -> Call:
        """``call``: one of ``FUNCTIONS``, a column name, and a string for the two-argument ones."""
        func = name.value
        if func not in FUNCTIONS:
            raise _Fail(f"unknown function '{func}'; functions: {', '.join(sorted(FUNCTIONS))}", name.pos)
        self.take()  # "("
        self.enter(name.pos)
        arity = FUNCTIONS[func]
        usage = f"{func}(column{', ' + repr('text') if arity == 2 else ''})"
        if not self.at("name"):
            raise _Fail(f"{func}() takes a column name first: {usage}", self.tok.pos)
        col_tok = self.take()
        if self.at("punct", "("):
            raise _Fail(f"{func}() takes a column name first, not a call: {usage}", col_tok.pos)
        arg = None
        if arity == 2:
            self.expect("punct", ",", f"',' and a string: {usage}")
            if not self.at("string"):
                raise _Fail(f"{func}() takes a quoted string second: {usage}", self.tok.pos)
            arg = self.take().value
            if func == "has_tag" and ";" in arg:
                raise _Fail("a tag cannot contain ';'", self.tokens[self.i - 1].pos)
        if self.at("punct", ","):
            raise _Fail(f"too many arguments: {usage}", self.tok.pos)
        self.expect("punct", ")", f"')' closing {func}(")
        self.depth -= 1
        return Call(func, Column(col_tok.value, col_tok.pos), arg, name.pos)

    def list_literal(self) -> tuple[Literal, ...]:
        """``list``: literals only, in ``[..]`` or ``(..)``."""
        tok = self.tok
        if not (tok.kind == "punct" and tok.text in "(["):
            raise _Fail(f"'in' takes a list of values, [..] or (..), found {_describe(tok)}", tok.pos)
        close = "]" if self.take().text == "[" else ")"
        items: list[Literal] = []
        while not self.at("punct", close):
            t = self.tok
            if t.kind == "minus":
                self.take()
                if not self.at("number"):
                    raise _Fail("'-' is only allowed before a number (no arithmetic)", t.pos)
                items.append(Literal(-self.take().value, t.pos))
            elif t.kind in ("number", "string", "const"):
                items.append(Literal(self.take().value, t.pos))
            elif t.kind == "end":
                raise _Fail(f"list opened with {tok.text!r} is never closed", tok.pos)
            else:
                raise _Fail(f"a list holds values only (numbers, strings, True, False, None), "
                            f"found {_describe(t)}", t.pos)
            if self.at("punct", ","):
                self.take()
            elif self.at("end"):
                raise _Fail(f"list opened with {tok.text!r} is never closed", tok.pos)
            elif not self.at("punct", close):
                raise _Fail(f"expected ',' or {close!r} in the list, found {_describe(self.tok)}", self.tok.pos)
        self.take()
        return tuple(items)


# -- evaluation -------------------------------------------------------------------------------
def _kind(s: pd.Series) -> str:
    """What a column holds: ``text``, ``number``, ``bool``, ``mixed``, or ``empty`` (no cell set)."""
    if len(s) == 0 or bool(s.isna().all()):
        return "empty"
    if pd.api.types.is_bool_dtype(s.dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_complex_dtype(s.dtype):
        return "number"
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    return {"string": "text", "boolean": "bool", "integer": "number", "floating": "number",
            "mixed-integer-float": "number", "decimal": "number"}.get(inferred, "mixed")


def _literal_kind(value: Any) -> str:
    """The kind of a literal's value (``null`` for None)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "text"


@dataclass
class _Value:
    """An operand, evaluated: a column (or a condition's mask) with its kind, or a constant."""

    kind: str
    what: str  # how an error message names it
    pos: int
    series: np.ndarray | None = None  # one value per row (object or numeric), when not a constant
    const: Any = None


def _compatible(a: str, b: str, op: str) -> bool:
    """Whether values of kinds ``a`` and ``b`` may be compared with ``op`` (neither is null)."""
    if "empty" in (a, b):
        return True
    if op in ("==", "!="):
        return a == b or {a, b} == {"bool", "number"} or "mixed" in (a, b)
    return a == b and a in ("text", "number")


def _hint(kind: str, other: _Value) -> str:
    """A hint for comparing a column of ``kind`` with the literal ``other``: quotes, or none."""
    if other.series is not None:
        return ""
    if kind == "text" and other.kind == "number":
        return " (quote the number to compare text)"
    if kind == "number" and other.kind == "text":
        return " (write a number without quotes)"
    return ""


class _Evaluator:
    """Evaluates a parsed query against one ``DataFrame``."""

    def __init__(self, df: pd.DataFrame):
        self.df = df
        self.n = len(df)
        self.columns = [str(c) for c in df.columns]
        self.shown = [c if c.isprintable() and c.strip() == c and c else repr(c) for c in self.columns]

    def full(self, value: bool) -> np.ndarray:
        """A mask of ``value`` for every row."""
        return np.full(self.n, bool(value))

    # operands ----------------------------------------------------------------------------
    def column(self, node: Column) -> tuple[pd.Series, str]:
        """The column named by ``node`` and its kind; an unknown name lists the closest (or all)."""
        if node.name not in self.df.columns:
            close = difflib.get_close_matches(node.name, self.columns, n=3, cutoff=0.6)
            hint = (f"did you mean {', '.join(map(repr, close))}?" if close
                    else f"columns: {', '.join(self.shown) or '(none)'}")
            raise _Fail(f"unknown column {node.name!r}; {hint}", node.pos)
        s = self.df[node.name]
        if not isinstance(s, pd.Series):
            raise _Fail(f"column {node.name!r} appears more than once in the manifest", node.pos)
        return s, _kind(s)

    def value(self, node: Node) -> _Value:
        """An operand: a literal, a column, or a condition used as a true/false column."""
        if isinstance(node, Literal):
            return _Value(_literal_kind(node.value), repr(node.value), node.pos, const=node.value)
        if isinstance(node, Column):
            s, kind = self.column(node)
            plain = kind == "number" and isinstance(s.dtype, np.dtype)  # float64/int64: numpy compares
            return _Value(kind, f"column {node.name!r} ({_KIND_WORDS[kind]})", node.pos,
                          series=s.to_numpy() if plain else s.to_numpy(dtype=object))
        return _Value("bool", "a condition (true/false)", _pos(node), series=self.mask(node))

    # comparisons ---------------------------------------------------------------------------
    def compare(self, a: _Value, op: str, b: _Value, pos: int) -> np.ndarray:
        """``a op b`` per row, after checking that their kinds may be compared; empty cells as pandas."""
        if a.series is None and b.series is not None:  # keep the column on the left
            a, b, op = b, a, _FLIP[op]
        if b.kind == "null" or a.kind == "null":
            other = a if b.kind == "null" else b
            if op not in ("==", "!="):
                raise _Fail(f"'{op}' with None is always false; use isnull() or notnull()", pos)
            empty = (self.full(other.const is None) if other.series is None
                     else pd.isna(other.series).astype(bool))
            return empty if op == "==" else ~empty
        if not _compatible(a.kind, b.kind, op):
            unordered = [v for v in (a, b) if v.kind in ("bool", "mixed")]
            if op not in ("==", "!=") and unordered:
                raise _Fail(f"'{op}' cannot order {unordered[0].what}", pos)
            raise _Fail(f"cannot compare {a.what} with {b.what}{_hint(a.kind, b)}", pos)
        fn = _CMP_OPS[op]
        if a.series is None:  # two constants
            return self.full(fn(a.const, b.const))
        valid = ~pd.isna(a.series).astype(bool)
        rhs: Any = b.const
        if b.series is not None:
            valid &= ~pd.isna(b.series).astype(bool)
            rhs = b.series[valid]
        out = self.full(op == "!=")
        if valid.any():
            try:
                res = np.asarray(fn(a.series[valid], rhs), dtype=bool)
            except (TypeError, ValueError, OverflowError) as exc:
                raise _Fail(f"cannot compare {a.what} with {b.what}: {exc}".splitlines()[0], pos) from None
            if res.shape != (int(valid.sum()),):
                raise _Fail(f"cannot compare {a.what} with {b.what}", pos)
            out[valid] = res
        return out

    def chain(self, node: Compare) -> np.ndarray:
        """``a < b <= c``: each adjacent pair, and-ed, each operand evaluated once."""
        vals = [self.value(o) for o in node.operands]
        out = self.full(True)
        for k, op in enumerate(node.ops):
            out &= self.compare(vals[k], op, vals[k + 1], node.op_pos[k])
        return out

    def in_list(self, node: InList) -> np.ndarray:
        """``x [not] in [..]``: each value checked against the operand's kind; ``None`` matches empty cells."""
        v = self.value(node.operand)
        values = [it.value for it in node.items if it.value is not None]
        for it in node.items:
            k = _literal_kind(it.value)
            if "null" not in (k, v.kind) and not _compatible(v.kind, k, "=="):
                raise _Fail(f"cannot compare {v.what} with {it.value!r}"
                            f"{_hint(v.kind, _Value(k, repr(it.value), it.pos, const=it.value))}", it.pos)
        with_null = any(it.value is None for it in node.items)
        if v.series is None:
            hit = self.full(v.const is None and with_null or (v.const is not None and v.const in values))
        else:
            empty = pd.isna(v.series).astype(bool)
            hit = np.zeros(self.n, dtype=bool)
            if values and (~empty).any():
                try:
                    hit[~empty] = pd.Series(v.series[~empty], dtype=object).isin(values).to_numpy(dtype=bool)
                except (TypeError, ValueError) as exc:
                    raise _Fail(f"cannot compare {v.what} with the list: {exc}".splitlines()[0], node.pos) from None
            if with_null:
                hit |= empty
        return ~hit if node.negate else hit

    def call(self, node: Call) -> np.ndarray:
        """A predicate of ``FUNCTIONS`` over a column; text predicates need a text column."""
        s, kind = self.column(node.column)
        if node.func in ("isnull", "isna"):
            return s.isna().to_numpy(dtype=bool)
        if node.func in ("notnull", "notna"):
            return s.notna().to_numpy(dtype=bool)
        if kind == "empty":
            return self.full(False)
        if kind != "text":
            raise _Fail(f"{node.func}() needs a text column; {node.column.name!r} holds {_KIND_WORDS[kind]}",
                        node.column.pos)
        arg = node.arg or ""
        present = s.notna().to_numpy(dtype=bool)
        text = pd.Series(s.astype(object).where(s.notna(), ""), dtype=object)
        if node.func == "contains":
            res = text.str.contains(arg, regex=False)
        elif node.func == "startswith":
            res = text.str.startswith(arg)
        elif node.func == "endswith":
            res = text.str.endswith(arg)
        else:  # has_tag
            res = (";" + text + ";").str.contains(f";{arg};", regex=False)
        return res.to_numpy(dtype=bool) & present  # an empty cell contains nothing

    # conditions ----------------------------------------------------------------------------
    def mask(self, node: Node) -> np.ndarray:
        """A node as a condition: one bool per row; a lone column must hold true/false."""
        if isinstance(node, BoolOp):
            parts = [self.mask(o) for o in node.operands]
            out = parts[0].copy()
            for p in parts[1:]:
                out = (out & p) if node.op == "and" else (out | p)
            return out
        if isinstance(node, Not):
            return ~self.mask(node.operand)
        direct = {Compare: self.chain, InList: self.in_list, Call: self.call}.get(type(node))
        if direct is not None:
            return direct(node)
        if isinstance(node, Column):
            s, kind = self.column(node)
            if kind not in ("bool", "empty"):
                raise _Fail(f"column {node.name!r} holds {_KIND_WORDS[kind]}, not true/false; compare it "
                            f"(e.g. {node.name} == ...)", node.pos)
            return s.astype(object).where(s.notna(), False).to_numpy(dtype=bool)
        if isinstance(node, Literal):
            if isinstance(node.value, bool):
                return self.full(node.value)
            raise _Fail(f"{node.value!r} is not a condition; compare a column with it", node.pos)
        raise _Fail("not a condition", 0)  # unreachable: every node type is handled above


def _pos(node: Node) -> int:
    """The index of a node's first character, for error messages."""
    if isinstance(node, BoolOp):
        return _pos(node.operands[0])
    if isinstance(node, Compare):
        return _pos(node.operands[0])
    if isinstance(node, InList):
        return _pos(node.operand)
    return node.pos


# -- the API ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """A parsed query, ready to evaluate against any number of frames.

    Attributes:
        text: the expression as the user wrote it.
        option: the option it came from (``--filter``, ``--query``), the field of its errors.
        tree: the parsed expression.
    """

    text: str
    option: str
    tree: Node

    def mask(self, df: pd.DataFrame) -> pd.Series:
        """The rows of ``df`` the query selects.

        Args:
            df: the manifest (or the candidate rows of a pack).

        Returns:
            A boolean Series aligned with ``df``'s index.

        Raises:
            DatasetError: an unknown column or function argument, or a type mismatch (one line,
                field ``option``).
        """
        try:
            values = _Evaluator(df).mask(self.tree)
        except _Fail as exc:
            raise _error(self.text, self.option, exc.message, exc.pos) from None
        except RecursionError:
            raise _error(self.text, self.option, "nested too deeply", 0) from None
        return pd.Series(np.asarray(values, dtype=bool), index=df.index, dtype=bool)

    def select(self, df: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``df`` the query selects, in ``df``'s order (see ``mask``)."""
        return df[self.mask(df).to_numpy()]


def parse_query(text: str, option: str = "--query") -> Query:
    """Parse a query; nothing of it is run.

    Args:
        text: the expression (see the module's grammar).
        option: the option it came from, named as the field of every error.

    Returns:
        The parsed query.

    Raises:
        DatasetError: not a string, empty, too long, a control character, or a syntax error; one
            line naming ``option``, what is wrong and at which character.
    """
    if not isinstance(text, str):
        raise DatasetError(f"expected an expression (text), got {type(text).__name__}", field=option)
    if len(text) > MAX_LENGTH:
        raise _error(text, option, f"the expression is {len(text)} characters long; the limit is {MAX_LENGTH}",
                     MAX_LENGTH)
    for i, c in enumerate(text):
        o = ord(c)
        if (o < 32 and c not in _WHITESPACE) or 0x7F <= o < 0xA0 or 0xD800 <= o < 0xE000:
            what = "a surrogate (bytes that are not UTF-8)" if o >= 0xD800 else f"control character {c!r}"
            raise _error(text, option, f"{what} is not allowed", i)
    try:
        tree = _Parser(_tokenize(text)).parse()
    except _Fail as exc:
        raise _error(text, option, exc.message, exc.pos) from None
    except RecursionError:
        raise _error(text, option, "nested too deeply", 0) from None
    return Query(text, option, tree)


def query_mask(df: pd.DataFrame, text: str, option: str = "--query") -> pd.Series:
    """The boolean mask of the rows of ``df`` that ``text`` selects (see ``parse_query``, ``Query.mask``)."""
    return parse_query(text, option).mask(df)


def select_rows(df: pd.DataFrame, text: str, option: str = "--query") -> pd.DataFrame:
    """The rows of ``df`` that ``text`` selects, in order (see ``parse_query``, ``Query.mask``)."""
    return parse_query(text, option).select(df)
