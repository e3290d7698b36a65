"""``hzsr sync ...`` verbs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hzsr.core.cliargs import add_folder, add_json, add_verb
from hzsr.core.errors import EXIT_OK, EXIT_PROBLEMS


def add_sync_parser(stages: Any) -> None:
    sync = stages.add_parser("sync", help="timestamp checks and cross-device pairing")
    verbs = sync.add_subparsers(dest="verb", required=True, metavar="VERB")
    c = add_verb(verbs, "check", "skew per capture, health flags, verdicts -> <session>/sync/", _cmd_check)
    add_folder(c, "session", "session folder", metavar="SESSION")
    c.add_argument("--max-skew-us", type=float, default=None,
                   help="fail threshold for |skew|, us (default: SkewThresholds.max_skew_us, 1000)")
    c.add_argument("--no-plots", action="store_true", help="skip skew.png and offset.png")
    add_json(c, "print summary.json instead of the summary")

    o = add_verb(verbs, "optical", "true skew per capture from photos of the sync board -> "
                 "<session>/sync/optical.csv, optical.png", _cmd_optical)
    add_folder(o, "session", "session folder with photos of the sync board", metavar="SESSION")
    o.add_argument("--board", default=None, help="board YAML (hzsr sync board writes one; default: the "
                   "reference build in docs/sync-board.md)")
    o.add_argument("--readout-ms", type=float, default=None,
                   help="rolling-shutter readout, first to last row, assumed to 25%% for frames whose capture.json "
                   "lacks rolling_shutter_skew_ns (default: each frame's own; without it the whole 5-35 ms range, "
                   "with the uncertainty that implies)")
    o.add_argument("--no-plots", action="store_true", help="skip optical.png")
    add_json(o, "print the summary as JSON")

    k = add_verb(verbs, "calibrate", "fit the rig's link asymmetry from a sync-board session; store it in rig.yaml",
                 _cmd_calibrate)
    k.add_argument("session", nargs="+", metavar="SESSION",
                   help="session folder(s) shot of the sync board; several are combined (their captures pooled)")
    k.add_argument("--rig", required=True, help="rig.yaml to update (clock_calibration per phone)")
    k.add_argument("--board", default=None, help="board YAML, if the session is not decoded yet (default: "
                   "the reference build)")
    add_json(k)

    b = add_verb(verbs, "board", "write the sync board's kit: board.yaml, printable face.png, leds.csv", _cmd_board)
    b.add_argument("--out", required=True, help="folder to write the kit into")
    b.add_argument("--board", default=None, help="start from this board YAML (default: the reference build)")
    add_json(b, "print the board and the files written as JSON")


def _cmd_check(args: argparse.Namespace) -> int:
    import math

    from hzsr.core.errors import ConfigError
    from hzsr.core.verdict import SkewThresholds
    from hzsr.sync.check import SyncThresholds, run_sync_check

    if args.max_skew_us is not None and not (math.isfinite(args.max_skew_us) and args.max_skew_us > 0):
        raise ConfigError(f"must be a finite number > 0, got {args.max_skew_us}", field="--max-skew-us")
    th = SyncThresholds()
    if args.max_skew_us is not None:
        th = SyncThresholds(skew=SkewThresholds(max_skew_us=args.max_skew_us))
    summary = run_sync_check(args.session, th, plots=not args.no_plots)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _say_check(Path(args.session) / "sync", summary, plots=not args.no_plots)
    return EXIT_OK


def _say_check(out: Path, s: dict, plots: bool, max_listed: int = 20) -> None:
    """The human form of ``sync check``: verdicts, skew figures, each non-pass capture's reasons."""
    from hzsr.core.tables import SYNC_TABLE
    from hzsr.core.verdict import Verdict

    v, sk, b = s["verdicts"], s["skew_abs_us"], s["skew_bound_us"]

    def us(x) -> str:
        return "-" if x is None else f"{x:.0f} us"

    print(f"{s['session_id']}: {s['captures']} captures: {v['pass']} pass, {v['warn']} warn, {v['fail']} fail; "
          f"|skew| p50 {us(sk['p50'])}, p95 {us(sk['p95'])}, max {us(sk['max'])}; error bound p50 {us(b['p50'])}")
    for serial, d in s["devices"].items():
        drift = "no drift fit" if d["drift_ppm"] is None else f"drift {d['drift_ppm']:+.2f} ppm"
        jumps = f", {len(d['clock_jumps'])} clock jumps" if d["clock_jumps"] else ""
        print(f"  {d['role']} {serial}: {drift} from {d['clock_samples']} clock samples{jumps}")
    bad = [r for r in SYNC_TABLE.read(out / "sync.csv") if r.verdict is not Verdict.PASS]
    for r in bad[:max_listed]:
        print(f"  {r.capture_id}: {r.verdict}: {' | '.join(r.reasons)}")
    if len(bad) > max_listed:
        print(f"  ... and {len(bad) - max_listed} more (sync.csv)")
    for state, what in (("discarded", "discarded by the crew"), ("unfinished", "unfinished (run hzsr capture resume)"),
                        ("abandoned", "abandoned during capture (never in captures/)")):
        if s["not_checked"][state]["count"]:
            print(f"  {s['not_checked'][state]['count']} captures {what}: not checked")
    print("  skews are refit with every clock sample of the session, before and after each capture, so they "
          "differ a little from the live ones capture run printed")
    files = ["sync.csv", "summary.json"] + (["skew.png", "offset.png"] if plots and s["captures"] else [])
    print("wrote " + ", ".join(str(out / f) for f in files))


