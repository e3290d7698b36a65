"""Benchmark: HDF5 shards at full resolution (4000x3000), for every codec.

For each codec it packs the same simulated session (a few 12 MP triplets) and measures:
- pack throughput in MB/s of stored bytes, against ``cp`` of the same shard bytes plus an fsync
  (the pack fsyncs too), in the same run: ratio pack / cp (goal >= 0.5);
- random 256x256 patch reads per second from one process, warm cache, against decoding the JPEG
  for each sample (bytes already in memory) and cropping: ratio (goals >= 1000/s, >= 30x);
- bytes on disk per capture;
- where pack time goes: the store half alone (compress, write, fsync already-decoded arrays)
  against ``cp``, and JPEG decode + sha256 per capture.
Measurements are interleaved across codecs, round by round, so a shared machine's load falls on
all of them alike. The default codec is the one with the most patch reads per second per byte on disk. Figures are
medians; prints JSON. ``--captures N`` (default 3), ``--quick`` for 1000x750 frames.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hzsr.dataset.codecs import CODECS, DEFAULT_CODEC
from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.dataset.reader import ShardReader
from hzsr.dataset.shard import array_sha256, decode_jpeg
from hzsr.sim.profiles import FULL_RES
from hzsr.sim.simsession import SimConfig, simulate_session

PATCH = 256


def _dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*.h5"))


def _cp_seconds(src: Path, dst: Path) -> float:
    """``cp`` of the shard files, then fsync each copy and the folder (what pack guarantees)."""
    dst.mkdir(parents=True)
    files = sorted(src.glob("*.h5"))
    t0 = time.perf_counter()
    subprocess.run(["cp", *map(str, files), str(dst)], check=True)
    for f in files:
        fd = os.open(dst / f.name, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    t = time.perf_counter() - t0
    shutil.rmtree(dst)
    return t


def _patch_rate(ds: Path, n: int, rng: np.random.Generator) -> float:
    r = ShardReader(ds)
    ids = r.ids()
    h, w = r.shape(ids[0], "main_W")[:2]
    picks = [(ids[rng.integers(len(ids))], ("main_W", "main_T", "ref_T")[rng.integers(3)],
              int(rng.integers(0, h - PATCH)), int(rng.integers(0, w - PATCH))) for _ in range(n)]
    for cid, slot, y, x in picks[: n // 4]:  # warm the OS cache and the handles
        r.read_patch(cid, slot, y, x, PATCH, PATCH)
    rates = []
    for k in range(3):
        part = picks[k * n // 3:(k + 1) * n // 3]
        t0 = time.perf_counter()
        for cid, slot, y, x in part:
            r.read_patch(cid, slot, y, x, PATCH, PATCH)
        rates.append(len(part) / (time.perf_counter() - t0))
    r.close()
    return statistics.median(rates)


def _jpeg_rate(session: Path, n: int, rng: np.random.Generator) -> float:
    blobs = [np.fromfile(p, np.uint8) for p in sorted(session.glob("captures/*/*.jpg"))]
    ts = []
    for _ in range(n):
        b = blobs[rng.integers(len(blobs))]
        t0 = time.perf_counter()
        img = cv2.cvtColor(cv2.imdecode(b, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        y, x = int(rng.integers(0, img.shape[0] - PATCH)), int(rng.integers(0, img.shape[1] - PATCH))
        np.ascontiguousarray(img[y:y + PATCH, x:x + PATCH])
        ts.append(time.perf_counter() - t0)
    return 1.0 / statistics.median(ts)


def _store_seconds(arrays: list[np.ndarray], path: Path, codec: str) -> float:
    """Only the storing half of a pack: compress and write decoded arrays, fsync (no JPEG decode)."""
    import h5py

    from hzsr.dataset.codecs import chunk_shape, filter_kwargs, register_plugins

    register_plugins()
    kw = filter_kwargs(codec)
    t0 = time.perf_counter()
    with h5py.File(path, "w") as h5:
        for k, a in enumerate(arrays):
            h5.create_dataset(str(k), data=a, chunks=chunk_shape(*a.shape[:2]), **kw)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    t = time.perf_counter() - t0
    path.unlink()
    return t


def main(captures: int = 3, quick: bool = False, codecs: tuple[str, ...] = CODECS, reads: int = 3000,
         rounds: int = 3) -> dict:
    cv2.setNumThreads(1)  # one process, one core: the per-process figures the goals name
    rng = np.random.default_rng(0)
    size = (1000, 750) if quick else FULL_RES
    out: dict = {"benchmark": "dataset_shards", "size": list(size), "captures": captures, "patch": PATCH,
                 "cpus": os.cpu_count(), "codecs": {}}
    with tempfile.TemporaryDirectory(dir=os.environ.get("HZSR_BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        sess = simulate_session(tmp / "sess", SimConfig(captures=captures, seed=11, size=size), progress=False)
        jpeg_bytes = sum(p.stat().st_size for p in sess.glob("captures/*/*.jpg"))
        raw = captures * size[0] * size[1] * 3 * 3
        out["jpeg_bytes_per_capture"] = jpeg_bytes // captures
        out["raw_bytes_per_capture"] = raw // captures
        arrays = [decode_jpeg(p) for p in sorted(sess.glob("captures/*/*.jpg"))]
        res: dict[str, dict] = {c: {"pack": [], "cp": [], "store": [], "rate": []} for c in codecs}
        sizes = {}
        # Every measurement is interleaved across codecs, round by round, so that the load of a
        # shared machine falls on all of them alike; figures are medians over the rounds.
        for _ in range(rounds):
            for codec in codecs:
                ds = tmp / f"ds-{codec}"
                if ds.exists():
                    shutil.rmtree(ds)
                t0 = time.perf_counter()
                pack_dataset([sess], ds, PackConfig(compression=codec, shard_size="2", progress=False))
                res[codec]["pack"].append(time.perf_counter() - t0)
                sizes[codec] = _dir_bytes(ds / "shards")
                res[codec]["cp"].append(_cp_seconds(ds / "shards", tmp / "cp"))
                res[codec]["store"].append(_store_seconds(arrays, tmp / "store.h5", codec))
        jpeg_rates = []
        for _ in range(rounds):
            jpeg_rates.append(_jpeg_rate(sess, 5, rng))
            for codec in codecs:
                res[codec]["rate"].append(_patch_rate(tmp / f"ds-{codec}", reads // rounds, rng))
        jpeg_rate = statistics.median(jpeg_rates)
        out["jpeg_decode_per_sample_per_s"] = round(jpeg_rate, 2)
        for codec in codecs:
            m = {k: statistics.median(v) for k, v in res[codec].items()}
            stored = sizes[codec]
            per_cap = stored / captures
            out["codecs"][codec] = {
                "bytes_per_capture": int(per_cap),
                "mb_per_capture": round(per_cap / 1e6, 2),
                "ratio_raw_to_stored": round(raw / stored, 3),
                "pack_s": round(m["pack"], 2),
                "pack_stored_mb_s": round(stored / m["pack"] / 1e6, 1),
                "pack_raw_mb_s": round(raw / m["pack"] / 1e6, 1),
                "cp_stored_mb_s": round(stored / m["cp"] / 1e6, 1),
                "ratio_pack_to_cp": round(m["cp"] / m["pack"], 3),
                "store_only_stored_mb_s": round(stored / m["store"] / 1e6, 1),
                "ratio_store_only_to_cp": round(m["cp"] / m["store"], 3),
                "patches_per_s": round(m["rate"], 1),
                "ratio_patches_to_jpeg": round(m["rate"] / jpeg_rate, 1),
                "patches_per_s_per_mb_stored": round(m["rate"] / (per_cap / 1e6), 2),
            }
        # Where a pack's time goes, for the default codec: decode + hash vs store.
        t0 = time.perf_counter()
        for p in sorted(sess.glob("captures/*/*.jpg")):
            array_sha256(decode_jpeg(p))
        out["decode_and_hash_s_per_capture"] = round((time.perf_counter() - t0) / captures, 3)
    best = max(out["codecs"], key=lambda c: out["codecs"][c]["patches_per_s_per_mb_stored"])
    d = out["codecs"].get(DEFAULT_CODEC, out["codecs"][best])
    out["best_by_patches_per_s_per_byte"] = best
    out["default_codec"] = DEFAULT_CODEC
    out["default_is_best"] = best == DEFAULT_CODEC
    out["goals"] = {"patches_per_s": 1000, "ratio_patches_to_jpeg": 30, "ratio_pack_to_cp": 0.5}
    out["meets_goals"] = {"patches_per_s": d["patches_per_s"] >= 1000,
                          "ratio_patches_to_jpeg": d["ratio_patches_to_jpeg"] >= 30,
                          "ratio_pack_to_cp": d["ratio_pack_to_cp"] >= 0.5}
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", type=int, default=3, help="full-resolution captures to pack (default 3)")
    ap.add_argument("--quick", action="store_true", help="1000x750 frames instead of 4000x3000")
    ap.add_argument("--codecs", default=",".join(CODECS), help="comma-separated codecs (default all)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement (default 3)")
    a = ap.parse_args()
    print(json.dumps(main(a.captures, a.quick, tuple(a.codecs.split(",")), rounds=a.rounds), indent=2))
