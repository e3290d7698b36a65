"""Typed rows for the tables one stage writes and another reads: ``sync.csv``, ``qa.csv``.

Each table has one row type (a dataclass), one writer (``Table.write``) and one reader
(``Table.read``), so its columns, their types and how a list is joined into one cell are written
down once. The file carries its version in a ``schema_version`` column (the last one, so tools
that read the CSV by column name are unaffected); a file without it was written before tables
were versioned and reads as version 1. A reader names the file, the data row (1-based) and the
column of a bad value: ``sync/sync.csv: skew_bound_us: row 3: 'abc' is not a number``.

Columns a row type does not name are kept, typed by their look (number or text), in the field
marked ``extra`` (``qa.csv``'s measured figures, whose set grows with the checks).
"""

from __future__ import annotations

import csv
import io
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Generic, TypeVar

from hzsr.core.errors import SessionFormatError
from hzsr.core.fileio import atomic_write_bytes
from hzsr.core.verdict import SKEW_CODES, Verdict, worst

SCHEMA_COLUMN = "schema_version"

R = TypeVar("R")


def joined(sep: str) -> Any:
    """A ``list[str]`` field stored as one cell, items joined by ``sep``."""
    return field(default_factory=list, metadata={"sep": sep})


def extra() -> Any:
    """The ``dict`` field that holds every column the row type does not name."""
    return field(default_factory=dict, metadata={"extra": True})


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _base_type(tp: Any) -> tuple[Any, bool]:
    """(the type without ``| None``, whether None is allowed)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class Table(Generic[R]):
    """One CSV table: its row type, version and float format."""

    row_type: type[R]
    version: int = 1
    float_format: str = ".10g"  # enough for host ns in us and every figure we measure

    # -- writing ------------------------------------------------------------------------
    def _cell(self, v: Any, sep: str | None) -> str:
        if _is_missing(v):
            return ""
        if sep is not None:
            return sep.join(str(x) for x in v)
        if isinstance(v, bool):
            return "True" if v else "False"
        if isinstance(v, Verdict):
            return v.value
        if isinstance(v, float):
            return format(v, self.float_format)
        return str(v)

    def write(self, path: str | Path, rows: Sequence[R]) -> Path:
        """Write ``rows`` atomically, named columns first in field order, then extras sorted."""
        named = [f for f in fields(self.row_type) if not f.metadata.get("extra")]
        ex = next((f.name for f in fields(self.row_type) if f.metadata.get("extra")), None)
        extras = sorted({k for r in rows for k in (getattr(r, ex) if ex else {})} - {f.name for f in named})
        header = [f.name for f in named] + extras + [SCHEMA_COLUMN]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            cells = [self._cell(getattr(r, f.name), f.metadata.get("sep")) for f in named]
            more = getattr(r, ex) if ex else {}
            cells += [self._cell(more.get(k), None) for k in extras]
            w.writerow([*cells, str(self.version)])
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
        return path

    # -- reading ------------------------------------------------------------------------
    def _value(self, f, hint: Any, text: str, path: Path, i: int) -> Any:
        tp, optional = _base_type(hint)

        def bad(msg: str) -> SessionFormatError:
            return SessionFormatError(f"row {i}: {msg}", file=path, field=f.name)

        sep = f.metadata.get("sep")
        if sep is not None:
            return [x for x in text.split(sep) if x] if text else []
        if text == "":
            if optional:
                return None
            if tp is str:
                return ""
            raise bad("empty")
        if tp is str:
            return text
        if tp is Verdict:
            try:
                return Verdict.parse(text)
            except SessionFormatError:
                raise bad(f"{text!r} is not a verdict (pass, warn or fail)") from None
        if tp is bool:
            if text not in ("True", "False", "true", "false", "1", "0"):
                raise bad(f"{text!r} is not True or False")
            return text in ("True", "true", "1")
        if tp is int:
            n = _number(text)
            if n is None or (isinstance(n, float) and not n.is_integer()):
                raise bad(f"{text!r} is not a whole number")
            return int(n)
        if tp is float:
            n = _number(text)
            if n is None:
                raise bad(f"{text!r} is not a number")
            return float(n)
        raise TypeError(f"{self.row_type.__name__}.{f.name}: no reader for {tp}")

    def read(self, path: str | Path) -> list[R]:
        """Every row of the table at ``path``.

        Raises:
            SessionFormatError: the file cannot be read (``unreadable``), lacks a column, was
                written by a newer hzsr, or holds a bad value (file, column and row named).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise SessionFormatError(f"cannot read: {why}", file=path, unreadable=True) from None
        try:
            records = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise SessionFormatError(f"not CSV: {exc}", file=path, unreadable=True) from None
        if not records:
            raise SessionFormatError("empty file: no header row", file=path)
        header, body = records[0], [r for r in records[1:] if r]
        named = [f for f in fields(self.row_type) if not f.metadata.get("extra")]
        ex = next((f.name for f in fields(self.row_type) if f.metadata.get("extra")), None)
        for f in named:  # a column with a default may be absent (a file older than the column)
            if f.name not in header and f.default is MISSING and f.default_factory is MISSING:
                raise SessionFormatError("missing column", file=path, field=f.name)
        col = {name: k for k, name in enumerate(header)}
        hints = typing.get_type_hints(self.row_type)  # once per read, not per cell
        out: list[R] = []
        for i, cells in enumerate(body, start=1):
            if len(cells) != len(header):
                raise SessionFormatError(f"row {i}: {len(cells)} cells, the header has {len(header)}", file=path)
            ver = cells[col[SCHEMA_COLUMN]] if SCHEMA_COLUMN in col else "1"
            if not ver.isdigit():
                raise SessionFormatError(f"row {i}: {ver!r} is not a version number", file=path, field=SCHEMA_COLUMN)
            if int(ver) > self.version:
                raise SessionFormatError(f"row {i}: version {ver} is newer than this hzsr reads ({self.version}); "
                                         "update hzsr or rerun the stage that wrote it", file=path,
                                         field=SCHEMA_COLUMN)
            kw: dict[str, Any] = {}
            for f in named:
                if f.name in col:
                    kw[f.name] = self._value(f, hints[f.name], cells[col[f.name]], path, i)
            if ex:
                known = {f.name for f in named} | {SCHEMA_COLUMN}
                kw[ex] = {h: _loose(cells[k]) for h, k in col.items() if h not in known and cells[k] != ""}
            out.append(self.row_type(**kw))
        return out

    def read_frame(self, path: str | Path):
        """The table as a pandas DataFrame, checked by ``read``: lists joined as in the file, verdicts
        as text, and an empty cell as None (as ``pandas.read_csv`` gives NaN)."""
        import pandas as pd

        named = [f for f in fields(self.row_type) if not f.metadata.get("extra")]
        ex = next((f.name for f in fields(self.row_type) if f.metadata.get("extra")), None)
        recs = []
        for r in self.read(path):
            d: dict[str, Any] = {}
            for f in named:
                v = getattr(r, f.name)
                if f.metadata.get("sep") is not None or isinstance(v, Verdict):
                    v = self._cell(v, f.metadata.get("sep"))
                d[f.name] = None if v == "" else v
            if ex:
                d.update(getattr(r, ex))
            recs.append(d)
        return pd.DataFrame(recs, columns=None if recs else [f.name for f in named])


