"""Timing: sensor timestamps mapped to host time with error bounds (``timebase``), frames paired
across phones (``pairing``), skew, health flags and verdicts per capture (``check``, ``hzsr sync
check``), and the LED sync board: its optical skew (``optical``), link calibration
(``calibrate``) and build kit (``boardkit``). See ``docs/sync.md`` and ``docs/sync-board.md``.
"""
