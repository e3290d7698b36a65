"""Compression codecs for the image arrays of a shard.

``none``, ``lzf`` and ``gzip`` are built into h5py; ``lz4`` (HDF5's registered LZ4 filter),
``blosc-lz4``, ``blosc2-lz4`` and ``blosc2-zstd`` come from hdf5plugin, which registers its
filters with HDF5 on import (readers import it too, so a shard written with a plugin codec opens
anywhere hdf5plugin is installed). The default is what
``bench/dataset.py`` measured best for patch reads per second per byte on disk
(``docs/benchmarks.md``): ``none`` since issue 19's seventh pack pass. History: ``blosc-lz4`` from
issue 12; ``none`` for a few hours of issue 19 on one run; back to ``blosc-lz4`` when six runs on
the same output put it ahead of ``none`` per byte (1.17x fewer bytes; ``none``'s patch reads
0.87-1.16x its own); ``none`` again when seven runs on today's output put ``none`` ahead of ``blosc-lz4`` per
byte in six (patch reads 1.06-1.32x faster, median 1.20x, which outweighs the 1.17x bytes), so
``blosc-lz4`` no longer wins the criterion, and the issue's rule keeps a default only while it wins.
Over the thirteen runs the two are even per byte (7 to 6): ``none`` also packs with no compression
on the writer's thread. ``--compression blosc-lz4`` stores 15 % fewer bytes where disk matters
more. Shards written with any codec stay readable, as the codec is recorded in each array's HDF5
filter pipeline, and a data set may mix them.
"""

from __future__ import annotations

from typing import Any

from hzsr.core.errors import ConfigError

CODECS = ("none", "lzf", "gzip", "lz4", "blosc-lz4", "blosc2-lz4", "blosc2-zstd")
DEFAULT_CODEC = "none"
#: Target tile of an image array: about 128x128 px, so a random 256x256 patch touches 9 tiles
#: (442 KiB decoded) rather than whole rows of a row-chunked layout.
CHUNK_HW = (128, 128)


def tile(n: int, target: int) -> int:
    """The tile length closest to ``target`` that covers ``n`` with the fewest padded pixels.

    ``ceil(n / ceil(n / target))``: 3000 -> 125 (24 tiles, no padding) where 128 would pad the
    last tile to 3072 and store 2.4% more bytes uncompressed.
    """
    if n <= target:
        return max(n, 1)
    k = -(-n // target)
    return -(-n // k)


def chunk_shape(h: int, w: int) -> tuple[int, int, int]:
    return tile(h, CHUNK_HW[0]), tile(w, CHUNK_HW[1]), 3


def filter_kwargs(name: str) -> dict[str, Any]:
    """``h5py.Group.create_dataset`` keyword arguments for codec ``name``, with Fletcher-32.

    Every image array also gets HDF5's per-chunk Fletcher-32 checksum (schema 2): each chunk a
    read touches is checked as it is decoded, so a flipped byte is an error, never pixels, at a
    cost ``bench/dataset_checked.py`` measures (docs/dataset.md, Checked reads).
    """
    return {**_codec_kwargs(name), "fletcher32": True}


def _codec_kwargs(name: str) -> dict[str, Any]:
    if name == "none":
        return {}
    if name == "lzf":
        return {"compression": "lzf"}
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4}
    if name == "lz4":
        import hdf5plugin

        return dict(hdf5plugin.LZ4())
    if name == "blosc-lz4":
        import hdf5plugin

        # clevel 3, not 5: 2.3 GB/s against 1.8 on one core (0.048 against 0.059 s per 12 MP capture)
        # for 1.2 % more bytes (``python bench/pack.py --codec-speed``, docs/benchmarks.md). The
        # level is the writer's only: a reader needs no setting, old shards read as before.
        return dict(hdf5plugin.Blosc(cname="lz4", clevel=3, shuffle=hdf5plugin.Blosc.NOSHUFFLE))
    if name in ("blosc2-lz4", "blosc2-zstd"):
        import hdf5plugin

        cname = name.split("-", 1)[1]
        return dict(hdf5plugin.Blosc2(cname=cname, clevel=5 if cname == "lz4" else 3,
                                      filters=hdf5plugin.Blosc2.NOFILTER))
    raise ConfigError(f"unknown codec {name!r}; known: {', '.join(CODECS)}", field="--compression")


def register_plugins() -> None:
    """Make plugin filters (Blosc2) readable; cheap after the first call."""
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:  # pragma: no cover - hdf5plugin is a dependency; only plugin codecs need it
        pass
