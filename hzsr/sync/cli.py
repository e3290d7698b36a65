"""``hzsr sync ...`` verbs."""

from __future__ import annotations

import argparse


def add_sync_parser(stages) -> None:
    sync = stages.add_parser("sync", help="timestamp checks and cross-device pairing")
    verbs = sync.add_subparsers(dest="verb", required=True, metavar="VERB")
    c = verbs.add_parser("check", help="skew per capture, health flags, verdicts -> <session>/sync/")
    c.add_argument("session")
    c.add_argument("--max-skew-us", type=float, default=None,
                   help="fail threshold for |skew|, us (default %(default)s: SyncThresholds' 1000)")
    c.add_argument("--no-plots", action="store_true")
    c.set_defaults(func=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    import math

    from hzsr.core.errors import ConfigError
    from hzsr.sync.check import SyncThresholds, run_sync_check

    if args.max_skew_us is not None and not (math.isfinite(args.max_skew_us) and args.max_skew_us > 0):
        raise ConfigError(f"must be a finite number > 0, got {args.max_skew_us}", field="--max-skew-us")
    th = SyncThresholds() if args.max_skew_us is None else SyncThresholds(max_skew_us=args.max_skew_us)
    summary = run_sync_check(args.session, th, plots=not args.no_plots)
    import json

    print(json.dumps(summary, indent=2))
    return 0
