"""hzsr: hybrid-zoom super-resolution data sets from a two-phone rig, and a reference model.

``hzsr <stage> <verb> [FOLDER] [options]``. The folder a verb works on is its first positional
argument; ``--out`` names only what a verb creates. Every verb prints a short summary and the paths
it wrote (``--json``: the machine form instead); verdicts are ``pass``/``warn``/``fail``.
A user's mistake (bad input, bad config, a broken session) ends with one line naming the file and
field, and a non-zero exit; tracebacks are for bugs.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import select
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from hzsr.core import fastexit
from hzsr.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, HzsrError


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

    if not Path(args.session).is_dir():
        raise SessionFormatError("not a folder", file=args.session, unreadable=True)
    findings = validate_session(args.session, check_pixels=not args.no_pixels)
    errors = [f for f in findings if f.severity == "error"]
    for f in findings:
        print(f.line(args.session), file=sys.stderr)
    verdict = "fail" if errors else ("warn" if findings else "pass")
    if args.json:
        print(json.dumps({"session": str(args.session), "verdict": verdict, "errors": len(errors),
                          "warnings": len(findings) - len(errors),
                          "findings": [f.__dict__ for f in findings]}, indent=2))
    else:
        print(f"{args.session}: {verdict}: {len(errors)} errors, {len(findings) - len(errors)} warnings"
              + (" (listed above)" if findings else "") + "; wrote nothing")
    return EXIT_PROBLEMS if errors else EXIT_OK


def cmd_sim_session(args: argparse.Namespace) -> int:
    from hzsr.core.errors import ConfigError
    from hzsr.sim.profiles import FULL_RES
    from hzsr.sim.scene import SCENE_KINDS
    from hzsr.sim.simsession import SimConfig, simulate_session
    from hzsr.sim.textures import POOLS
    from hzsr.sim.timing import parse_link_spec

    kinds = tuple(args.kinds.split(",")) if args.kinds else SCENE_KINDS
    for k in kinds:
        if k not in (*SCENE_KINDS, "sync-board"):
            raise ConfigError(f"unknown scene kind {k!r}; known: {', '.join(SCENE_KINDS)}, sync-board",
                              field="--kinds")
    parse_link_spec(args.link)
    if args.textures not in POOLS:
        raise ConfigError(f"unknown texture pool {args.textures!r}; known: {', '.join(POOLS)}", field="--textures")
    if args.captures < 1:
        raise ConfigError("must be >= 1", field="--captures")
    if not 0 <= args.seed < 2**63:
        raise ConfigError(f"must be in 0 .. 2^63-1, got {args.seed}", field="--seed")
    cfg = SimConfig(captures=args.captures, seed=args.seed, size=FULL_RES if args.full_res else args.size,
                    kinds=kinds, truth=args.truth, phase_align=not args.no_phase_align, link=args.link,
                    textures=args.textures)
    try:
        out = simulate_session(args.out, cfg, progress=not args.quiet)
    except FileExistsError as exc:
        raise ConfigError(str(exc).split(": ", 1)[1], file=args.out, field="--out") from None
    except OSError as exc:  # --out /proc/x, a read-only folder, a full disk
        raise ConfigError(f"cannot write: {exc.strerror or exc}", file=args.out, field="--out") from None
    truth = out.parent / (out.name + ".truth") if cfg.truth else None
    if args.json:
        print(json.dumps({"session": str(out), "captures": cfg.captures, "size": list(cfg.size),
                          "truth": str(truth) if truth else None, "textures": cfg.textures}))
    else:
        print(f"simulated {cfg.captures} captures at {cfg.size[0]}x{cfg.size[1]} (seed {cfg.seed}, "
              f"kinds {','.join(kinds)}, textures {cfg.textures})")
        print(f"wrote {out}" + (f"\nwrote {truth}" if truth else ""))
    return EXIT_OK


DESCRIPTION = (
    "Hybrid-zoom super-resolution data sets from a rig of two phones, and a reference model. "
    "The folder a verb works on is its first positional argument; --out names only what a verb creates. "
    "Every verb prints a short summary and the paths it wrote (--json: the machine form instead); "
    "verdicts are pass, warn or fail."
)
EPILOG = (
    "Stages are listed in workflow order. Rig verbs and `capture run` use the rig file "
    ".hzsr-rig/rig.yaml unless --rig names another (`hzsr rig up --virtual` writes it there). "
    "Help of a stage: hzsr STAGE --help; of a verb: hzsr STAGE VERB --help."
)


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default (or that it is required) after its help text.

    Like ``argparse.ArgumentDefaultsHelpFormatter``, but a help text that already speaks of its
    default (``(default: the rig the session used)``) is left alone, so an option defaulting to
    ``None`` explains what that means instead of printing ``None``; flags read ``off``.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or action.default is argparse.SUPPRESS or "default" in text.lower():
            return text
        if action.required:
            return f"{text} (required)"
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: {'on' if action.default else 'off'})"
        if action.default is None:
            return text  # tests/test_cli_language.py insists that such a help text explains it
        if isinstance(action.default, (list, tuple)) and not action.default:
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"


#: Parsers in the order argparse entered them in this parse: the last is the deepest (the verb's).
_ENTERED: list[argparse.ArgumentParser] = []


def did_you_mean(message: str, parser: argparse.ArgumentParser) -> str:
    """A ``; did you mean ...?`` for a misspelt option or choice in argparse's ``message``, else ``""``.

    Options are looked up in ``parser`` (the verb whose options were given); choices are those the
    message lists. Close means ``difflib``'s ratio >= 0.6, as git's suggestions feel.
    """
    m = re.match(r"unrecognized arguments: (.*)", message)
    if m:
        known = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
        hints = []
        for tok in m.group(1).split():
            if tok.startswith("-"):
                close = difflib.get_close_matches(tok.split("=", 1)[0], known, n=1, cutoff=0.6)
                if close:
                    hints.append(close[0])
        return f"; did you mean {', '.join(hints)}?" if hints else ""
    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if m:
        choices = re.findall(r"'([^']*)'", m.group(2))
        close = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
        return f"; did you mean '{close[0]}'?" if close else ""
    return ""


class Parser(argparse.ArgumentParser):
    """Every parser of the tree, sub-parsers included (they inherit the class), shows defaults.

    Its usage errors end with a "did you mean" for a misspelt option or choice.
    """

    def __init__(self, *args, **kwargs) -> None:
        fmt = kwargs.get("formatter_class")
        if fmt is None or not issubclass(fmt, HelpFormatter):
            kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        _ENTERED.append(self)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):  # type: ignore[override]
        # "unrecognized arguments" is raised by the top parser for the verb's leftovers.
        super().error(message + did_you_mean(message, _ENTERED[-1] if _ENTERED else self))


def _stdout_reader_gone() -> bool:
    """The pipe on stdout has no reader any more (``hzsr ... | head`` after head exited)."""
    try:
        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLERR)
        return any(ev & select.POLLERR for _, ev in poll.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush does not complain either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _add_session_parser(stages) -> None:
    session = stages.add_parser("session", help="inspect session folders")
    sv = session.add_subparsers(dest="verb", required=True, metavar="VERB")
    v = sv.add_parser("validate", help="check a session folder: fields, files, sha256, decodes")
    v.add_argument("session", metavar="SESSION", help="session folder")
    v.add_argument("--json", action="store_true", help="print the findings as JSON on stdout")
    v.add_argument("--no-pixels", action="store_true", help="skip decoding images (faster)")
    v.set_defaults(func=cmd_session_validate)


def _add_sim_parser(stages) -> None:
    sim = stages.add_parser("sim", help="the scene and camera simulator (no ADB needed)")
    simv = sim.add_subparsers(dest="verb", required=True, metavar="VERB")
    s = simv.add_parser("session", help="render a session folder of W/T/reference triplets")
    s.add_argument("--out", required=True, help="session folder to create (must not exist)")
    s.add_argument("--captures", type=int, default=10, help="number of captures to render")
    s.add_argument("--seed", type=int, default=0, help="seed of the scenes, poses and clocks (0 .. 2^63-1)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--size", type=_size, default=(640, 480), metavar="WxH", help="every camera's size, WxH "
                   "(default: 640x480)")
    g.add_argument("--full-res", action="store_true", help="4000x3000, as the phones capture")
    s.add_argument("--kinds", help="comma-separated scene kinds to cycle through (default: every kind)")
    s.add_argument("--truth", action="store_true", help="write ground truth to <out>.truth/")
    s.add_argument("--textures", default="all", metavar="POOL",
                   help="texture pool: all (the historical tiled scenes), or train / eval (photographic scenes "
                        "from two disjoint sets of photographs and fine detail; docs/model.md) (default: %(default)s)")
    s.add_argument("--no-phase-align", action="store_true",
                   help="trigger without aligning the phones' frame phases (libsoftwaresync's phase alignment)")
    s.add_argument("--link", default="loopback", help="link profile(s) of the simulated SNTP: loopback, usb2, "
                   "usb2-hub, usb3, or main=usb2-hub,reference=usb3 (default: %(default)s)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print the result as JSON instead of the summary")
    s.set_defaults(func=cmd_sim_session)


#: The stages in workflow order (``hzsr --help`` lists them as a crew meets them).
STAGES = ("rig", "capture", "session", "sync", "qa", "dataset", "model", "sim", "demo", "status")


def _add_stage(stages, name: str) -> None:
    """Add stage ``name``'s parser (its module imported here, not before)."""
    if name == "rig":
        from hzsr.capture.cli import add_rig_parser
        from hzsr.vphone.cli import add_rig_up_parser

        add_rig_parser(stages, lambda verbs: add_rig_up_parser(verbs, _size))
    elif name == "capture":
        from hzsr.capture.cli import add_capture_parser

        add_capture_parser(stages)
    elif name == "session":
        _add_session_parser(stages)
    elif name == "sync":
        from hzsr.sync.cli import add_sync_parser

        add_sync_parser(stages)
    elif name == "qa":
        from hzsr.qa.cli import add_qa_parser

        add_qa_parser(stages)
    elif name == "dataset":
        from hzsr.browse.cli import add_browse_verb
        from hzsr.dataset.cli import add_dataset_parser

        add_browse_verb(add_dataset_parser(stages))
    elif name == "model":
        from hzsr.baseline_model.cli import add_model_parser

        add_model_parser(stages)
    elif name == "sim":
        _add_sim_parser(stages)
    elif name == "demo":
        from hzsr.demo import add_demo_parser

        add_demo_parser(stages)
    elif name == "status":
        _add_status_parser(stages)
    else:
        raise ValueError(f"unknown stage {name!r}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command's parser: every stage, or with ``only`` (one of ``STAGES``) that stage alone.

    ``main`` builds the named stage alone when the command line starts with one: each stage's
    parser imports its module, and building all of them cost every command 0.1 CPU-s (``hzsr
    model infer`` on a 12 MP capture: ``docs/benchmarks.md``, issue19wall) for verbs it never
    parses. Anything else (``hzsr --help``, a misspelt stage) gets every stage.
    """
    p = Parser(prog="hzsr", description=DESCRIPTION, epilog=EPILOG)
    stages = p.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name in STAGES if only is None else (only,):
        _add_stage(stages, name)
    return p


def cmd_status(args: argparse.Namespace) -> int:
    from hzsr.dataset.status import status

    rep = status(args.path)
    if args.json:
        print(json.dumps(rep.to_json(), indent=2))
    else:
        print("\n".join(rep.lines()))
    return EXIT_OK


def _add_status_parser(stages) -> None:
    s = stages.add_parser("status", help="a session's or data set's stages: done, stale, unfinished; the next "
                          "command")
    s.add_argument("path", metavar="PATH", help="session or data set folder")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=cmd_status)


# Old spellings, kept for one release: (stage, verb) -> {old option: new spelling}. None moves the
# option's value to the first positional slot after the verb; a string renames the option.
DEPRECATED_OPTIONS: dict[tuple[str, str], dict[str, str | None]] = {
    ("capture", "run"): {"--session": None},
    ("rig", "up"): {"--dir": "--out"},
    ("model", "train"): {"--data": None},
    ("model", "eval"): {"--data": None},
    ("model", "infer"): {"--source": None},
    ("model", "export"): {"--onnx": "--out"},
}
CAPTURE_VERBS = ("run", "resume", "purge")


def rewrite_deprecated(argv: list[str]) -> tuple[list[str], list[str]]:
    """Old spellings to new ones: returns the new argv and one warning per old spelling used.

    ``hzsr capture --session D ...`` is ``hzsr capture run D ...`` (``capture`` took options before
    it had verbs); ``rig up --dir D`` is ``rig up --out D``; ``model train|eval --data D`` is
    ``model train|eval D``; ``model infer --source S`` is ``model infer S``; ``model export --onnx
    F`` is ``model export --out F``.
    """
    argv = list(argv)
    warnings: list[str] = []
    if len(argv) >= 2 and argv[0] == "capture" and argv[1] not in (*CAPTURE_VERBS, "-h", "--help"):
        argv.insert(1, "run")
        if "--session" not in argv and not any(a.startswith("--session=") for a in argv):
            warnings.append("'hzsr capture [options]' is deprecated; use 'hzsr capture run SESSION [options]'")
    if len(argv) < 2 or (argv[0], argv[1]) not in DEPRECATED_OPTIONS:
        return argv, warnings
    head, rest = argv[:2], argv[2:]
    table = DEPRECATED_OPTIONS[(head[0], head[1])]
    first: list[str] = []
    out: list[str] = []
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "--":
            out += rest[i:]
            break
        name, eq, value = a.partition("=")
        if not a.startswith("--") or name not in table:
            out.append(a)
            i += 1
            continue
        if not eq:
            if i + 1 >= len(rest):  # no value: argparse says so in its own words
                out.append(a)
                break
            value = rest[i + 1]
            i += 1
        i += 1
        new = table[name]
        if new is None:
            first.append(value)
            warnings.append(f"'{name} {value}' is deprecated; use 'hzsr {head[0]} {head[1]} {value} ...'")
        else:
            out += [new, value]
            warnings.append(f"'{name} {value}' is deprecated; use '{new} {value}'")
    return head + first + out, warnings


def run() -> NoReturn:
    """The ``hzsr`` command (the console script): ``main`` on ``sys.argv``, then ``fastexit.finish``."""
    fastexit.finish(main())


finish = fastexit.finish  # for callers that run ``main`` themselves and end as the command does


def main(argv: Sequence[str] | None = None) -> int:
    _ENTERED.clear()
    fastexit.reset()
    try:  # Ctrl-C while the parser is built (it imports its stages' modules) is an interrupt too, not a traceback
        argv, warnings = rewrite_deprecated(sys.argv[1:] if argv is None else list(argv))
        parser = build_parser(argv[0] if argv and argv[0] in STAGES else None)
        for w in warnings:
            print(f"hzsr: warning: {w}; the old spelling goes in the next release", file=sys.stderr)
        args = parser.parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except HzsrError as exc:
        print(f"hzsr: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except RecursionError:  # a reader missed a hostile nesting depth; still one line, not a traceback
        print("hzsr: error: input nested too deeply to read", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a path the user named cannot be read or written (--out /proc/x)
        if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
            # `hzsr ... | head`: the reader has what it wanted; say nothing, as cat and grep do.
            _silence_stdout()
            return EXIT_OK
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"hzsr: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hzsr: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    run()
