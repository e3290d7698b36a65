"""Verdicts: ``pass``, ``warn`` or ``fail``, with reasons, and the one rule that judges skew.

Every stage speaks the same verdict (the capture line, ``sync check``, ``qa check``, the data
set's manifest), so a curator can compare them. A verdict is the worst level among its reasons:
a capture with no reason passes.

Skew is judged once, by ``skew_reasons``: the live capture line and ``hzsr sync check`` call it
with their skew and its error bound, and later stages read the verdict ``sync check`` wrote
instead of judging skew again with other numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from hzsr.core.errors import SessionFormatError


class Word(str, Enum):
    """An enum whose members are the words files and lines show: ``str(Verdict.PASS) == "pass"``."""

    def __str__(self) -> str:
        return self.value


class Verdict(Word):
    """What the crew or curator should do: keep (``pass``), look (``warn``), retake or drop (``fail``)."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"

    @property
    def rank(self) -> int:
        """0 for pass, 1 for warn, 2 for fail: ``worst`` is the highest rank."""
        return _RANK[self]

    @classmethod
    def parse(cls, value: object, *, file: str | Path | None = None, field: str | None = None) -> Verdict:
        """A verdict from a table cell or JSON value.

        ``ok`` is read as ``pass``: sessions checked by ``sync check`` before verdicts were unified
        wrote it.

        Raises:
            SessionFormatError: ``value`` is not a verdict (the message names the file and field).
        """
        text = str(value).strip().lower() if isinstance(value, str) else None
        if text == "ok":
            return cls.PASS
        try:
            return cls(text)
        except ValueError:
            raise SessionFormatError(f"{value!r} is not a verdict (pass, warn or fail)", file=file,
                                     field=field) from None


_RANK = {Verdict.PASS: 0, Verdict.WARN: 1, Verdict.FAIL: 2}


@dataclass(frozen=True)
class Reason:
    """Why a verdict is not ``pass``: its level, a stable code for filters, and words for people."""

    level: Verdict
    code: str  # e.g. skew_may_exceed_max, large_shift: what curators filter on
    message: str

    def text(self) -> str:
        """``level: code: message``, the form every table and line shows."""
        return f"{self.level}: {self.code}: {self.message}"


def worst(verdicts: Iterable[Verdict | str | None]) -> Verdict | None:
    """The worst of ``verdicts`` (``fail`` > ``warn`` > ``pass``); None when there is none.

    ``None`` and NaN entries (a stage that did not run) are skipped; strings are parsed with
    ``Verdict.parse``.
    """
    out: Verdict | None = None
    for v in verdicts:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        v = v if isinstance(v, Verdict) else Verdict.parse(v)
        if out is None or v.rank > out.rank:
            out = v
    return out


def verdict_of(reasons: Iterable[Reason]) -> Verdict:
    """The verdict a list of reasons gives: the worst level among them, ``pass`` without any."""
    return worst(r.level for r in reasons) or Verdict.PASS


@dataclass(frozen=True)
class SkewThresholds:
    """The skew rule's levels; every default lives here (docs/sync.md explains them).

    ``pass_limit_us`` is a rig setting: ``rig.yaml``'s ``sync: {pass_limit_us: 250}``, recorded
    in ``session.json`` with the rig, so the live line and ``sync check`` judge a session alike.
    """

    # pass only if |skew| + bound <= this; fail if |skew| - bound > this (libsoftwaresync's 250 us)
    pass_limit_us: float = 250.0
    max_skew_us: float = 1000.0  # beyond this the skew is gross (pairing tolerance; a bound wider than it is useless)

    @property
    def warn_skew_us(self) -> float:
        """The level above which a skew is not ``pass`` (the pass limit), for plots and reports."""
        return self.pass_limit_us


#: Reason codes of the skew rule, each with the level it gives.
SKEW_CODES = {"skew_exceeds_max": Verdict.FAIL, "skew_exceeds_limit": Verdict.FAIL,
              "trigger_from_loose_sample": Verdict.FAIL, "skew_may_exceed_max": Verdict.WARN,
              "skew_high": Verdict.WARN, "bound_exceeds_threshold": Verdict.WARN, "rig_uncalibrated": Verdict.WARN}

