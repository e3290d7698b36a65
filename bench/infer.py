"""Benchmark: ``hzsr model infer`` on one 12 MP capture (issues 13, 19).

Goals (issue 19, 2 cores): end-to-end <= 3 s wall when idle and <= 20x the bicubic baseline in CPU
time; peak memory <= 1 GB at 12 MP; the thread policy >= 2x faster than torch's default on a
loaded machine (``--load 2``: two busy processes) and not slower when idle. The script renders its
own 4000x3000 capture with ``hzsr.sim`` (so it runs anywhere with no other setup) in a separate
process, then runs, in ``--rounds`` interleaved rounds (the order rotates), each in a FRESH
process. The goal's figure is ``process_wall_s``: the parent's clock from spawning that process
to its exit (interpreter start, every import, the thread policy, the inference, the exit), with
``process_cpu_s`` its CPU (user + system of the child and all its threads, from
``RUSAGE_CHILDREN``). A ``chosen/RUNTIME`` child runs the command line itself in-process
(``hzsr.cli.main(["model", "infer", ...])``: exactly what ``hzsr model infer`` runs, the
thread policy included), so the process figures are those of the command. Each child also
reports its wall and CPU time from the call on (``wall_s``, ``cpu_s``: imports excluded, as
before), and peak memory (``VmHWM`` of
``/proc/self/status``: the high-water mark of this process's own address space; ``ru_maxrss``
is not used, as after fork + exec it still holds the parent's size at the fork):

- ``variants`` (``--variants``, comma-separated), each one ``POLICY/RUNTIME``: ``default/torch``
  is torch's defaults (OpenMP's spin-waiting, one thread per core; no ``threads.apply``),
  ``chosen/RUNTIME`` the thread policy (``threads.py``) with that runtime (``openvino-int8``,
  ``openvino-bf16``, ``openvino``, ``onnxruntime``, ``torch``: ``hzsr/baseline_model/runtime.py``; or
  ``default``: no ``--runtime``, what ``hzsr model infer`` picks itself, named in the result's
  ``runtime``); every variant
  gets ``speedup_process_wall_vs_FIRST``, ``speedup_process_cpu_vs_FIRST``, ``speedup_wall_vs_FIRST``
  and ``speedup_cpu_vs_FIRST`` (the first variant's time over its
  own, median of the per-round ratios);
- ``bicubic``: decoding the two JPEGs plus the bicubic W crop alone, which any zoom pipeline
  pays: the baseline of the CPU ratio;
- once, after the rounds, the first variant with half the tile side's worth of tiles (twice the
  count), for the flat-memory check.

Ratios are per round, then the median; the 1-minute load average is recorded before and after.
With ``--load N`` that many busy processes (``while True: pass``) run through every round.

With ``--mp48``, the first ``chosen`` variant also runs once on a 2x-per-side (48 MP) copy of the
capture, for the 48 MP peak-memory goal (<= 1.5 GB).

A variant ``base:POLICY/RUNTIME`` runs that variant from another checkout (``--base-tree``, e.g.
a worktree of main) with its own ``bench/infer.py``, in the same rounds: ``paired_vs_base`` gives
base wall / this wall and base CPU / this CPU per round (median). ``--base-ckpt CKPT`` gives the ``base:``
variants another checkpoint (in this tree unless ``--base-tree`` is given too): two networks paired
in the same rounds, e.g. ``--ckpt CANDIDATE --base-ckpt hzsr/baseline_model/weights/shipped.pt
--variants chosen/openvino-bf16,base:chosen/openvino-bf16``. ``--threads N`` forces the
chosen variants' thread count (``HZSR_TORCH_THREADS``), for a 2-core figure when the policy would
find the shared machine busy and take one.

What a runtime does to the output is measured apart, on the held-out pool against the ideal
target: ``bench/infer_quality.py``.

Usage: ``python bench/infer.py [--rounds 3] [--variants chosen/openvino-bf16,chosen/openvino-int8,default/torch]
[--load 0] [--mp48] [--device cpu] [--ckpt CKPT] [--keep DIR] [--base-tree DIR] [--base-ckpt CKPT] [--threads N]``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Environment a variant's process must not inherit (they set the policy under test).
POLICY_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "OMP_NUM_THREADS", "HZSR_TORCH_THREADS",
              "MKL_NUM_THREADS")


def _peak_mb() -> float:
    """This process's peak resident memory (``VmHWM``), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status")


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _child(args: argparse.Namespace) -> None:
    policy, runtime = args.variant.split("/")
    if policy == "chosen" and runtime != "bicubic":
        # The command itself (``hzsr model infer``), in this process: its thread policy, its imports.
        import contextlib
        import io

        from hzsr.cli import main as hzsr_main

        argv = ["model", "infer", args.source, "--ref", args.ref, "--meta", args.meta, "--out", args.out,
                "--device", args.device, "--json"]
        argv += [] if runtime == "default" else ["--runtime", runtime]  # default: what infer picks itself
        argv += ["--ckpt", args.ckpt] if args.ckpt else []
        argv += ["--tile", str(args.tile)] if args.tile else []
        t0, c0 = time.perf_counter(), _cpu_s()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = hzsr_main(argv)
        if rc:
            raise SystemExit(f"hzsr model infer exited {rc}")
        res = json.loads(buf.getvalue())
        wall = time.perf_counter() - t0
        print(json.dumps({"wall_s": wall, "cpu_s": _cpu_s() - c0, "peak_mb": _peak_mb(), "tiles": res["tiles"],
                          "tile": res["tile"], "timings_s": res["timings_s"], "warnings": res["warnings"],
                          "runtime": res["runtime"], "threads": res["threads"], "torch_loaded": "torch" in sys.modules,
                          "output_size": res["output_size"], "used_reference": res["used_reference"]}))
        # And the process ends as the command's does (``hzsr.cli.run``: ``finish``, which skips the
        # interpreter's teardown after ``model infer``), so process_wall_s is the command's.
        from hzsr.cli import finish

        finish(0)
    if policy == "chosen":
        from hzsr.baseline_model.threads import apply

        apply()
    t0, c0 = time.perf_counter(), _cpu_s()
    if runtime == "bicubic":
        _baseline(Path(args.source), Path(args.ref), Path(args.meta))
        res = {"timings_s": {"total": time.perf_counter() - t0}, "tiles": 0, "tile": 0, "warnings": [],
               "output_size": None, "used_reference": None, "runtime": "bicubic", "threads": 0}
    else:
        from hzsr.baseline_model.infer import infer

        res = infer(args.source, args.ref, args.out, ckpt=args.ckpt, meta=args.meta, device=args.device,
                    tile=args.tile, runtime=None if runtime == "default" else runtime)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "cpu_s": _cpu_s() - c0, "peak_mb": _peak_mb(), "tiles": res["tiles"],
                      "tile": res["tile"], "timings_s": res["timings_s"], "warnings": res["warnings"],
                      "runtime": res["runtime"], "threads": res["threads"],
                      "output_size": res["output_size"], "used_reference": res["used_reference"]}))


