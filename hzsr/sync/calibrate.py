"""``hzsr sync calibrate``: fit the rig's constant link asymmetry from a sync-board session.

SNTP reads each phone's clock with a bias ``b = (up - down) / 2`` of its link's one-way delays,
which no exchange can reveal. The skew the clocks report is then off by ``-(b_ref - b_main)``;
the sync board measures the true skew, so per capture

    d_k = clock_skew_k - optical_skew_k = -(b_ref - b_main) + noise_k.

Only the *difference* of the two biases shows in any skew, so the fit puts the correction on the
reference phone and keeps the main phone as the rig's time reference:

- reference ``offset_correction_ns`` = previous correction ``- median(d)`` (robust to a bad frame);
- the uncertainty of what the correction leaves, ``u = 3 sigma_d (1 + 1 / sqrt(n))`` with
  ``sigma_d = 1.4826 MAD(d)`` (the spread of the residuals and the error of their median), is
  shared by both phones, ``u / 2`` each: a capture's bound adds both phones' terms, so it carries
  ``u`` whole, and neither phone's clock is claimed exact (the main phone's own share is as
  unknown as the reference's: only their difference was measured);
- each phone's ``base_half_rtt_ns`` = the least error bound (``rtt / 2``) of its clock samples over
  every session given: the symmetric floor of its link, which the calibrated bound subtracts
  (``hzsr.core.clockmap.sample_bounds``; a later session that sees a lower floor uses that).

Several board sessions (``hzsr sync calibrate S1 S2 ...``) are combined by pooling their ``d``: one
median over every decoded capture, one floor over every session's samples. At least
``MIN_CAPTURES`` decoded captures are needed; fewer is an error that says how many more to shoot.

The result is stored per phone under ``clock_calibration`` in ``rig.yaml`` with the sessions it
came from and when; later captures apply it when they sync (``hzsr.capture.session_run``),
record it in ``session.json``, and ``hzsr rig doctor`` reports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hzsr.core.config import load_yaml
from hzsr.core.errors import CalibrationError, ConfigError
from hzsr.core.fileio import atomic_write_bytes
from hzsr.core.records import ClockCalibration, SessionRecord
from hzsr.core.schema import to_plain

#: Decoded board captures a calibration needs: the median and its spread from fewer are not stable
#: to a few microseconds (docs/sync-board.md).
MIN_CAPTURES = 8


def fit_calibration(sessions: SessionRecord | list[SessionRecord], diffs_us: np.ndarray, source: str = "",
                    when_utc: str = "") -> dict[str, ClockCalibration]:
    """Per role, the calibration that removes the median clock-minus-true skew ``diffs_us``
    (pooled over ``sessions``, all shot on one rig)."""
    sessions = sessions if isinstance(sessions, list) else [sessions]
    d = np.asarray(diffs_us, np.float64)
    d = d[np.isfinite(d)]
    if len(d) < MIN_CAPTURES:
        raise CalibrationError(f"{len(d)} captures with an optical skew; calibration needs >= {MIN_CAPTURES}: "
                               f"shoot {MIN_CAPTURES - len(d)} more of the board (hzsr capture run SESSION "
                               "--scene sync-board) and pass every board session", field="sync/optical.csv")
    med = float(np.median(d))
    sigma = 1.4826 * float(np.median(np.abs(d - med)))
    unc = 3 * sigma * (1 + 1 / np.sqrt(len(d)))
    out = {}
    for role in ("main", "reference"):
        devs = [x.device(role) for x in sessions]
        old = devs[-1].clock.calibration
        base = min((s.rtt_ns / 2 for dev in devs for s in dev.clock.samples), default=0.0)
        prev = old.offset_correction_ns if old is not None else 0
        corr = prev - med * 1e3 if role == "reference" else prev
        out[role] = ClockCalibration(int(round(corr)), int(base), int(np.ceil(unc * 1e3 / 2)), source, when_utc,
                                     int(len(d)))
    return out


def run_calibrate(session_dirs: str | Path | list[str | Path], rig_path: str | Path,
                  board: str | Path | None = None) -> dict[str, Any]:
    """Fit from each session's ``sync/optical.csv`` (decoding it first if needed) and update ``rig.yaml``."""
    import datetime as dt

    dirs = [Path(x) for x in (session_dirs if isinstance(session_dirs, list) else [session_dirs])]
    sessions, diffs = [], []
    for root in dirs:
        session = SessionRecord.load(root)
        csv = root / "sync" / "optical.csv"
        if not csv.exists():
            from hzsr.sync.optical import run_optical

            run_optical(root, board, plots=True)
        df = pd.read_csv(csv)
        ok = df[df["status"] == "ok"]
        sessions.append(session)
        diffs.append(ok["clock_minus_optical_us"].to_numpy(np.float64))
    if len({tuple(sorted((d.role, d.serial) for d in s.devices)) for s in sessions}) > 1:
        raise ConfigError("the board sessions were shot with different phones; calibrate one rig at a time",
                          file=dirs[-1] / "session.json", field="devices")
    d_all = np.concatenate(diffs)
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    cals = fit_calibration(sessions, d_all, source=",".join(s.session_id for s in sessions), when_utc=now)
    session = sessions[-1]

    rig_path = Path(rig_path)
    doc = load_yaml(rig_path)
    if not isinstance(doc, dict) or not isinstance(doc.get("phones"), list):
        raise ConfigError("expected a mapping with a 'phones' list", file=rig_path)
    by_serial = {d.serial: d.role for d in session.devices}
    written = {}
    for i, p in enumerate(doc["phones"]):
        if not isinstance(p, dict):
            raise ConfigError("expected a mapping", file=rig_path, field=f"phones[{i}]")
        role = by_serial.get(p.get("serial"))
        if role in cals:
            p["clock_calibration"] = to_plain(cals[role])
            written[p["serial"]] = p["clock_calibration"]
    missing = [d.serial for d in session.devices if d.serial not in written and d.role in cals]
    if missing:
        raise ConfigError(f"no phone with serial {missing[0]!r} (from the session) in this rig", file=rig_path,
                          field="phones")
    atomic_write_bytes(rig_path, yaml.safe_dump(doc, sort_keys=False).encode())
    d = d_all[np.isfinite(d_all)]
    return {"session_id": ",".join(s.session_id for s in sessions), "sessions": len(sessions), "rig": str(rig_path),
            "captures_used": int(len(d)),
            "clock_minus_optical_us_median": round(float(np.median(d)), 2),
            "clock_minus_optical_us_sigma": round(float(1.4826 * np.median(np.abs(d - np.median(d)))), 2),
            "calibration": written}
