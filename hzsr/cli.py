"""``hzsr <stage> <verb>``: the command line.

A user's mistake (bad input, bad config, a broken session) ends with one line naming the file and
field, and a non-zero exit; tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hzsr.core.errors import HzsrError

EXIT_OK = 0
EXIT_PROBLEMS = 1  # the input was read, and it is bad
EXIT_USAGE = 2  # the input could not be read or the options are wrong


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size: expected WxH, e.g. 640x480, got {text!r}") from None
    if w < 64 or h < 48 or w > 8000 or h > 6000:
        raise argparse.ArgumentTypeError(f"--size: {w}x{h} is outside 64x48 .. 8000x6000")
    return w, h


def cmd_session_validate(args: argparse.Namespace) -> int:
    from hzsr.core.errors import SessionFormatError
    from hzsr.core.validate import validate_session

    if not Path(args.dir).is_dir():
        raise SessionFormatError("not a folder", file=args.dir, unreadable=True)
    findings = validate_session(args.dir, check_pixels=not args.no_pixels)
    errors = [f for f in findings if f.severity == "error"]
    for f in findings:
        print(f.line(args.dir), file=sys.stderr)
    if args.json:
        print(json.dumps({"session": str(args.dir), "errors": len(errors),
                          "warnings": len(findings) - len(errors),
                          "findings": [f.__dict__ for f in findings]}, indent=2))
    elif not errors:
        print(f"{args.dir}: valid ({len(findings)} warnings)")
    return EXIT_PROBLEMS if errors else EXIT_OK


def cmd_sim_session(args: argparse.Namespace) -> int:
    from hzsr.core.errors import ConfigError
    from hzsr.sim.profiles import FULL_RES
    from hzsr.sim.scene import SCENE_KINDS
    from hzsr.sim.simsession import SimConfig, simulate_session
    from hzsr.sim.timing import parse_link_spec

    kinds = tuple(args.kinds.split(",")) if args.kinds else SCENE_KINDS
    for k in kinds:
        if k not in (*SCENE_KINDS, "sync-board"):
            raise ConfigError(f"unknown scene kind {k!r}; known: {', '.join(SCENE_KINDS)}, sync-board",
                              field="--kinds")
    parse_link_spec(args.link)
    if args.captures < 1:
        raise ConfigError("must be >= 1", field="--captures")
    if not 0 <= args.seed < 2**63:
        raise ConfigError(f"must be in 0 .. 2^63-1, got {args.seed}", field="--seed")
    cfg = SimConfig(captures=args.captures, seed=args.seed, size=FULL_RES if args.full_res else args.size,
                    kinds=kinds, truth=args.truth, phase_align=not args.no_phase_align, link=args.link)
    try:
        out = simulate_session(args.out, cfg, progress=not args.quiet)
    except FileExistsError as exc:
        raise ConfigError(str(exc).split(": ", 1)[1], file=args.out, field="--out") from None
    except OSError as exc:  # --out /proc/x, a read-only folder, a full disk
        raise ConfigError(f"cannot write: {exc.strerror or exc}", file=args.out, field="--out") from None
    print(json.dumps({"session": str(out), "captures": cfg.captures, "size": list(cfg.size),
                      "truth": str(out.parent / (out.name + ".truth")) if cfg.truth else None}))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hzsr", description=__doc__.splitlines()[0])
    stages = p.add_subparsers(dest="stage", required=True, metavar="STAGE")

    session = stages.add_parser("session", help="inspect session folders")
    sv = session.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = sv.add_parser("validate", help="check a session folder: fields, files, sha256, decodes")
    v.add_argument("dir")
    v.add_argument("--json", action="store_true", help="print the findings as JSON on stdout")
    v.add_argument("--no-pixels", action="store_true", help="skip decoding images (faster)")
    v.set_defaults(func=cmd_session_validate)

    sim = stages.add_parser("sim", help="the scene and camera simulator (no ADB needed)")
    simv = sim.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = simv.add_parser("session", help="render a session folder of W/T/reference triplets")
    s.add_argument("--out", required=True)
    s.add_argument("--captures", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    g = s.add_mutually_exclusive_group()
    g.add_argument("--size", type=_size, default=(640, 480), help="every camera's size, WxH")
    g.add_argument("--full-res", action="store_true", help="4000x3000, as the phones capture")
    s.add_argument("--kinds", help="comma-separated scene kinds to cycle through")
    s.add_argument("--truth", action="store_true", help="write ground truth to <out>.truth/")
    s.add_argument("--no-phase-align", action="store_true")
    s.add_argument("--link", default="loopback", help="link profile(s) of the simulated SNTP: loopback, usb2, "
                   "usb2-hub, usb3, or main=usb2-hub,reference=usb3 (default: %(default)s)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sim_session)

    from hzsr.baseline_model.cli import add_model_parser
    from hzsr.capture.cli import add_capture_parser, add_rig_parser
    from hzsr.dataset.cli import add_dataset_parser
    from hzsr.qa.cli import add_qa_parser
    from hzsr.sync.cli import add_sync_parser

    add_rig_parser(stages, _size)
    add_capture_parser(stages)
    add_sync_parser(stages)
    add_qa_parser(stages)
    add_dataset_parser(stages)
    add_model_parser(stages)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except HzsrError as exc:
        print(f"hzsr: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except RecursionError:  # a reader missed a hostile nesting depth; still one line, not a traceback
        print("hzsr: error: input nested too deeply to read", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a path the user named cannot be read or written (--out /proc/x)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"hzsr: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hzsr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