def _cmd_optical(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hzsr.sync.optical import OpticalConfig, run_optical

    if args.readout_ms is not None and not args.readout_ms > 0:
        from hzsr.core.errors import ConfigError

        raise ConfigError("must be > 0", field="--readout-ms")
    # Bad input raises HzsrError: one line, exit 1 (read and bad) or 2 (unreadable), from hzsr.cli.
    s = run_optical(args.session, args.board, OpticalConfig(readout_ms=args.readout_ms), plots=not args.no_plots)
    out = Path(args.session) / "sync"
    if args.json:
        print(json.dumps(s, indent=2, default=float))
    else:
        d = s["clock_minus_optical_us"]
        print(f"{s['session_id']}: board decoded in {s['decoded']}/{s['captures']} captures; optical |skew| "
              f"p50 {s['optical_skew_us']['p50']} us, p95 {s['optical_skew_us']['p95']} us; clock minus optical: "
              f"median {d['median']} us, p95 |.| {d['p95_abs']} us; clock bound covers {s['clock_bound_covers']}")
        plot = "" if args.no_plots else f", {out / 'optical.png'}"
        print(f"wrote {out / 'optical.csv'}, {out / 'optical.json'}{plot}")
    if not s["enough_decoded"]:
        import sys

        print(f"sync optical: {s['session_id']}: board decoded in only {s['decoded']} of {s['captures']} captures "
              f"(fewer than half): {'; '.join(s['why_not_decoded']) or 'no captures'}", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from hzsr.sync.calibrate import run_calibrate

    r = run_calibrate(args.session, args.rig, args.board)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['session_id']}: {r['captures_used']} captures from {r['sessions']} session(s); "
              "clock minus optical skew median "
              f"{r['clock_minus_optical_us_median']} us (sigma {r['clock_minus_optical_us_sigma']} us)")
        for serial, c in r["calibration"].items():
            print(f"  {serial}: offset correction {c['offset_correction_ns'] / 1e3:+.1f} us, link floor "
                  f"{c['base_half_rtt_ns'] / 1e3:.1f} us, uncertainty {c['uncertainty_ns'] / 1e3:.1f} us")
        print(f"wrote {r['rig']}")
    return EXIT_OK


def _cmd_board(args: argparse.Namespace) -> int:
    from hzsr.core.config import load_config
    from hzsr.sync.board import BoardSpec
    from hzsr.sync.boardkit import write_board_kit

    spec = load_config(BoardSpec, args.board) if args.board else BoardSpec()
    paths = write_board_kit(args.out, spec)
    if args.json:
        print(json.dumps({"rows": spec.rows, "cols": spec.cols, "step_us": spec.step_us, "gray_bits": spec.gray_bits,
                          "period_us": spec.period_us, "files": paths}, indent=2))
        return EXIT_OK
    print(f"sync board kit: {spec.rows}x{spec.cols} LEDs at {spec.step_us:g} us, {spec.gray_bits}-bit Gray counter "
          f"(time known modulo {spec.period_us / 1e6:.2f} s)")
    print("wrote " + ", ".join(paths.values()))
    return EXIT_OK
