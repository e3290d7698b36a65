"""``hzsr sync calibrate``: fit the rig's constant link asymmetry from a sync-board session.

SNTP reads each phone's clock with a bias ``b = (up - down) / 2`` of its link's one-way delays,
which no exchange can reveal. The skew the clocks report is then off by ``-(b_ref - b_main)``;
the sync board measures the true skew, so per capture

    d_k = clock_skew_k - optical_skew_k = -(b_ref - b_main) + noise_k.

Only the *difference* of the two biases shows in any skew, so the fit puts it on the reference
phone and keeps the main phone as the rig's time reference:

- reference ``offset_correction_ns`` = previous correction ``- median(d)`` (robust to a bad frame);
- ``uncertainty_ns`` = ``3 sigma_d (1 + 1 / sqrt(n))`` with ``sigma_d = 1.4826 MAD(d)``: the
  spread of what the correction leaves, and the error of the median itself; main: 0;
- each phone's ``base_half_rtt_ns`` = the least error bound (``rtt / 2``) of its clock samples in
  the session: the symmetric floor of its link, which the calibrated bound subtracts
  (``hzsr.sync.timebase``).

The result is stored per phone under ``clock_calibration`` in ``rig.yaml``; later captures apply
it when they sync (``hzsr.capture.session_run``) and record it in ``session.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hzsr.core.config import load_yaml
from hzsr.core.errors import ConfigError, SessionFormatError
from hzsr.core.fileio import atomic_write_bytes
from hzsr.core.records import ClockCalibration, SessionRecord
from hzsr.core.schema import to_plain

MIN_CAPTURES = 5


def fit_calibration(session: SessionRecord, diffs_us: np.ndarray, source: str = "") -> dict[str, ClockCalibration]:
    """Per role, the calibration that removes the median clock-minus-true skew ``diffs_us``."""
    d = np.asarray(diffs_us, np.float64)
    d = d[np.isfinite(d)]
    if len(d) < MIN_CAPTURES:
        raise SessionFormatError(f"{len(d)} captures with an optical skew; calibration needs >= {MIN_CAPTURES}",
                                 field="sync/optical.csv")
    med = float(np.median(d))
    sigma = 1.4826 * float(np.median(np.abs(d - med)))
    unc = 3 * sigma * (1 + 1 / np.sqrt(len(d)))
    out = {}
    for dev in session.devices:
        old = dev.clock.calibration
        base = min((s.rtt_ns / 2 for s in dev.clock.samples), default=0.0)
        prev = old.offset_correction_ns if old is not None else 0
        if dev.role == "reference":
            out[dev.role] = ClockCalibration(int(round(prev - med * 1e3)), int(base), int(np.ceil(unc * 1e3)), source)
        elif dev.role == "main":
            out[dev.role] = ClockCalibration(int(prev), int(base), 0, source)
    return out


def run_calibrate(session_dir: str | Path, rig_path: str | Path, board: str | Path | None = None) -> dict[str, Any]:
    """Fit from ``sync/optical.csv`` (decoding the session first if needed) and update ``rig.yaml``."""
    root = Path(session_dir)
    session = SessionRecord.load(root)
    csv = root / "sync" / "optical.csv"
    if not csv.exists():
        from hzsr.sync.optical import run_optical

        run_optical(root, board, plots=True)
    df = pd.read_csv(csv)
    ok = df[df["status"] == "ok"]
    cals = fit_calibration(session, ok["clock_minus_optical_us"].to_numpy(), source=session.session_id)

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
    d = ok["clock_minus_optical_us"].dropna().to_numpy()
    return {"session_id": session.session_id, "rig": str(rig_path), "captures_used": int(len(d)),
            "clock_minus_optical_us_median": round(float(np.median(d)), 2),
            "clock_minus_optical_us_sigma": round(float(1.4826 * np.median(np.abs(d - np.median(d)))), 2),
            "calibration": written}
