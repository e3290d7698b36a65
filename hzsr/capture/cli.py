"""``hzsr rig`` and ``hzsr capture``: the host's verbs over ``rig.yaml``.

``rig down`` stops, by proven PID, what ``rig up --virtual`` started; ``rig doctor``, ``clock`` and
``conformance`` check a rig; ``capture run|resume|purge`` make a session. ``rig up --virtual``
itself starts virtual phones, so it lives with them (``hzsr.vphone.cli``): the host side never
imports the virtual phones.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from hzsr.capture.rigfile import DEFAULT_DIR, rig_owner
from hzsr.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEMS, CaptureError, ConfigError, RigError
from hzsr.core.process import ProcessProof, valid_pid

RIG_HELP = "rig.yaml (default: %(default)s, which hzsr rig up --virtual writes)"


def add_rig_parser(stages, add_up: Callable[[argparse._SubParsersAction], None]) -> None:
    rig = stages.add_parser("rig", help="the rig: start/stop the virtual rig, check it, watch its clocks")
    verbs = rig.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_up(verbs)  # `rig up --virtual` starts virtual phones: hzsr.vphone.cli, wired in by hzsr.cli
    down = verbs.add_parser("down", help="stop what rig up started, by PID")
    down.add_argument("--rig", default=f"{DEFAULT_DIR}/rig.yaml", help=RIG_HELP)
    down.add_argument("--json", action="store_true", help="print what was stopped as JSON")
    down.set_defaults(func=cmd_rig_down)
    add_rig_checks(verbs)


def _finite(name: str, value: float, low: float, low_ok: bool = True) -> float:
    """An option that must be a finite number ``>= low`` (or ``> low``): else a ConfigError."""
    if not math.isfinite(value) or value < low or (value == low and not low_ok):
        raise ConfigError(f"must be a finite number {'>=' if low_ok else '>'} {low:g}, got {value}", field=name)
    return value


def _recorded_processes(path: Path) -> dict[str, ProcessProof]:
    """``virtual.processes`` of a rig.yaml that fails its checks: each well-formed entry, else none.

    What ``rig up`` recorded is read on its own, so a rig.yaml that is otherwise rejected (an old
    hzsr's, an edited one) still lets ``rig down`` stop the processes proven to be the rig's.
    """
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        procs = doc["virtual"]["processes"]
        out = {}
        for name in ("rig", "adb_server"):
            e = procs.get(name)
            if isinstance(e, dict) and valid_pid(e.get("pid")) and isinstance(e.get("start_ticks"), int) \
                    and isinstance(e.get("cmdline"), list) and all(isinstance(a, str) for a in e["cmdline"]):
                out[name] = ProcessProof(e["pid"], e["start_ticks"], list(e["cmdline"]))
        return out
    except Exception:  # any shape at all: there is simply no proof to act on
        return {}


def _stop_proven(proof: ProcessProof, what: str, path: Path) -> bool:
    """SIGTERM (then SIGKILL) the process ``proof`` names while it still matches; False if gone."""
    why = proof.mismatch()
    if why == "not running":
        return False
    if why is not None:
        raise RigError(f"pid {proof.pid} is not this rig's {'process' if what == 'rig' else what} ({why}); not "
                       "signalling it. The rig is gone: delete the file", file=path,
                       field=f"virtual.processes.{what}")
    os.kill(proof.pid, signal.SIGTERM)
    for _ in range(100):
        if proof.mismatch() is not None:
            return True
        time.sleep(0.1)
    if proof.matches():
        os.kill(proof.pid, signal.SIGKILL)
    return True


def cmd_rig_down(args: argparse.Namespace) -> int:
    """Stop what ``rig up`` started, and only that: each PID is checked against its recorded proof.

    The rig process is signalled only while its PID still has the recorded start time and command
    line; anything else (a reused PID, a hand-edited file, a rig.yaml of an older hzsr without
    proof) is refused with one line. The adb server is stopped only if ``rig up`` recorded it
    (``virtual.processes.adb_server``: the rig rewrites it when recovery restarts the server) and
    the process still matches; a server on the port that the rig did not start is left running.
    A rig.yaml that fails its other checks still has its recorded processes stopped, then the
    check's error is reported.
    """
    from hzsr.capture.adb_server import AdbServer, bundled_adb, find_adb_server_pid, use_private_port

    path = Path(args.rig)
    rejected: ConfigError | None = None
    try:
        rig, proof = rig_owner(path)
    except ConfigError as exc:
        owned = _recorded_processes(path)
        if "rig" not in owned:
            raise
        rig, proof, rejected = None, owned["rig"], exc
    else:
        if rig.virtual is None:
            raise RigError("not written by hzsr rig up --virtual (no virtual section); nothing of ours to stop",
                           file=path, field="virtual")
        if proof is None:
            raise RigError(f"no proof that pid {rig.virtual.pid} is the rig (virtual.processes.rig missing); "
                           "not signalling it: stop it by hand if it is", file=path, field="virtual.processes")
        if proof.pid != rig.virtual.pid:
            raise RigError(f"virtual.pid {rig.virtual.pid} differs from the proven pid {proof.pid}; not "
                           "signalling", file=path, field="virtual.pid")
        owned = {k: v.proof() for k, v in rig.virtual.processes.items()}
    stopped = [proof.pid] if _stop_proven(proof, "rig", path) else []
    left = ""
    adb_proof = owned.get("adb_server")
    port = rig.adb.port if rig is not None else None
    if adb_proof is not None and adb_proof.matches():
        # Normally the rig stopped its own server on SIGTERM; this is the rig killed with -9.
        if port is not None and find_adb_server_pid(port) == adb_proof.pid:
            use_private_port(port)
            AdbServer(port, bundled_adb()).stop()
        if adb_proof.matches():
            os.kill(adb_proof.pid, signal.SIGKILL)
        stopped.append(adb_proof.pid)
    elif port is not None and port != 5037 and (other := find_adb_server_pid(port)) is not None:
        left = f"; left the adb server on port {port} (pid {other}) running: rig up did not record it"
    if rejected is None:
        path.unlink(missing_ok=True)
    if args.json:
        print(json.dumps({"stopped_pids": stopped, "rig_yaml": str(path), "left": left[2:] or None}))
    else:
        print(f"rig down: stopped {', '.join(f'pid {p}' for p in stopped) or 'nothing (already gone)'}"
              f"{left}; " + (f"removed {path}" if rejected is None else f"kept {path}"))
    if rejected is not None:
        raise rejected
    return EXIT_OK


# -- doctor, clock, capture ---------------------------------------------------------------
def add_rig_checks(verbs) -> None:
    d = verbs.add_parser("doctor", help="check the rig before a shoot (pass/warn/fail per check)")
    d.add_argument("--rig", default=f"{DEFAULT_DIR}/rig.yaml", help=RIG_HELP)
    d.add_argument("--json", action="store_true", help="print the checks as JSON instead of the table")
    d.add_argument("--planned-captures", type=int, default=None,
                   help="captures planned for the shoot, to check the phones' free storage against "
                   "(default: 200, DoctorConfig.planned_captures)")
    d.set_defaults(func=cmd_rig_doctor)
    c = verbs.add_parser("clock", help="print each phone's clock offset, error bound and drift, live")
    c.add_argument("--rig", default=f"{DEFAULT_DIR}/rig.yaml", help=RIG_HELP)
    c.add_argument("--seconds", type=float, default=10.0, help="how long to watch, seconds")
    c.add_argument("--every", type=float, default=1.0, help="seconds between clock-sync rounds")
    c.add_argument("--json", action="store_true", help="print one JSON object per round instead of a line")
    c.set_defaults(func=cmd_rig_clock)
    k = verbs.add_parser("conformance", help="check a phone's capture agent against every rule of "
                         "docs/agent-protocol.md (pass/fail per rule; exit 1 on any fail)")
    k.add_argument("--rig", default=f"{DEFAULT_DIR}/rig.yaml", help=RIG_HELP)
    k.add_argument("--role", default=None, help="main or reference (default: every phone of the rig)")
    k.add_argument("--json", action="store_true", help="print the results as JSON")
    k.set_defaults(func=cmd_rig_conformance)


def _link(rig_path: str):
    """The rig's link; creating it points adb at the rig's private port before any adb call."""
    from hzsr.capture.link import RigLink
    from hzsr.capture.rigfile import load_rig

    return RigLink(load_rig(rig_path))


def cmd_rig_doctor(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from hzsr.capture.doctor import DoctorConfig, run_doctor

    if args.planned_captures is not None and args.planned_captures < 1:
        raise ConfigError("must be >= 1", field="--planned-captures")
    cfg = DoctorConfig() if args.planned_captures is None else DoctorConfig(planned_captures=args.planned_captures)
    link = _link(args.rig)
    try:
        rep = run_doctor(link, cfg)
    finally:
        link.close()
    print(json.dumps([asdict(r) for r in rep.rows], indent=1) if args.json else rep.table())
    return EXIT_PROBLEMS if rep.failed else EXIT_OK


def cmd_rig_conformance(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from hzsr.capture.conformance import run_conformance

    link = _link(args.rig)
    roles = [p.role for p in link.rig.phones if p.role != "spare"]
    if args.role is not None and args.role not in roles:
        raise ConfigError(f"no phone with role {args.role!r} in the rig (roles: {', '.join(roles)})", field="--role")
    results: dict[str, list] = {}
    try:
        for role in [args.role] if args.role else roles:
            say = None if args.json else (lambda r, role=role: print(
                f"{role:<9}  {r.status:<4}  {r.rule:<30} {r.detail}", flush=True))
            results[role] = run_conformance(link, role, on_result=say)
    finally:
        link.close()
    failed = [f"{role}:{r.rule}" for role, rs in results.items() for r in rs if r.status == "fail"]
    if args.json:
        print(json.dumps({role: [asdict(r) for r in rs] for role, rs in results.items()}, indent=1))
    else:
        n = sum(len(rs) for rs in results.values())
        print(f"{'fail' if failed else 'pass'}: {n - len(failed)} of {n} rules hold"
              + (f"; failed: {', '.join(failed)}" if failed else ""))
    return EXIT_PROBLEMS if failed else EXIT_OK


def cmd_rig_clock(args: argparse.Namespace) -> int:
    from hzsr.capture.clocksync import add_sample, sync_round
    from hzsr.core.records import DeviceClock

    _finite("--seconds", args.seconds, 0.0, low_ok=False)
    _finite("--every", args.every, 0.0, low_ok=False)
    link = _link(args.rig)
    clocks = {p.role: DeviceClock() for p in link.rig.phones if p.role != "spare"}
    t_end = time.monotonic() + args.seconds
    try:
        while True:
            row = {"t_s": round(args.seconds - (t_end - time.monotonic()), 2)}
            for role, clock in clocks.items():
                s = link.retry(f"{role} clock", lambda role=role: sync_round(link.agent(role), 100))
                add_sample(clock, s)
                row[role] = {"offset_ns": s.offset_ns, "bound_us": round(s.rtt_ns / 2e3, 1),
                             "drift_ppm": None if clock.drift_ppm is None else round(clock.drift_ppm, 3)}
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(f"{row['t_s']:6.2f} s  " + "   ".join(
                    f"{role}: offset {v['offset_ns'] / 1e3:+.1f} us +- {v['bound_us']:.1f} us, drift "
                    + ("(needs 2 rounds)" if v["drift_ppm"] is None else f"{v['drift_ppm']:+.3f} ppm")
                    for role, v in row.items() if role != "t_s"), flush=True)
            if time.monotonic() + args.every > t_end:
                return EXIT_OK
            time.sleep(args.every)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        link.close()


def add_capture_parser(stages) -> None:
    cap = stages.add_parser("capture", help="synchronized captures on the rig, into a session folder")
    verbs = cap.add_subparsers(dest="verb", required=True, metavar="VERB")
    run = verbs.add_parser("run", help="take captures into SESSION (created, or continued if it exists)")
    run.add_argument("session", metavar="SESSION", help="session folder (created, or continued if it exists)")
    run.add_argument("--rig", default=f"{DEFAULT_DIR}/rig.yaml", help=RIG_HELP)
    run.add_argument("--count", type=int, default=1, help="number of captures to take")
    run.add_argument("--interval", type=float, default=2.0, help="seconds between captures")
    run.add_argument("--scene", default="scene-0000", help="scene id recorded with every capture")
    run.add_argument("--tags", default="", help="comma-separated scene tags, e.g. indoor,lowlight (default: none)")
    run.add_argument("--notes", default="", help="free text recorded with every capture (default: none)")
    run.add_argument("--interactive", action="store_true",
                     help="Enter captures, t sets scene/tags, r discards the last (retake), q quits")
    run.add_argument("--delete-after-verify", action="store_true",
                     help="delete phone copies once verified (default: off, keep them until purge)")
    run.add_argument("--no-phase-align", action="store_true",
                     help="trigger without aligning the phones' frame phases first (default: off, align them)")
    run.add_argument("--af", default="auto", help="AF mode on every camera: auto, fixed:DIOPTERS or roi:x,y,w,h "
                     "(default: %(default)s; agent protocol 2)")
    run.add_argument("--lock-3a", action="store_true",
                     help="lock AE, AWB (and AF) on each phone before each capture (default: off, 3A runs free)")
    run.add_argument("--match-exposure", action="store_true",
                     help="give the reference T the main T's locked exposure, ISO and white-balance gains "
                     "(default: off)")
    run.add_argument("--json", action="store_true", help="print the captures as JSON instead of the summary")
    run.set_defaults(func=cmd_capture)
    r = verbs.add_parser("resume", help="finish every capture that was triggered but not verified")
    r.add_argument("session", metavar="SESSION", help="session folder")
    r.add_argument("--rig", default=None, metavar="RIG", help="rig.yaml (default: the one the session used)")
    r.add_argument("--json", action="store_true", help="print the resumed captures as JSON")
    r.set_defaults(func=cmd_capture_resume)
    p = verbs.add_parser("purge", help="delete phone copies of verified captures")
    p.add_argument("session", metavar="SESSION", help="session folder")
    p.add_argument("--rig", default=None, metavar="RIG", help="rig.yaml (default: the one the session used)")
    p.add_argument("--json", action="store_true", help="print the purged captures as JSON")
    p.set_defaults(func=cmd_capture_purge)


def _run(session: str, rig_path: str, args: argparse.Namespace | None = None):
    from hzsr.capture.session_run import CaptureConfig, CaptureRun

    cfg = CaptureConfig()
    if args is not None:
        cfg.keep_on_phone = not args.delete_after_verify
        cfg.phase_align = not args.no_phase_align
        from hzsr.capture.three_a import ThreeAConfig, parse_af

        parse_af(args.af)  # a bad --af fails before any phone is touched
        cfg.three_a = ThreeAConfig(af=args.af, lock_3a=args.lock_3a, match_exposure=args.match_exposure)
    link = _link(rig_path)
    try:
        link.rig.require(("main", "reference"), "capture")  # before either phone is touched
    except ConfigError as exc:
        link.close()
        raise ConfigError(exc.message, file=rig_path, field="phones") from None
    return CaptureRun(session, link, cfg, rig_path=str(Path(rig_path).resolve()),
                      say=lambda m: print(m, file=sys.stderr, flush=True))


def _refuse_stopped_virtual_rig(rig_path: str) -> None:
    """A ``rig up --virtual`` rig whose process is gone: one line, before a folder or server exists.

    Without this, ``capture run`` started an adb server, created the session folder, journaled ten
    ``link_recovered`` events of "Connection refused" and failed, leaving all of it behind. A
    real rig (no ``virtual`` section) is left to the link's recovery, whose failure ``CaptureRun``
    cleans up after.
    """
    from hzsr.capture.rigfile import load_rig

    rig = load_rig(rig_path)
    v = rig.virtual
    if v is None:
        return
    proof = v.processes.get("rig")
    alive = proof.proof().matches() if proof is not None else _pid_alive(v.pid)
    if not alive:
        raise RigError(f"the virtual rig (pid {v.pid}) is not running; start it with `hzsr rig up --virtual`",
                       file=rig_path, field="virtual.pid")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _session_rig(dir_: str, override: str | None) -> str:
    if override:
        return override
    from hzsr.core.records import SessionRecord

    rig = SessionRecord.load(dir_).config.get("rig_path")
    if not rig:
        raise ConfigError("the session does not record its rig.yaml; pass --rig", field="--rig")
    return rig


SKEW_LEGEND = ("skew: reference T minus main W at capture time, +- the clock-sync error bound; pass, warn, or fail "
               "(then retake). It uses the clock samples taken up to that capture; hzsr sync check refits each "
               "phone's clock with all of the session's samples, before and after, so its figures differ a little.")


def cmd_capture(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ConfigError("must be >= 1", field="--count")
    _finite("--interval", args.interval, 0.0)
    from hzsr.core.safepath import refuse_system_folder

    sess = Path(args.session)
    refuse_system_folder(sess, "SESSION")
    if sess.exists() and not sess.is_dir():
        raise ConfigError("exists and is not a folder", file=sess, field="SESSION", unreadable=True)
    from hzsr.capture.three_a import parse_af

    parse_af(args.af)  # a bad option is reported before the rig file is read
    _refuse_stopped_virtual_rig(args.rig)  # before anything is created or an adb server started
    run = _run(args.session, args.rig, args)
    tags = [t for t in args.tags.split(",") if t]
    results: list = []
    try:
        run.open()  # takes the session lock; a busy session raises before anything is written
    except BaseException:
        run.close()
        raise
    try:
        if not args.json:
            print(SKEW_LEGEND, file=sys.stderr, flush=True)
        if args.interactive:
            _interactive(run, args.scene, tags, results)
        else:
            for k in range(args.count):
                t0 = time.monotonic()
                res = run.capture(args.scene, tags, args.notes)
                results.append(res)
                print(res.line(), file=sys.stderr, flush=True)
                if k + 1 < args.count:
                    time.sleep(max(0.0, args.interval - (time.monotonic() - t0)))
    except KeyboardInterrupt:
        run.journal.append("session_stopped", interrupted=True)
        print(f"hzsr: interrupted; finish with: hzsr capture resume {args.session}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (RigError, CaptureError) as exc:
        run.journal.append("session_stopped", error=exc.one_line())
        print(f"hzsr: error: {exc.one_line()}", file=sys.stderr)
        if (sess / "session.json").exists():
            print(f"hzsr: the session is resumable: hzsr capture resume {args.session}", file=sys.stderr)
        return exc.exit_code
    finally:
        run.close()
    run.journal.append("session_stopped", captures=len(results))
    if args.json:
        print(json.dumps({"session": args.session, "captures": [
            {"capture_id": r.capture_id, "skew_us": r.skew_us, "bound_us": r.bound_us, "verdict": r.verdict,
             "reason": r.reason} for r in results]}))
        return EXIT_OK
    counts = {v: sum(r.verdict == v for r in results) for v in ("pass", "warn", "fail")}
    # Sync and each post-capture check (qa's quick check) counted apart: one verdict never hides the other.
    checks = sorted({name for r in results for name in r.checks})
    per_check = "".join(
        f"; {name}: " + ", ".join(f"{sum(r.checks.get(name, ('',))[0] == v for r in results)} {v}"
                                  for v in ("pass", "warn", "fail", "undecided")) for name in checks)
    failed = counts["fail"] or any(r.checks.get(n, ("",))[0] == "fail" for r in results for n in checks)
    print(f"{args.session}: {len(results)} captures: " + ", ".join(f"{n} {v}" for v, n in counts.items())
          + " (sync)" + per_check + ("; retake the failed ones" if failed else ""))
    for r in results:
        print(f"wrote {sess / 'captures' / r.capture_id}")
    if results:
        print(f"wrote {sess / 'session.json'}, {sess / 'journal.jsonl'}")
    return EXIT_OK


def _interactive(run, scene: str, tags: list[str], results: list) -> None:
    """Keys from stdin; appends each kept capture's result to ``results`` (a retake removes it)."""
    last = None
    print("Enter: capture   t: set scene/tags   r: retake (discard last)   q: quit", file=sys.stderr, flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "q":
            break
        if cmd == "t":
            print("scene id [tags,comma,separated]: ", end="", file=sys.stderr, flush=True)
            parts = sys.stdin.readline().split()
            if parts:
                scene = parts[0]
                tags = [t for t in (parts[1] if len(parts) > 1 else "").split(",") if t]
            print(f"scene={scene} tags={','.join(tags)}", file=sys.stderr, flush=True)
        elif cmd == "r":
            if last is None:
                print("nothing to retake yet", file=sys.stderr, flush=True)
            else:
                run.discard(last, "retake requested by crew")
                results[:] = [r for r in results if r.capture_id != last]
                print(f"{last}: discarded (kept on disk); capture again", file=sys.stderr, flush=True)
                last = None
        elif cmd == "":
            try:
                res = run.capture(scene, tags)
                last = res.capture_id
                results.append(res)
                print(res.line(), file=sys.stderr, flush=True)
            except (RigError, CaptureError) as exc:
                print(f"capture failed: {exc.one_line()}", file=sys.stderr, flush=True)
        else:
            print(f"unknown key {cmd!r}", file=sys.stderr, flush=True)


@contextmanager
def _existing_run(args: argparse.Namespace):
    """The session's capture run, opened on its rig (or ``--rig``), closed afterwards.

    The session must exist (its session.json is read first): resume and purge create nothing.
    """
    rig = _session_rig(args.session, args.rig)
    from hzsr.core.records import SessionRecord

    SessionRecord.load(args.session)
    run = _run(args.session, rig)
    try:
        run.open()
        yield run
    finally:
        run.close()


def cmd_capture_resume(args: argparse.Namespace) -> int:
    from hzsr.capture.session_run import resume

    with _existing_run(args) as run:
        results = resume(run)
    for r in results:
        print(r.line(), file=sys.stderr)
    if args.json:
        print(json.dumps({"session": args.session, "resumed": [
            {"capture_id": r.capture_id, "status": r.status, "reason": r.reason} for r in results]}))
    else:
        by = {s: [r.capture_id for r in results if r.status == s] for s in ("complete", "abandoned", "incomplete")}
        print(f"{args.session}: resumed {len(results)} captures: " + ", ".join(f"{len(v)} {k}" for k, v in by.items())
              + ("; run resume again once the rig is back" if by["incomplete"] else ""))
        for cid in by["complete"]:
            print(f"wrote {Path(args.session) / 'captures' / cid}")
        print(f"wrote {Path(args.session) / 'journal.jsonl'}")
    # Abandoned captures are finished business; only one the link could not reach stays open.
    return EXIT_OK if all(r.status in ("complete", "abandoned") for r in results) else EXIT_PROBLEMS


def cmd_capture_purge(args: argparse.Namespace) -> int:
    from hzsr.capture.session_run import purge

    with _existing_run(args) as run:
        done = purge(run)
    if args.json:
        print(json.dumps({"session": args.session, "deleted_from_phones": done}))
    else:
        print(f"{args.session}: deleted the phones' copies of {len(done)} captures"
              + (f" ({', '.join(done)})" if done else ""))
        print(f"wrote {Path(args.session) / 'journal.jsonl'}")
    return EXIT_OK
