"""``make demo`` / ``hzsr demo``: the main job, end to end, on the virtual rig.

rig -> capture -> sync -> QA -> shards -> split -> train -> eval -> infer, then one report:

1. ``hzsr rig up --virtual``: a private adb server and two virtual phones that speak the real
   ADB device protocol;
2. ``hzsr rig doctor``: the crew's pre-shoot check;
3. ``hzsr capture run``: synchronized captures over adb, two per scene across every scene kind.
   The demo plays the crew: it moves the rig between scenes and spoils a few shots the way crews
   do (the second phone focused elsewhere, a bump of the rig, a shaky hand, a fooled
   auto-exposure; ``hzsr.sim.world.write_crew_action``). Nothing downstream is told which;
4. ``hzsr session validate``, ``hzsr sync check`` and ``hzsr qa check``: timing and quality
   verdicts for every capture;
5. ``hzsr dataset pack`` of the captures QA did not fail, ``hzsr dataset split`` by scene;
6. ``hzsr model train``: a short fine-tune of the shipped checkpoint on the train split;
7. ``hzsr model eval`` on the test split (bicubic, warped reference, fusion, full pipeline);
8. ``hzsr model infer`` on one test capture, with its maps;
9. ``report.html``: one self-contained page over all of it (``hzsr.report``);
10. ``hzsr rig down``, also on Ctrl-C or any failure: nothing is left running.

Rerunning the demo into the same folder starts it afresh (the folder is the demo's own).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hzsr.core.errors import EXIT_INTERRUPTED, EXIT_OK, ConfigError, DemoStepFailed

#: (scene index, capture number within the scene) -> the crew's mistake on that shot.
BAD_SHOTS = {(0, 1): "refocus", (3, 1): "rig_bump", (5, 1): "motion_blur", (6, 0): "overexposure"}


@dataclass
class DemoConfig:
    """Options of the demo; every default lives here."""

    out: Path = Path("demo-out")  # the demo's own folder, recreated on every run
    captures: int = 16  # about two per scene across every scene kind
    per_scene: int = 2  # captures per scene (the split is by scene)
    size: tuple[int, int] = (640, 480)  # every camera's output; --full-res for 4000x3000
    train_steps: int = 120  # fine-tuning steps from the shipped checkpoint
    train_patch: int = 64  # training patch side, T pixels
    eval_limit: int | None = None  # evaluate at most this many test captures (None: all)
    examples: int = 2  # test captures run through `hzsr model infer` for the report's side-by-sides
    seed: int = 0
    bad_shots: dict = field(default_factory=lambda: dict(BAD_SHOTS))


def crew_labels(crew: Sequence[str | None], scenes: Sequence[str], truth_jsonl: Path) -> list[str | None]:
    """The crew's defect per shot, as the report's confusion table names it: a focus defect
    (``refocus``, ``wrong_depth``) whose truth (``crew_defects.jsonl``, one line per spoiled frame,
    by scene) leaves the plane at the AF point sharp in the frame it is judged by
    (``sim.defects.invisible_focus_defect``) is ``<defect>_invisible``, as the labelled set names
    it: no QA can see it, so it is no miss. A refocus on an architecture scene (the reference phone
    on a sign at 10.7 m, the facade at 30.4 m) blurs the facade 0.70 px in the reference T; the
    demo's refocus, on the portrait, 6.2 px."""
    from hzsr.sim.defects import invisible_focus_defect

    blur: dict[tuple[str, str], dict[str, float]] = {}
    if truth_jsonl.is_file():
        for line in truth_jsonl.read_text().splitlines():
            try:
                rec = json.loads(line)
                b = float(rec["params"]["af_layer_blur_px"])
            except (ValueError, KeyError, TypeError):
                continue  # not a focus defect, or a truth file from before the figure was recorded
            slots = blur.setdefault((str(rec.get("scene")), str(rec.get("defect"))), {})
            slot = str(rec.get("slot"))
            slots[slot] = max(slots.get(slot, 0.0), b)  # the frame's worst draw, whichever phone re-rendered it
    out: list[str | None] = []
    for defect, scene in zip(crew, scenes, strict=False):
        invisible = invisible_focus_defect(defect, blur.get((scene, str(defect)), {}))
        out.append(f"{defect}_invisible" if invisible else defect)
    return out