def _baseline(source: Path, ref: Path, meta: Path) -> float:
    """Decode both JPEGs and make the bicubic W crop (what plain digital zoom costs)."""
    import cv2

    from hzsr.baseline_model.align import camera_geometry
    from hzsr.qa.align import crop_w_to_t

    t0 = time.perf_counter()
    w = cv2.imread(str(source))
    r = cv2.imread(str(ref))
    geom = camera_geometry(json.loads(meta.read_text()), (w.shape[1], w.shape[0]), (r.shape[1], r.shape[0]))
    crop_w_to_t(w, geom.k_w, geom.k_t, (r.shape[1], r.shape[0]))
    return time.perf_counter() - t0


def _run(files: dict[str, Path], out: Path, args: argparse.Namespace, variant: str,
         tile: int | None = None) -> dict:
    # ``base:POLICY/RUNTIME``: the same variant from another checkout (``--base-tree``), its own
    # bench/infer.py child with that tree first on the path: a change paired against main.
    script, env = __file__, {k: v for k, v in os.environ.items() if k not in POLICY_ENV}
    ckpt = args.ckpt
    if variant.startswith("base:"):
        if not (args.base_tree or args.base_ckpt):
            raise SystemExit(f"{variant}: give --base-tree or --base-ckpt")
        variant = variant[len("base:"):]
        ckpt = args.base_ckpt or args.ckpt
        if args.base_tree:
            script = str(Path(args.base_tree) / "bench" / "infer.py")
            env["PYTHONPATH"] = os.pathsep.join([str(Path(args.base_tree).resolve()), env.get("PYTHONPATH", "")])
    if args.threads and variant.startswith("chosen/"):
        env["HZSR_TORCH_THREADS"] = str(args.threads)
    cmd = [sys.executable, script, "--child", "--variant", variant, "--source", str(files["source"]),
           "--ref", str(files["ref"]), "--meta", str(files["meta"]), "--out", str(out), "--device", args.device]
    if ckpt:
        cmd += ["--ckpt", ckpt]
    if tile:
        cmd += ["--tile", str(tile)]
    ru0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall, ru1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{variant} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    # The whole process, spawn to exit, as a user of the command sees it (the goal's figure).
    res["process_wall_s"] = wall
    res["process_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return res


def _render(sess: Path) -> None:
    """Render the 12 MP capture (in its own process, so no variant inherits its memory)."""
    from hzsr.sim.profiles import FULL_RES
    from hzsr.sim.simsession import SimConfig, simulate_session

    simulate_session(sess, SimConfig(captures=1, seed=21, size=FULL_RES, kinds=("architecture",)), progress=False)


def _upscale_capture(cap: Path, dest: Path, factor: int = 2) -> dict[str, Path]:
    """A 48 MP copy of the capture: every frame resized ``factor`` x per side (bicubic, JPEG 95),
    capture.json's sizes, intrinsics and AF ROI scaled to match. For peak memory only (its detail
    is the 12 MP capture's)."""
    import cv2

    dest.mkdir(parents=True, exist_ok=True)
    meta = json.loads((cap / "capture.json").read_text())
    for fr in meta["frames"]:
        img = cv2.imread(str(cap / fr["file"]))
        big = cv2.resize(img, (img.shape[1] * factor, img.shape[0] * factor), interpolation=cv2.INTER_CUBIC)
        (dest / fr["file"]).write_bytes(cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes())
        fr["width"], fr["height"] = big.shape[1], big.shape[0]
        k = fr.get("intrinsics")
        if k:
            fr["intrinsics"] = {"fx": k["fx"] * factor, "fy": k["fy"] * factor,
                                "cx": (k["cx"] + 0.5) * factor - 0.5, "cy": (k["cy"] + 0.5) * factor - 0.5}
        if fr.get("af_roi"):
            fr["af_roi"] = [int(v * factor) for v in fr["af_roi"]]
        fr.pop("sha256", None)
        fr.pop("size_bytes", None)
    (dest / "capture.json").write_text(json.dumps(meta))
    return {"source": dest / "main_W.jpg", "ref": dest / "ref_T.jpg", "meta": dest / "capture.json"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped one)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    p.add_argument("--variants", default="chosen/openvino-bf16,chosen/openvino-int8,default/torch",
                   help="POLICY/RUNTIME list: POLICY default|chosen, RUNTIME a name of runtime.RUNTIMES "
                   "(openvino-int8, openvino-bf16, openvino, onnxruntime, torch) or default (infer's own "
                   "choice); the first is the others' pair")
    p.add_argument("--load", type=int, default=0, help="busy processes running through every round")
    p.add_argument("--keep", default=None, help="keep the rendered capture and outputs in this folder")
    p.add_argument("--mp48", action="store_true", help="also run the first chosen variant once on a 48 MP "
                   "(2x per side) copy of the capture, for its peak memory")
    p.add_argument("--base-tree", default=None, help="another checkout (e.g. main's) for the base:POLICY/RUNTIME "
                   "variants, run by that tree's own bench/infer.py")
    p.add_argument("--base-ckpt", default=None, help="the checkpoint of the base:POLICY/RUNTIME variants (default: "
                   "--ckpt's): another network in the same rounds, in this tree "
                   "unless --base-tree is given")
    p.add_argument("--threads", type=int, default=0, help="force the chosen variants' thread count "
                   "(HZSR_TORCH_THREADS), e.g. 2 for the 2-core figure on a machine the policy finds busy")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--render", default=None, help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--source", help=argparse.SUPPRESS)
    p.add_argument("--ref", help=argparse.SUPPRESS)
    p.add_argument("--meta", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--tile", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return
    if args.render:
        _render(Path(args.render))
        return

    from hzsr.baseline_model.config import PipelineConfig
    from hzsr.baseline_model.tiling import n_tiles
    from hzsr.sim.profiles import FULL_RES

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hzsr-bench-infer-"))
    if not args.keep:  # the rendered 12 MP capture and every output (~26 MB) go with the run
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    sess = root / "session"
    render_s = None
    if not (sess / "session.json").exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--render", str(sess)], check=True)
        render_s = time.perf_counter() - t0
    cap = sess / "captures" / "c00000"
    files = {"source": cap / "main_W.jpg", "ref": cap / "ref_T.jpg", "meta": cap / "capture.json"}

    tile = PipelineConfig().tile
    w, h = FULL_RES
    # Twice the tile count: the largest multiple-of-16 tile whose count reaches 2x the default's.
    base_n = n_tiles(h, w, tile)
    small = tile
    while small > 16 and n_tiles(h, w, small) < 2 * base_n:
        small -= 16
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] + ["chosen/bicubic"]
    load0 = os.getloadavg()[0]
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for v in variants[r % len(variants):] + variants[: r % len(variants)]:
                runs[v].append(_run(files, root / f"out_{v.replace('/', '_')}_{r}.jpg", args, v))
        double = _run(files, root / "out_double.jpg", args, variants[0], small)
        chosen = next((v for v in variants if v.startswith("chosen/")), variants[0])
        mp48 = _run(_upscale_capture(cap, root / "mp48"), root / "out_48mp.jpg", args, chosen) if args.mp48 else None
    finally:
        for b in busy:
            b.kill()
            b.wait()
    base = runs.pop("chosen/bicubic")
    first = variants[0]

    def med(v: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[v])

    def ratio(v: str, over: list[dict], key: str) -> float:
        return statistics.median(a[key] / b[key] for a, b in zip(runs[v], over, strict=True))

    out = {
        "benchmark": "infer_12mp", "device": args.device, "cpus": os.cpu_count(), "rounds": args.rounds,
        "busy_processes": args.load, "forced_threads": args.threads or None, "base_tree": args.base_tree,
        "ckpt": args.ckpt, "base_ckpt": args.base_ckpt,
        "load_avg_1m_before": load0, "load_avg_1m_after": os.getloadavg()[0],
        "image": f"{w}x{h}", "render_s": render_s,
        "baseline_bicubic": {"wall_s": statistics.median(b["wall_s"] for b in base),
                             "cpu_s": statistics.median(b["cpu_s"] for b in base)},
        "variants": {v: {
            "threads": runs[v][0]["threads"], "runtime": runs[v][0]["runtime"],
            "process_wall_s_median": med(v, "process_wall_s"), "process_cpu_s_median": med(v, "process_cpu_s"),
            "process_wall_s_rounds": [round(x["process_wall_s"], 3) for x in runs[v]],
            "process_cpu_s_rounds": [round(x["process_cpu_s"], 3) for x in runs[v]],
            "torch_loaded": runs[v][0].get("torch_loaded"),
            "wall_s_median": med(v, "wall_s"), "cpu_s_median": med(v, "cpu_s"),
            "peak_mb_max": max(x["peak_mb"] for x in runs[v]),
            "stages_s_median": {k: statistics.median(x["timings_s"][k] for x in runs[v])
                                for k in runs[v][0]["timings_s"]},
            "wall_s_rounds": [round(x["wall_s"], 3) for x in runs[v]],
            "cpu_s_rounds": [round(x["cpu_s"], 3) for x in runs[v]],
            "ratio_wall_over_bicubic": ratio(v, base, "wall_s"), "ratio_cpu_over_bicubic": ratio(v, base, "cpu_s"),
            f"speedup_process_wall_vs_{first}": ratio(first, runs[v], "process_wall_s"),
            f"speedup_process_cpu_vs_{first}": ratio(first, runs[v], "process_cpu_s"),
            f"speedup_wall_vs_{first}": ratio(first, runs[v], "wall_s"),
            f"speedup_cpu_vs_{first}": ratio(first, runs[v], "cpu_s"),
        } for v in runs},
        "tiles": runs[first][0]["tiles"], "tile": runs[first][0]["tile"],
        "double_tiles": {"variant": first, "tiles": double["tiles"], "tile": double["tile"],
                         "peak_mb": double["peak_mb"]},
        "warnings": runs[first][0]["warnings"], "used_reference": runs[first][0]["used_reference"],
    }
    # Each variant against its base: (another checkout's) counterpart, ratios base / this per round.
    def paired(v: str) -> dict:
        b = runs[f"base:{v}"]
        return {"speedup_process_wall": statistics.median(y["process_wall_s"] / x["process_wall_s"]
                                                          for x, y in zip(runs[v], b, strict=True)),
                "process_cpu_ratio": statistics.median(y["process_cpu_s"] / x["process_cpu_s"]
                                                       for x, y in zip(runs[v], b, strict=True)),
                "speedup_wall": statistics.median(y["wall_s"] / x["wall_s"] for x, y in zip(runs[v], b, strict=True)),
                "cpu_ratio": statistics.median(y["cpu_s"] / x["cpu_s"] for x, y in zip(runs[v], b, strict=True)),
                "peak_mb": [out["variants"][v]["peak_mb_max"], out["variants"][f"base:{v}"]["peak_mb_max"]]}

    out["paired_vs_base"] = {v: paired(v) for v in runs if f"base:{v}" in runs}
    if mp48 is not None:
        out["mp48"] = {"variant": chosen, "output_size": mp48["output_size"], "peak_mb": mp48["peak_mb"],
                       "wall_s": mp48["wall_s"], "tiles": mp48["tiles"]}
    best = min((v for v in runs if not v.startswith("base:")), key=lambda v: med(v, "process_wall_s"))
    out["fastest"] = best
    out["goals"] = {
        # spawn to exit of the whole process (imports included), median of the rounds
        "end_to_end_le_3s": med(best, "process_wall_s") <= 3.0,
        "cpu_le_20x_bicubic": out["variants"][best]["ratio_cpu_over_bicubic"] <= 20,
        "peak_le_1GB_12MP": out["variants"][best]["peak_mb_max"] <= 1024,
        "flat_memory_double_tiles": double["peak_mb"] <= out["variants"][first]["peak_mb_max"] * 1.1,
    }
    if mp48 is not None:
        out["goals"]["peak_le_1.5GB_48MP"] = mp48["peak_mb"] <= 1536
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
