"""Benchmark: ``hzsr dataset pack`` against its decode-plus-hash floor, and ``--workers`` scaling (issue 19).

The floor: what a pack cannot avoid per capture, decoding every JPEG of the capture (``cv2.imdecode``
+ RGB) and hashing it twice (the file's bytes against capture.json, the decoded array for the
shard), one frame after another on one core. A pack also pHashes main_W, compresses and writes.

Each round runs, interleaved (the order rotates), each in a fresh process:

- ``floor``: the floor over every capture, pinned to one core (``sched_setaffinity``);
- ``floor_heap``: the same with glibc told to keep freed frames for reuse, as pack does
  (``hzsr.core.bulkio.reuse_freed_buffers``): the floor by the pack's own means, the stricter one;
- ``pack1core``: ``pack --workers 1`` pinned to the same one core;
- ``pack_w1`` and ``pack_w2``: ``pack --workers 1`` and ``--workers 2`` free to use every core;
- ``floor_pair`` (two cores or more): two floors at once, each pinned to its own core. Its CPU per
  capture over ``floor``'s is ``cpu_inflation_two_busy_cores``: how much two busy cores slow each
  other on this machine (shared caches and memory bandwidth, or a hypervisor's sibling threads),
  so ``speedup_w2_ceiling`` = 2 / inflation bounds what ``--workers 2`` can gain over one;
- with ``--baseline-tree DIR``, ``pack1core_base`` and ``pack_w2_base``: ``pack1core`` and ``pack_w2``
  with the hzsr of another source tree (an older commit's ``git worktree``), for a paired
  before/after.

Reports per-capture seconds and CPU seconds (user + system, every thread) as medians,
``ratio_floor_over_pack_1core`` (goal >= 0.8), the same against ``floor_heap`` and in CPU time,
and ``speedup_w2_over_w1`` (goal >= 1.5 when two cores are free), each the median of per-round
ratios, with the 1-minute load average before and after. The pack's own imports (h5py,
hdf5plugin) happen before the clock, as the floor's cv2 and hashlib do (``pack_import_cpu_s_median``
gives their once-per-process cost). The previous round's output is deleted
before the clock starts. The session (``--captures`` 12 MP triplets, seed 41) is rendered once in
a separate process, or taken from ``--session``.

``--codec-speed`` instead measures, on one core, what each candidate compressor costs per 12 MP
capture and how much it shrinks it (the shard's tiles and Fletcher-32, in memory).
``--chunk-speed`` weighs tile shapes (and full-width row bands, whose gather is a memcpy) and
Fletcher-32: the writer's CPU per capture against random 256x256 patch reads and whole-frame reads.

Usage: ``python bench/pack.py [--rounds 3] [--captures 4] [--codec CODEC] [--session DIR] [--keep DIR]
[--baseline-tree DIR] [--codec-speed] [--chunk-speed]``. The packs are deleted at the end (0.4 GB each), the
rendered session too unless ``--keep``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
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


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return r.ru_utime + r.ru_stime


def _child(mode: str, session: Path, out: Path, codec: str, core: int | None = None) -> dict:
    if core is not None:
        os.sched_setaffinity(0, {core})
    elif mode in ("floor", "floor_heap", "pack1core", "pack1core_base"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from hzsr.core.records import CaptureRecord
    from hzsr.dataset.pack import PackConfig, pack_dataset
    from hzsr.dataset.shard import array_sha256, decode_jpeg

    # The pack's own imports (h5py, hdf5plugin: about 0.15 s, once per process) happen before the
    # clock, as the floor's cv2 and hashlib do: both sides are timed per capture, not per process.
    # They are timed apart (import_s) so the fixed cost stays visible.
    t_imp, c_imp = time.perf_counter(), _cpu_s()
    if not mode.startswith("floor"):
        import h5py  # noqa: F401
        import hdf5plugin  # noqa: F401

        import hzsr.core.bulkio  # noqa: F401
        import hzsr.core.directfile  # noqa: F401
    import_s, import_cpu_s = time.perf_counter() - t_imp, _cpu_s() - c_imp
    caps = sorted((session / "captures").iterdir())
    if mode == "floor_heap":
        from hzsr.core.bulkio import reuse_freed_buffers

        reuse_freed_buffers()
    shutil.rmtree(out, ignore_errors=True)  # the previous round's data set: deleting 0.4 GB is not packing
    t0, c0 = time.perf_counter(), _cpu_s()
    if mode.startswith("floor"):
        for cdir in caps:
            rec = CaptureRecord.load(cdir)
            for f in rec.frames:
                array_sha256(decode_jpeg(cdir / f.file, f.sha256))
    else:
        workers = 2 if mode.startswith("pack_w2") else 1
        pack_dataset([session], out, PackConfig(compression=codec, workers=workers, progress=False))
    return {"mode": mode, "seconds": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0, "captures": len(caps),
            "import_s": import_s, "import_cpu_s": import_cpu_s}


def _codec_candidates() -> dict[str, dict]:
    """HDF5 filter keywords of the compressors weighed for the default codec (``--codec-speed``)."""
    import hdf5plugin

    B, B2 = hdf5plugin.Blosc, hdf5plugin.Blosc2
    out: dict[str, dict] = {"none": {}}
    for lv in (1, 3, 5, 9):  # blosc-lz4 is clevel 5 (hzsr.dataset.codecs)
        out[f"blosc-lz4 clevel {lv}"] = dict(B(cname="lz4", clevel=lv, shuffle=B.NOSHUFFLE))
    for lv in (1, 3):
        out[f"blosc-blosclz clevel {lv}"] = dict(B(cname="blosclz", clevel=lv, shuffle=B.NOSHUFFLE))
    out["blosc-zstd clevel 1"] = dict(B(cname="zstd", clevel=1, shuffle=B.NOSHUFFLE))
    out["blosc2-lz4 clevel 1"] = dict(B2(cname="lz4", clevel=1, filters=B2.NOFILTER))
    out["blosc2-lz4 clevel 1 shuffle"] = dict(B2(cname="lz4", clevel=1, filters=B2.SHUFFLE))
    out["lz4 (HDF5 LZ4 filter)"] = dict(hdf5plugin.LZ4())
    out["bitshuffle-lz4"] = dict(hdf5plugin.Bitshuffle(cname="lz4"))
    out["zstd level 1"] = dict(hdf5plugin.Zstd(clevel=1))
    return out


def _codec_speed(session: Path, rounds: int) -> dict:
    """Single-thread cost and ratio of each candidate on the session's first capture, pinned to one core.

    Each round writes the capture's three decoded frames into an in-memory HDF5 file as a shard
    does (its tiles, Fletcher-32, no chunk cache), once per candidate, interleaved. CPU seconds of
    the write are medians over rounds; a candidate's compression cost is its write minus ``none``'s
    (Fletcher-32 then runs on fewer bytes, so this slightly flatters compression).
    """
    import io

    import h5py

    from hzsr.dataset.codecs import chunk_shape
    from hzsr.dataset.shard import decode_jpeg

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cdir = sorted((session / "captures").iterdir())[0]
    frames = [decode_jpeg(p) for p in sorted(cdir.glob("*.jpg"))]
    raw = sum(f.nbytes for f in frames)
    cands = _codec_candidates()
    cpu: dict[str, list[float]] = {c: [] for c in cands}
    size: dict[str, int] = {}
    for _ in range(rounds):
        for name, kw in cands.items():
            bio = io.BytesIO()
            with h5py.File(bio, "w", rdcc_nbytes=0) as h5:
                c0 = time.process_time()
                for i, f in enumerate(frames):
                    h5.create_dataset(str(i), data=f, chunks=chunk_shape(*f.shape[:2]), fletcher32=True, **kw)
                h5.flush()
                cpu[name].append(time.process_time() - c0)
            size[name] = bio.getbuffer().nbytes
    base = statistics.median(cpu["none"])
    rows = {}
    for name in cands:
        w = statistics.median(cpu[name])
        rows[name] = {"write_cpu_s": round(w, 4), "compress_cpu_s": round(w - base, 4),
                      "compress_gb_per_s": round(raw / (w - base) / 1e9, 2) if w > base else None,
                      "ratio_raw_over_stored": round(raw / size[name], 4), "stored_mb": round(size[name] / 1e6, 2)}
    return {"benchmark": "pack_codec_speed", "capture": cdir.name, "raw_mb": round(raw / 1e6, 1),
            "rounds": rounds, "load_avg_1m": os.getloadavg()[0], "candidates": rows}


#: Tile targets weighed by ``--chunk-speed`` (rows, columns; 0 columns: the frame's full width, a row band
#: whose gather is one memcpy), each with and without Fletcher-32. The shard's is (128, 128).
CHUNK_CANDIDATES = ((128, 128), (128, 256), (160, 160), (192, 192), (256, 256), (64, 0), (16, 0))
#: HDF5 1.10's file-format bounds: a Fixed Array chunk index instead of 1.8's version-1 B-tree, and
#: dense attribute storage. Weighed for shards in issue 19's seventh pack pass, not adopted: no
#: difference in a fresh pack process (docs/benchmarks.md).
V110_BOUNDS = ("v110", "v110")


def _chunk_speed(session: Path, rounds: int, codec: str) -> dict:
    """Writer cost against read speed for tile shapes, and what Fletcher-32 costs each, on one core.

    Each round writes the session's first capture (three decoded 12 MP frames) as a shard does
    (``DirectAppendFile``, no chunk cache, ``codec``), once per shape and checksum setting,
    interleaved, into a real file; then reads 200 random 256x256 patches of main_W (plain h5py,
    warm cache, the same positions for every shape) and all three frames whole. CPU seconds,
    medians over rounds; ``*_vs_shard`` are ratios against the shard's shape with Fletcher-32 (HDF5's
    default format bounds, as shards are written) in the same rounds (write: CPU ratio; reads: speed
    ratio, above 1 faster). The shard's tile is also written under HDF5 1.10's bounds
    (``hdf5-1.10-bounds``, fill time "never"). Rows without
    Fletcher-32 add ``first_read_checked_cpu_s``: a whole read and sha256 of a frame, what a reader
    pays instead the first time it touches a frame (schema 1's check), also in patch reads.
    """
    import h5py
    import numpy as np

    from hzsr.core.directfile import DirectAppendFile
    from hzsr.dataset.codecs import _codec_kwargs, register_plugins, tile
    from hzsr.dataset.shard import array_sha256, decode_jpeg

    register_plugins()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    cdir = sorted((session / "captures").iterdir())[0]
    frames = [decode_jpeg(p) for p in sorted(cdir.glob("*.jpg"))]
    H, W = frames[0].shape[:2]
    rng = np.random.default_rng(7)
    ys, xs = rng.integers(0, H - 256, 200), rng.integers(0, W - 256, 200)
    kw = _codec_kwargs(codec)
    # (tile h, tile w or 0 for full-width bands, Fletcher-32, HDF5 format bounds): every shape under
    # HDF5's default bounds (1.8's, as shards are written); the shard's tile also under 1.10's
    # (V110_BOUNDS, with fill_time "never"), with and without Fletcher-32.
    cands = [(th, tw, f32, None) for th, tw in CHUNK_CANDIDATES for f32 in (True, False)]
    cands += [(*CHUNK_CANDIDATES[0], f32, V110_BOUNDS) for f32 in (True, False)]
    res: dict[tuple, dict[str, list[float]]] = {c: {"write": [], "patch": [], "whole": []} for c in cands}
    size: dict[tuple, int] = {}
    tmp = Path(tempfile.mkdtemp(prefix="hzsr-bench-chunks-", dir=session.parent))
    try:
        for _ in range(rounds):
            for c in cands:
                th, tw, f32, libver = c
                fn = tmp / "t.h5"
                fill = {"fill_time": "never"} if libver else {}
                c0 = time.process_time()
                with DirectAppendFile(fn) as raw, h5py.File(raw, "w", rdcc_nbytes=0, libver=libver) as h5:
                    for i, f in enumerate(frames):
                        h, w = f.shape[:2]
                        h5.create_dataset(str(i), data=f, chunks=(tile(h, th), tile(w, tw) if tw else w, 3),
                                          fletcher32=f32, **fill, **kw)
                res[c]["write"].append(time.process_time() - c0)
                size[c] = fn.stat().st_size
                with h5py.File(fn, "r") as h5:
                    d = h5["0"]
                    c0 = time.process_time()
                    for y, x in zip(ys, xs, strict=True):
                        d[y:y + 256, x:x + 256]
                    res[c]["patch"].append((time.process_time() - c0) / len(ys))
                    c0 = time.process_time()
                    for i in range(len(frames)):
                        h5[str(i)][()]
                    res[c]["whole"].append(time.process_time() - c0)
                    if not f32:  # what a reader pays instead, the first time it touches a frame: read + sha256
                        c0 = time.process_time()
                        for i in range(len(frames)):
                            array_sha256(h5[str(i)][()])
                        res[c].setdefault("first", []).append(time.process_time() - c0)
                fn.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {c: {k: statistics.median(v) for k, v in r.items()} for c, r in res.items()}
    ref = med[(128, 128, True, None)]
    rows = {}
    for c in cands:
        th, tw, f32, libver = c
        m = med[c]
        name = (f"{tile(H, th)}x{tile(W, tw) if tw else W}{'' if f32 else ' no-fletcher32'}"
                f"{' hdf5-1.10-bounds' if libver else ''}")
        rows[name] = {"write_cpu_s_per_capture": round(m["write"], 4),
                      "write_cpu_vs_shard": round(m["write"] / ref["write"], 3),
                      "patch_reads_per_s": round(1 / m["patch"]),
                      "patch_speed_vs_shard": round(ref["patch"] / m["patch"], 3),
                      "whole_frame_read_cpu_s": round(m["whole"] / len(frames), 4),
                      "whole_read_speed_vs_shard": round(ref["whole"] / m["whole"], 3),
                      "stored_mb": round(size[c] / 1e6, 2)}
        if "first" in m:  # no per-tile check: the sha256 check of a frame's first read (schema 1's reader)
            rows[name]["first_read_checked_cpu_s"] = round(m["first"] / len(frames), 4)
            rows[name]["first_read_in_patch_reads"] = round(m["first"] / len(frames) / m["patch"], 1)
    return {"benchmark": "pack_chunk_speed", "codec": codec, "capture": cdir.name, "frame": [H, W],
            "rounds": rounds, "load_avg_1m_before_after": None, "candidates": rows}


def _render(session: Path, captures: int) -> None:
    from hzsr.sim.profiles import FULL_RES
    from hzsr.sim.simsession import SimConfig, simulate_session

    simulate_session(session, SimConfig(captures=captures, seed=41, size=FULL_RES), progress=False)


def main() -> None:
    from hzsr.dataset.codecs import DEFAULT_CODEC

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    ap.add_argument("--captures", type=int, default=4, help="12 MP captures to render")
    ap.add_argument("--codec", default=DEFAULT_CODEC, help="compression codec of the packs")
    ap.add_argument("--session", default=None, help="an existing session to pack instead of rendering one")
    ap.add_argument("--keep", default=None, help="keep the rendered session in this folder (the packs "
                    "are deleted at the end either way)")
    ap.add_argument("--baseline-tree", default=None, help="also pack on one core with the hzsr of this source "
                    "tree (e.g. a `git worktree` of an older commit), interleaved: pack1core_base, pack_w2_base")
    ap.add_argument("--codec-speed", action="store_true", help="instead: single-thread compression cost and "
                    "ratio of candidate codecs on the session's first capture (one core)")
    ap.add_argument("--chunk-speed", action="store_true", help="instead: writer CPU against patch and whole "
                    "reads for tile shapes and row bands, with and without Fletcher-32, on one core")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--core", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--render", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.render:
        _render(Path(args.session), args.captures)
        return
    if args.child:
        print(json.dumps(_child(args.child, Path(args.session), Path(args.out), args.codec, args.core)))
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hzsr-bench-pack-"))
    session = Path(args.session) if args.session else root / "session"
    if not (session / "session.json").exists():
        subprocess.run([sys.executable, __file__, "--render", "--session", str(session),
                        "--captures", str(args.captures)], check=True)
    if args.chunk_speed:
        load0 = os.getloadavg()[0]
        out = _chunk_speed(session, max(args.rounds, 3), args.codec)
        out["load_avg_1m_before_after"] = [load0, os.getloadavg()[0]]
        print(json.dumps(out, indent=2))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        return
    if args.codec_speed:
        print(json.dumps(_codec_speed(session, max(args.rounds, 3)), indent=2))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        return
    try:
        modes = ["floor", "floor_heap", "pack1core", "pack_w1", "pack_w2"]
        modes += ["pack1core_base", "pack_w2_base"] if args.baseline_tree else []
        cores = sorted(os.sched_getaffinity(0))
        modes += ["floor_pair"] if len(cores) >= 2 else []
        load0 = os.getloadavg()[0]
        runs: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        n = 0
        imports: list[float] = []

        def child(m: str, core: int | None = None) -> subprocess.Popen:
            env = {**os.environ, "PYTHONPATH": str(Path(args.baseline_tree).resolve())} if m.endswith("_base") else None
            return subprocess.Popen([sys.executable, __file__, "--child", m, "--session", str(session), "--out",
                                     str(root / f"ds-{m}-{core}"), "--codec", args.codec,
                                     *(["--core", str(core)] if core is not None else [])],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

        def result(m: str, p: subprocess.Popen) -> dict:
            out_, err = p.communicate()
            if p.returncode:
                raise SystemExit(f"{m} failed: {err.strip().splitlines()[-1:]}")
            return json.loads(out_.strip().splitlines()[-1])

        for r in range(args.rounds):
            for m in modes[r % len(modes):] + modes[: r % len(modes)]:
                if m == "floor_pair":  # two floors at once, one per core: what two busy cores give each
                    ps = [child(m, c) for c in cores[:2]]
                    res_ = [result(m, p) for p in ps]
                    n = res_[0]["captures"]
                    runs[m].append(statistics.mean(x["seconds"] for x in res_) / n)
                    cpu[m].append(statistics.mean(x["cpu_s"] for x in res_) / n)
                    continue
                res = result(m, child(m))
                n = res["captures"]
                runs[m].append(res["seconds"] / n)
                cpu[m].append(res["cpu_s"] / n)
                if m.startswith("pack"):
                    imports.append(res["import_cpu_s"])

        def ratio(a: str, b: str) -> float:
            return statistics.median(x / y for x, y in zip(runs[a], runs[b], strict=True))

        out = {
            "benchmark": "pack_floor", "codec": args.codec, "captures": n, "rounds": args.rounds,
            "cpus": os.cpu_count(), "load_avg_1m_before": load0, "load_avg_1m_after": os.getloadavg()[0],
            "s_per_capture_median": {m: round(statistics.median(v), 3) for m, v in runs.items()},
            "s_per_capture_rounds": {m: [round(x, 3) for x in v] for m, v in runs.items()},
            "cpu_s_per_capture_median": {m: round(statistics.median(v), 3) for m, v in cpu.items()},
            "ratio_floor_over_pack_1core": round(ratio("floor", "pack1core"), 3),
            "ratio_floor_heap_over_pack_1core": round(ratio("floor_heap", "pack1core"), 3),
            "cpu_ratio_floor_over_pack_1core": round(statistics.median(
                x / y for x, y in zip(cpu["floor"], cpu["pack1core"], strict=True)), 3),
            "cpu_ratio_floor_heap_over_pack_1core": round(statistics.median(
                x / y for x, y in zip(cpu["floor_heap"], cpu["pack1core"], strict=True)), 3),
            "speedup_w2_over_w1": round(ratio("pack_w1", "pack_w2"), 3),
            "cpu_ratio_w2_over_w1": round(statistics.median(
                x / y for x, y in zip(cpu["pack_w2"], cpu["pack_w1"], strict=True)), 3),
            "pack_import_cpu_s_median": round(statistics.median(imports), 3),
        }
        if "floor_pair" in runs:
            # Per-capture CPU of the floor while the other core runs the same floor, over the floor
            # alone: above 1, two busy cores slow each other (shared caches, memory bandwidth, a
            # hypervisor's sibling threads), and --workers 2 can be at most 2 / this faster than one.
            infl = statistics.median(x / y for x, y in zip(cpu["floor_pair"], cpu["floor"], strict=True))
            out["cpu_inflation_two_busy_cores"] = round(infl, 3)
            out["speedup_w2_ceiling"] = round(2 / infl, 3)
        if args.baseline_tree:
            out["baseline_tree"] = args.baseline_tree
            out["speedup_pack1core_over_baseline_tree"] = round(ratio("pack1core_base", "pack1core"), 3)
            out["cpu_ratio_pack1core_over_baseline_tree"] = round(statistics.median(
                x / y for x, y in zip(cpu["pack1core"], cpu["pack1core_base"], strict=True)), 3)
            # --workers 2 of both trees in the same rounds; the baseline's speed-up is taken over this
            # tree's --workers 1 (the same code wherever one thread's path is unchanged: say so).
            out["speedup_w2_over_baseline_tree"] = round(ratio("pack_w2_base", "pack_w2"), 3)
            out["cpu_ratio_w2_over_baseline_tree"] = round(statistics.median(
                x / y for x, y in zip(cpu["pack_w2"], cpu["pack_w2_base"], strict=True)), 3)
            out["speedup_w2_baseline_tree_over_w1"] = round(ratio("pack_w1", "pack_w2_base"), 3)
        out["goals"] = {"pack_1core_ge_0.8_floor": out["ratio_floor_over_pack_1core"] >= 0.8,
                        "w2_ge_1.5x_w1": out["speedup_w2_over_w1"] >= 1.5}
        print(json.dumps(out, indent=2))
    finally:  # each pack is 0.4 GB: never leave them on a shared disk
        for d in root.glob("ds-*"):
            shutil.rmtree(d, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