def _loose(text: str) -> Any:
    """An extra column's value: a number if it reads as one, else the text."""
    n = _number(text)
    return text if n is None else n


# -- the tables ------------------------------------------------------------------------------
@dataclass
class SyncRow:
    """One capture in ``<session>/sync/sync.csv`` (written by ``hzsr sync check``)."""

    capture_id: str
    scene_id: str | None = None
    main_W_host_ns: int | None = None  # the main W frame's sensor timestamp mapped to host time
    ref_T_host_ns: int | None = None  # ... and the reference T frame's
    skew_ref_main_us: float | None = None  # ref_T minus main_W on the host clock; None if not measurable
    skew_bound_us: float | None = None  # its error bound (clock mapping of both frames + timestamp jitter)
    skew_wt_us: float | None = None  # main T minus main W, where timestamps can show it (CALIBRATED sync)
    skew_wt_note: str = ""  # why skew_wt_us is or is not measured
    flags: list[str] = joined(";")  # reason codes, sorted
    reasons: list[str] = joined(" | ")  # the same, in words
    verdict: Verdict = Verdict.PASS

    @property
    def skew_verdict(self) -> Verdict | None:
        """The skew rule's verdict alone (``hzsr.core.verdict.skew_reasons``); None if skew was not measured."""
        if self.skew_ref_main_us is None:
            return None
        return worst(SKEW_CODES[f] for f in self.flags if f in SKEW_CODES) or Verdict.PASS


@dataclass
class QARow:
    """One capture in ``<session>/qa/qa.csv`` (written by ``hzsr qa check``; docs/qa.md lists the figures)."""

    capture_id: str
    scene_id: str | None = None
    verdict: Verdict = Verdict.PASS
    reasons: list[str] = joined(" | ")  # "level: code: message" each
    codes: list[str] = joined(";")  # the reasons' codes, sorted
    sync_skew_us: float | None = None  # from sync.csv, when sync check ran
    sync_verdict: Verdict | None = None  # sync check's verdict of the capture (skew, pairing, clocks)
    figures: dict[str, Any] = extra()  # every measured figure, by column name


SYNC_TABLE: Table[SyncRow] = Table(SyncRow, version=1)
QA_TABLE: Table[QARow] = Table(QARow, version=1, float_format=".6g")