#: What a crew runs to calibrate a rig (docs/sync-board.md).
CALIBRATE_COMMAND = ("hzsr sync board --out board-kit/, shoot it (hzsr capture run BOARD --scene sync-board, "
                     ">= 10 captures), then hzsr sync calibrate BOARD --rig rig.yaml")


def skew_reasons(skew_us: float, bound_us: float, th: SkewThresholds = SkewThresholds(), *,
                 calibrated: bool | None = None, loose_trigger: str | None = None) -> list[Reason]:
    """Judge the reference-minus-main skew ``s`` with its error bound ``b`` (both in us).

    The one skew rule: the live capture line, ``hzsr sync check`` and every later stage use it.
    With ``M = max_skew_us`` and the pass limit ``L = min(pass_limit_us, M)``:

    - ``|s| - b > M``: ``fail`` (``skew_exceeds_max``: surely a gross skew);
    - ``|s| - b > L``: ``fail`` (``skew_exceeds_limit``: surely above the pass limit: retake);
    - ``|s| + b > M``: ``warn`` (``skew_may_exceed_max``); ``|s| + b > L``: ``warn``
      (``skew_high``): a capture passes only when its whole interval ``[|s| - b, |s| + b]``
      is within ``L``;
    - ``b > M``: ``warn`` (``bound_exceeds_threshold``): the bound is too wide to judge;
    - ``loose_trigger`` (why the trigger came from a loose clock sample): ``fail``
      (``trigger_from_loose_sample``): the phones were aimed with a bad estimate;
    - ``calibrated is False`` and not ``pass``: ``warn`` (``rig_uncalibrated``), with the
      commands that calibrate: an uncalibrated bound carries each link's whole asymmetry
      (``rtt / 2``), and only the sync board can lower it. ``None``: not known (no advice).

    Returns:
        The reasons (empty: ``pass``); ``verdict_of`` gives the verdict.
    """
    a, b, m = abs(skew_us), bound_us, th.max_skew_us
    lim = min(th.pass_limit_us, m)
    out: list[Reason] = []
    if a - b > m:
        out.append(Reason(Verdict.FAIL, "skew_exceeds_max",
                          f"|skew| {a:.0f} us exceeds {m:.0f} us even after its bound"))
    elif a - b > lim:
        out.append(Reason(Verdict.FAIL, "skew_exceeds_limit",
                          f"|skew| {a:.0f} us exceeds the {lim:.0f} us pass limit even after its bound {b:.0f} us"))
    elif a + b > m:
        out.append(Reason(Verdict.WARN, "skew_may_exceed_max", f"|skew| {a:.0f} +- {b:.0f} us may exceed {m:.0f} us"))
    elif a + b > lim:
        out.append(Reason(Verdict.WARN, "skew_high",
                          f"|skew| {a:.0f} +- {b:.0f} us may exceed the {lim:.0f} us pass limit"))
    if b > m:
        out.append(Reason(Verdict.WARN, "bound_exceeds_threshold",
                          f"sync error bound {b:.0f} us is larger than the {m:.0f} us skew threshold"))
    if loose_trigger:
        out.append(Reason(Verdict.FAIL, "trigger_from_loose_sample",
                          f"the trigger was set from a loose clock sample ({loose_trigger}): retake"))
    if calibrated is False and any(r.level is Verdict.WARN for r in out):
        out.append(Reason(Verdict.WARN, "rig_uncalibrated",
                          "the rig is not calibrated, so the bound carries each link's whole asymmetry; "
                          f"calibrate with the sync board: {CALIBRATE_COMMAND}"))
    elif calibrated and out and out[0].level is Verdict.WARN:
        r = out[0]  # a calibrated rig: the bound is the jitter near this capture, so a retake can pass
        out[0] = Reason(r.level, r.code, f"{r.message}: retake")
    return out
