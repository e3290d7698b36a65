"""Benchmark: what checking every pixel read costs, Fletcher-32 per chunk against sha256 on first read.

A damaged shard must never be read as pixels. Two ways to check, both measured on the same
full-resolution frames (a simulated 4000x3000 triplet, the default codec ``DEFAULT_CODEC``
(``blosc-lz4`` when docs/dataset.md's figures were taken), the shard's own 125x125 tiles),
interleaved round by round, medians over the rounds:

- **fletcher32**: HDF5's per-chunk Fletcher-32 filter; every chunk a read touches is checked as
  it is decoded, patch reads included;
- **sha256 on first read**: the array's sha256 (stored in the shard since schema 1) is compared
  the first time a frame is read; a patch read must then read (and hash) the whole frame once.

Figures: random 256x256 patch reads per second (warm, one process), whole-frame reads per second,
bytes on disk, and for sha256-on-first-read the cost of the first touch of a frame in patch reads.
Each is a ratio against the unchecked read in the same run. Prints JSON; ``--quick`` for
1000x750 frames.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hzsr.dataset.codecs import DEFAULT_CODEC, _codec_kwargs, chunk_shape, register_plugins
from hzsr.dataset.shard import array_sha256, decode_jpeg
from hzsr.sim.profiles import FULL_RES
from hzsr.sim.simsession import SimConfig, simulate_session

PATCH = 256


def _write(path: Path, arrays: list[np.ndarray], fletcher32: bool) -> None:
    import h5py

    kw = _codec_kwargs(DEFAULT_CODEC)  # the codec alone; fletcher32 is the variable here
    with h5py.File(path, "w") as h5:
        for k, a in enumerate(arrays):
            h5.create_dataset(str(k), data=a, chunks=chunk_shape(*a.shape[:2]), fletcher32=fletcher32, **kw)


def _patch_rate(path: Path, picks: list[tuple[int, int, int]]) -> float:
    import h5py

    with h5py.File(path, "r", rdcc_nbytes=8 << 20, rdcc_nslots=10007) as h5:
        ds = [h5[k] for k in sorted(h5, key=int)]
        for k, y, x in picks[:50]:
            ds[k][y:y + PATCH, x:x + PATCH]
        t0 = time.perf_counter()
        for k, y, x in picks:
            ds[k][y:y + PATCH, x:x + PATCH]
        return len(picks) / (time.perf_counter() - t0)


def _whole_rate(path: Path, n: int, sha: bool) -> float:
    import h5py

    with h5py.File(path, "r", rdcc_nbytes=0) as h5:
        ds = [h5[k] for k in sorted(h5, key=int)]
        t0 = time.perf_counter()
        for i in range(n):
            a = ds[i % len(ds)][()]
            if sha:
                array_sha256(a)
        return n / (time.perf_counter() - t0)


def main(quick: bool = False, rounds: int = 3, reads: int = 1500) -> dict:
    cv2.setNumThreads(1)
    register_plugins()
    size = (1000, 750) if quick else FULL_RES
    rng = np.random.default_rng(0)
    out: dict = {"benchmark": "dataset_checked_reads", "size": list(size), "codec": DEFAULT_CODEC,
                 "patch": PATCH, "rounds": rounds, "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(dir=os.environ.get("HZSR_BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        sess = simulate_session(tmp / "sess", SimConfig(captures=1, seed=11, size=size), progress=False)
        arrays = [decode_jpeg(p) for p in sorted(sess.glob("captures/*/*.jpg"))]
        files = {"plain": tmp / "plain.h5", "fletcher32": tmp / "f32.h5"}
        _write(files["plain"], arrays, False)
        _write(files["fletcher32"], arrays, True)
        out["bytes"] = {k: p.stat().st_size for k, p in files.items()}
        h, w = arrays[0].shape[:2]
        r = {k: [] for k in ("patch_plain", "patch_f32", "whole_plain", "whole_sha", "whole_f32")}
        for _ in range(rounds):
            picks = [(int(rng.integers(len(arrays))), int(rng.integers(0, h - PATCH)), int(rng.integers(0, w - PATCH)))
                     for _ in range(reads)]
            r["patch_plain"].append(_patch_rate(files["plain"], picks))
            r["patch_f32"].append(_patch_rate(files["fletcher32"], picks))
            r["whole_plain"].append(_whole_rate(files["plain"], 6, False))
            r["whole_sha"].append(_whole_rate(files["plain"], 6, True))
            r["whole_f32"].append(_whole_rate(files["fletcher32"], 6, False))
    m = {k: statistics.median(v) for k, v in r.items()}
    out["patches_per_s"] = {"unchecked": round(m["patch_plain"], 1), "fletcher32": round(m["patch_f32"], 1)}
    out["whole_frames_per_s"] = {"unchecked": round(m["whole_plain"], 2), "sha256": round(m["whole_sha"], 2),
                                 "fletcher32": round(m["whole_f32"], 2)}
    out["ratio_patch_fletcher32_to_unchecked"] = round(m["patch_f32"] / m["patch_plain"], 3)
    out["ratio_whole_fletcher32_to_unchecked"] = round(m["whole_f32"] / m["whole_plain"], 3)
    out["ratio_whole_sha256_to_unchecked"] = round(m["whole_sha"] / m["whole_plain"], 3)
    # sha256 on first read, for a patch reader: the first patch of a frame costs a whole read + hash.
    out["sha256_first_touch_in_patch_reads"] = round(m["patch_plain"] / m["whole_sha"], 1)
    out["bytes_overhead_fletcher32"] = round(out["bytes"]["fletcher32"] / out["bytes"]["plain"] - 1, 5)
    out["loadavg_end"] = os.getloadavg()[0]
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1000x750 frames instead of 4000x3000")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    a = ap.parse_args()
    print(json.dumps(main(a.quick, a.rounds), indent=2))