def _hzsr(argv: Sequence[str], capture_stdout: bool = False) -> str:
    """Run one ``hzsr`` verb in this process, as a user would type it; raise if it fails."""
    from hzsr.cli import main as hzsr

    print(f"\n$ hzsr {' '.join(argv)}", flush=True)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf) if capture_stdout else contextlib.nullcontext():
        rc = hzsr(list(argv))
    if rc == EXIT_INTERRUPTED:  # the verb caught Ctrl-C itself (capture does, to say how to resume): pass it on
        raise KeyboardInterrupt
    if rc != 0:
        raise DemoStepFailed(f"hzsr {argv[0]} {argv[1]} exited with {rc}")
    return buf.getvalue()


class Demo:
    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.out = cfg.out.resolve()
        self.rig_dir = self.out / "rig"
        self.rig_yaml = self.rig_dir / "rig.yaml"
        self.session = self.out / "session"
        self.dataset = self.out / "dataset"
        self.run_dir = self.out / "train"
        self.eval_dir = self.out / "eval"
        self.infer_dir = self.out / "infer"
        self.timings: dict[str, float] = {}
        self.crew: list[str | None] = []  # the crew's defect on each shot, in capture order (report's confusion)
        self.crew_scenes: list[str] = []  # the scene id of each shot (the truth names scenes, not captures)

    # -- steps ---------------------------------------------------------------------------
    def _step(self, name: str, fn) -> None:
        print(f"\n=== {name}", flush=True)
        t0 = time.perf_counter()
        fn()
        self.timings[name] = time.perf_counter() - t0

    def rig_up(self) -> None:
        w, h = self.cfg.size
        _hzsr(["rig", "up", "--virtual", "--background", "--out", str(self.rig_dir), "--size", f"{w}x{h}",
               "--seed", str(self.cfg.seed)])

    def doctor(self) -> None:
        """One doctor run (it syncs both clocks, so it is not cheap): its JSON for the report,
        and the crew's table printed from the same rows."""
        from hzsr.capture.doctor import Report, Row

        text = _hzsr(["rig", "doctor", "--rig", str(self.rig_yaml), "--planned-captures", str(self.cfg.captures),
                      "--json"], capture_stdout=True)
        (self.out / "doctor.json").write_text(text)
        print(Report([Row(**r) for r in json.loads(text)]).table(), flush=True)

    @property
    def per_scene(self) -> int:
        """Captures per scene: ``cfg.per_scene``, or 1 when that would leave fewer than two scenes."""
        return self.cfg.per_scene if self.cfg.captures >= 2 * self.cfg.per_scene else 1

    @property
    def split_ratios(self) -> str:
        """Train/val/test by scene; with two scenes, no val, so that test gets one (eval reads it)."""
        return "0.5,0.25,0.25" if -(-self.cfg.captures // self.per_scene) >= 3 else "0.5,0,0.5"

    def capture(self) -> None:
        from hzsr.sim.scene import SCENE_KINDS
        from hzsr.sim.world import write_crew_action

        per_scene = self.per_scene
        n_scenes = -(-self.cfg.captures // per_scene)
        done = 0
        for scene in range(n_scenes):
            kind = SCENE_KINDS[scene % len(SCENE_KINDS)]
            for k in range(min(per_scene, self.cfg.captures - done)):
                defect = self.cfg.bad_shots.get((scene, k))
                # The crew walks the rig to the scene (and, sometimes, botches the shot).
                write_crew_action(self.rig_dir, scene=scene, defect=defect)
                if defect:
                    print(f"(crew: {defect} on the next shot; nothing downstream is told)", flush=True)
                _hzsr(["capture", "run", str(self.session), "--rig", str(self.rig_yaml), "--count", "1",
                       "--scene", f"{kind}-demo{scene:02d}", "--tags", f"{kind},demo",
                       "--lock-3a", "--match-exposure"])
                self.crew.append(defect)
                self.crew_scenes.append(f"{kind}-{scene:04d}")  # the virtual world's scene_id
                done += 1
        write_crew_action(self.rig_dir, scene=None, defect=None)

    def check(self) -> None:
        _hzsr(["session", "validate", str(self.session)])
        _hzsr(["sync", "check", str(self.session)])
        _hzsr(["qa", "check", str(self.session)])

    def pack(self) -> None:
        _hzsr(["dataset", "pack", str(self.session), "--out", str(self.dataset), "--filter",
               "verdict != 'fail'"])
        _hzsr(["dataset", "split", str(self.dataset), "--by", "scene", "--ratios", self.split_ratios,
               "--stratify", "kind", "--seed", str(self.cfg.seed)])
        _hzsr(["dataset", "verify", str(self.dataset)])

    def train(self) -> None:
        _hzsr(["model", "train", str(self.dataset), "--out", str(self.run_dir),
               "--config", str(Path(__file__).parent / "baseline_model" / "configs" / "shipped.yaml"),
               "--set", "init=shipped", "--set", f"optim.steps={self.cfg.train_steps}",
               "--set", "data.target=auto",  # a captured session has no simulator truth: main T then
               "--set", "threads=0",  # the thread policy (baseline_model/threads.py), not the config's 2
               "--set", "optim.lr=0.0005", "--set", f"data.patch={self.cfg.train_patch}",
               "--set", "log_every=5", "--set", f"ckpt_every={self.cfg.train_steps}",
               "--set", "data.patches_per_epoch=512"])

    def evaluate(self) -> None:
        argv = ["model", "eval", str(self.dataset), "--ckpt", str(self._ckpt()), "--split", "test",
                "--out", str(self.eval_dir)]
        if self.cfg.eval_limit:
            argv += ["--limit", str(self.cfg.eval_limit)]
        _hzsr(argv)

    def infer(self) -> None:
        """Full-resolution inference on a few test captures, each with its maps, for the report."""
        import pandas as pd

        splits = pd.read_csv(self.dataset / "splits.csv")
        manifest = pd.read_csv(self.dataset / "manifest.csv").set_index("capture_id")
        test = splits.loc[splits["split"] == "test", "capture_id"].tolist() or splits["capture_id"].tolist()
        for cid in test[: self.cfg.examples]:
            # Data-set ids are <session>/<capture>; the frames are in the session folder.
            src_id = str(manifest.loc[cid, "source_capture_id"])
            cap = self.session / "captures" / src_id
            out = self.infer_dir / src_id
            _hzsr(["model", "infer", str(cap / "main_W.jpg"), "--ckpt", str(self._ckpt()),
                   "--ref", str(cap / "ref_T.jpg"), "--meta", str(cap / "capture.json"),
                   "--out", str(out / "output.png"), "--save-maps", str(out)])

    def report(self) -> Path:
        from hzsr.report import ReportInputs, build_report

        return build_report(ReportInputs(
            title="hzsr demo: virtual rig to trained model", rig_yaml=self.rig_yaml,
            doctor_json=self.out / "doctor.json", session=self.session, dataset=self.dataset,
            run=self.run_dir, eval_dir=self.eval_dir, infer_dir=self.infer_dir, timings=self.timings,
            crew_defects=self._crew_by_capture(),
        ), self.out / "report.html")

    def _crew_by_capture(self) -> dict[str, str | None]:
        """capture id -> the crew's defect on it: the demo shoots one capture per run, in order. A
        focus defect that left no visible blur (``crew_labels``) is named ``<defect>_invisible``."""
        d = self.session / "captures"
        caps = sorted(p.name for p in d.iterdir()) if d.is_dir() else []
        labels = crew_labels(self.crew, self.crew_scenes, self.rig_dir / "truth" / "crew_defects.jsonl")
        return dict(zip(caps, labels, strict=False))

    def _ckpt(self) -> Path:
        for name in ("model.pt", "ckpt-last.pt"):
            if (self.run_dir / name).is_file():
                return self.run_dir / name
        raise DemoStepFailed(f"{self.run_dir}: training wrote no checkpoint")

    # -- the whole run ---------------------------------------------------------------------
    def run(self) -> int:
        """Every step in order; the rig is stopped whatever ends the run (a failure, Ctrl-C, SIGTERM)."""
        # SIGTERM ends the demo as Ctrl-C does, so the rig is stopped either way.
        old = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self._prepare_out()
            t0 = time.perf_counter()
            try:
                self._step("rig up", self.rig_up)
                self._step("rig doctor", self.doctor)
                self._step("capture", self.capture)
                self._step("validate, sync check, qa check", self.check)
            finally:
                with _interrupts_held():  # a Ctrl-C now waits until the rig is down
                    self._step("rig down", self._rig_down)
            self._step("pack and split", self.pack)
            self._step("train", self.train)
            self._step("eval", self.evaluate)
            self._step("infer", self.infer)
            self._step("report", self._write_report)
            total = time.perf_counter() - t0
            report = self.out / "report.html"
            print(f"\ndemo finished in {total:.0f} s; the report: {report}")
            print(json.dumps({"report": str(report), "session": str(self.session), "dataset": str(self.dataset),
                              "train_run": str(self.run_dir), "eval": str(self.eval_dir),
                              "infer": str(self.infer_dir), "seconds": round(total, 1)}, indent=2))
            return EXIT_OK
        finally:
            signal.signal(signal.SIGTERM, old)

    def _prepare_out(self) -> None:
        if self.out.exists():
            # Only ever a folder the demo made: refuse to wipe anything else.
            if any(self.out.iterdir()) and not (self.out / ".hzsr-demo").exists():
                raise ConfigError("exists and was not made by hzsr demo; choose another --out", file=self.out,
                                  field="--out")
            stale = self.out / "rig" / "rig.yaml"
            if stale.exists():  # a demo killed before its cleanup: stop what it left first
                with _interrupts_held():
                    self._rig_down(stale)
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        (self.out / ".hzsr-demo").write_text("made by hzsr demo; rerunning the demo replaces this folder\n")

    def _write_report(self) -> None:
        self.report()

    def _rig_down(self, rig_yaml: Path | None = None) -> None:
        rig_yaml = rig_yaml or self.rig_yaml
        if rig_yaml.exists():
            with contextlib.suppress(DemoStepFailed, ConfigError):  # it said why on stderr; carry on
                _hzsr(["rig", "down", "--rig", str(rig_yaml)])


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupts_held():
    """Hold SIGINT and SIGTERM for the block; one that came meanwhile is raised when it ends."""
    got: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if got:
            raise KeyboardInterrupt


# -- command line -------------------------------------------------------------------------------
def _run_args(args: argparse.Namespace) -> int:
    from hzsr.sim.profiles import FULL_RES

    # The split is by scene and eval reads the test split: two scenes at least, one to train on and
    # one to test (`Demo.per_scene`, `Demo.split_ratios`; 4 captures once left the test split empty).
    if not 2 <= args.captures <= 1000:
        raise ConfigError(f"must be in 2 .. 1000 (two scenes at least: one to train on, one to test), "
                          f"got {args.captures}", field="--captures")
    if args.train_steps < 1:
        raise ConfigError("must be >= 1", field="--train-steps")
    cfg = DemoConfig(out=Path(args.out), captures=args.captures, seed=args.seed, train_steps=args.train_steps,
                     size=FULL_RES if args.full_res else DemoConfig.size)
    try:
        return Demo(cfg).run()
    except DemoStepFailed as exc:
        print(f"hzsr demo: {exc}; outputs so far are in {cfg.out}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hzsr demo: interrupted; the rig was stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


def add_demo_parser(stages) -> None:
    d = stages.add_parser("demo", help="the whole path on the virtual rig, with one report",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d.add_argument("--out", default=str(DemoConfig.out), help="folder the demo creates (replaced on rerun)")
    d.add_argument("--captures", type=int, default=DemoConfig.captures,
                   help="captures to take, two per scene (one per scene below 4, so that train and test each get one)")
    d.add_argument("--train-steps", type=int, default=DemoConfig.train_steps,
                   help="fine-tuning steps from the shipped checkpoint")
    d.add_argument("--seed", type=int, default=DemoConfig.seed, help="seed of the virtual rig and the split")
    d.add_argument("--full-res", action="store_true", help="4000x3000 frames, as the phones capture (slow)")
    d.set_defaults(func=_run_args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hzsr.demo [options]`` (what ``make demo`` runs) is ``hzsr demo [options]``.

    Ctrl-C at any point, the imports of start-up included, exits 130 (the shell's code for it)
    instead of dying of the signal.
    """
    try:
        from hzsr.cli import main as hzsr

        return hzsr(["demo", *(sys.argv[1:] if argv is None else argv)])
    except KeyboardInterrupt:
        print("hzsr demo: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
