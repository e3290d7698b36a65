"""``ShardReader``: random access to a packed data set by capture id, whole triplets or patches.

Files are opened lazily, on the first read that needs them, and never in ``__init__``; a reader
that finds itself in a new process (a forked DataLoader worker) drops the handles it inherited
and opens its own. Pickling drops open handles, so a reader can be sent to spawned workers.
Torch-free: the ``Dataset`` adapter lives in ``hzsr.baseline_model``.

Every read of pixels is checked: in schema 2 shards by HDF5's per-chunk Fletcher-32 filter as
each chunk is decoded (patch reads included), in schema 1 shards by comparing the array's sha256
the first time the frame is read (a patch read then reads the whole frame once). Damage is a
``DatasetError`` whose one line names the shard, the capture and the frame, never pixels.

Example::

    r = ShardReader("data/hzsr-v1")
    for cid in r.ids("train"):
        patch = r.read_patch(cid, "main_W", y=100, x=200, h=256, w=256)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hzsr.core.errors import DatasetError
from hzsr.core.records import read_json
from hzsr.dataset.codecs import register_plugins
from hzsr.dataset.manifest import MANIFEST, load_manifest
from hzsr.dataset.schema import SLOTS
from hzsr.dataset.truth_arrays import CaptureTruth

SPLITS = "splits.csv"
SUBSET = "subset.json"


@dataclass
class CaptureSample:
    """One capture: three RGB uint8 (H, W, 3) frames and their metadata.

    ``ref_T`` is None for captures without a reference phone (``meta["has_reference"]`` False).
    """

    capture_id: str
    main_W: np.ndarray
    main_T: np.ndarray
    ref_T: np.ndarray | None
    meta: dict[str, Any]


class ShardReader:
    """Random access to a data set folder (or a curated subset folder).

    Args:
        dataset_dir: folder with ``manifest.csv`` and ``shards/``; or a subset folder made by
            ``hzsr dataset curate`` (its ``subset.json`` names the data set holding the shards).
        chunk_cache_bytes: HDF5 chunk cache per open file; a 256x256 patch of 128x128 tiles
            needs 9 tiles (442 KiB).
    """

    def __init__(self, dataset_dir: str | Path, chunk_cache_bytes: int = 8 << 20):
        self.root = Path(dataset_dir)
        self.chunk_cache_bytes = int(chunk_cache_bytes)
        self._files: dict[str, Any] = {}
        self._dsets: dict[tuple[str, str], Any] = {}  # open dataset handles: lookups cost ~50 us each
        self._pid = os.getpid()
        self._manifest: pd.DataFrame | None = None
        self._shard_of: dict[str, str] | None = None
        self._splits: pd.DataFrame | None = None
        self._meta_cache: dict[str, dict[str, Any]] = {}
        self._shard_root: Path | None = None
        self._verified: set[tuple[str, str]] = set()  # (capture, slot) whose sha256 matched (schema 1 shards)

    # -- pickling: never carry open HDF5 handles into another process ---------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_files"] = {}
        state["_dsets"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def close(self) -> None:
        for f in self._files.values():
            try:
                f.close()
            except Exception:  # noqa: BLE001 - closing a dead handle must not mask the caller's error
                pass
        self._files = {}
        self._dsets = {}

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.manifest)

    # -- index ----------------------------------------------------------------------------------
    @property
    def shard_root(self) -> Path:
        """Folder holding ``shards/``: the data set itself, or the one a subset points at."""
        if self._shard_root is None:
            sub = self.root / SUBSET
            if sub.is_file():
                info = read_json(sub)
                if not isinstance(info, dict) or "dataset" not in info:
                    raise DatasetError("missing key", file=sub, field="dataset")
                self._shard_root = (self.root / info["dataset"]).resolve()
            else:
                self._shard_root = self.root
        return self._shard_root

    @property
    def manifest(self) -> pd.DataFrame:
        """The manifest (one row per capture), loaded once."""
        if self._manifest is None:
            self._manifest = load_manifest(self.root, MANIFEST)
            self._shard_of = dict(zip(self._manifest["capture_id"], self._manifest["shard"], strict=True))
        return self._manifest

    @property
    def splits(self) -> pd.DataFrame | None:
        """``splits.csv`` (capture_id, split, group) when present, else None."""
        if self._splits is None:
            for base in (self.root, self.shard_root):
                p = base / SPLITS
                if p.is_file():
                    from hzsr.dataset.splits import load_splits

                    self._splits = load_splits(p)
                    break
        return self._splits

    def ids(self, split: str | None = None) -> list[str]:
        """Capture ids in manifest order; with ``split``, only those assigned to it in splits.csv."""
        ids = self.manifest["capture_id"].tolist()
        if split is None:
            return ids
        sp = self.splits
        if sp is None:
            raise DatasetError("no splits.csv (run `hzsr dataset split`)", file=self.root / SPLITS)
        known = set(sp["split"])
        if split not in known:
            raise DatasetError(f"unknown split {split!r}; known: {', '.join(sorted(known))}",
                               file=self.root / SPLITS, field="split")
        chosen = set(sp.loc[sp["split"] == split, "capture_id"])
        return [i for i in ids if i in chosen]

    # -- files ----------------------------------------------------------------------------------
    def _h5(self, shard: str):
        import h5py

        if os.getpid() != self._pid:
            # Inherited through fork: the parent's HDF5 handles are not ours to use (or close).
            self._files = {}
            self._dsets = {}
            self._pid = os.getpid()
        f = self._files.get(shard)
        if f is None:
            register_plugins()
            path = self.shard_root / "shards" / shard
            try:
                f = h5py.File(path, "r", rdcc_nbytes=self.chunk_cache_bytes, rdcc_nslots=10007)
            except FileNotFoundError:
                raise DatasetError("shard not found", file=path, unreadable=True) from None
            except OSError as exc:
                raise DatasetError(f"cannot open shard: {exc}", file=path, unreadable=True) from None
            self._files[shard] = f
        return f

    def shard_of(self, capture_id: str) -> str:
        _ = self.manifest  # loads the index
        assert self._shard_of is not None
        try:
            return self._shard_of[capture_id]
        except KeyError:
            raise DatasetError(f"unknown capture {capture_id!r}", file=self.root / MANIFEST,
                               field="capture_id") from None

    def _group(self, capture_id: str):
        shard = self.shard_of(capture_id)
        f = self._h5(shard)
        try:
            return f["captures"][capture_id]
        except KeyError:
            raise DatasetError(f"capture {capture_id!r} not in shard", file=self.shard_root / "shards" / shard,
                               field="captures") from None
        except (OSError, ValueError, RuntimeError) as exc:  # damaged HDF5 metadata
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DatasetError(f"cannot read the capture, the shard is damaged ({first}); run `hzsr dataset "
                               f"verify {self.shard_root}`", file=self.shard_root / "shards" / shard,
                               field=capture_id) from None

    # -- reads ----------------------------------------------------------------------------------
    def meta(self, capture_id: str) -> dict[str, Any]:
        """Metadata only (no pixels): capture fields, ``frames[slot]`` fields, ``sync``, ``qa``."""
        m = self._meta_cache.get(capture_id)
        if m is None:
            from hzsr.dataset.shard import read_meta

            shard = self.shard_of(capture_id)
            self._group(capture_id)
            m = read_meta(self._h5(shard), capture_id, shard)
            self._meta_cache[capture_id] = m
        return m

    def _damaged(self, capture_id: str, slot: str, what: str) -> DatasetError:
        return DatasetError(f"{slot}: {what}; run `hzsr dataset verify {self.shard_root}`",
                            file=self.shard_root / "shards" / self.shard_of(capture_id), field=capture_id)

    def _read_checked(self, capture_id: str, slot: str, d: Any, sel: Any = ()) -> np.ndarray:
        """``d[sel]``, with HDF5's read errors (a failed checksum or decode) as one ``DatasetError``."""
        try:
            return d[sel]
        except (OSError, ValueError, RuntimeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise self._damaged(capture_id, slot, f"cannot read pixels, the shard is damaged ({first})") from None

    def _check_whole(self, capture_id: str, slot: str, d: Any, arr: np.ndarray | None = None) -> np.ndarray | None:
        """Schema 1 frames (no per-chunk checksum): compare the array's sha256 once per reader."""
        if d.fletcher32 or (capture_id, slot) in self._verified:
            return arr
        from hzsr.dataset.shard import array_sha256

        if arr is None:
            arr = self._read_checked(capture_id, slot, d)
        want = d.attrs.get("array_sha256")
        want = want.decode() if isinstance(want, bytes) else want
        if want is None or array_sha256(arr) != want:
            raise self._damaged(capture_id, slot, "pixels differ from their sha256 (image data changed on disk)")
        self._verified.add((capture_id, slot))
        return arr

    def read(self, capture_id: str) -> CaptureSample:
        """The whole triplet; ``ref_T`` is None when the capture has no reference frame.

        Raises:
            DatasetError: a frame is damaged (one line naming shard, capture and frame).
        """
        g = self._group(capture_id)
        arrs: dict[str, np.ndarray | None] = {}
        for s in SLOTS:
            if s not in g:
                arrs[s] = None
                continue
            d = g[s]
            arrs[s] = self._check_whole(capture_id, s, d, self._read_checked(capture_id, s, d))
        return CaptureSample(capture_id, arrs["main_W"], arrs["main_T"], arrs["ref_T"], self.meta(capture_id))

    def truth(self, capture_id: str) -> CaptureTruth | None:
        """The capture's optional ground truth (``pack --truth``; ``truth_arrays``), or None."""
        from hzsr.dataset.truth_arrays import read_truth

        return read_truth(self._group(capture_id), self.shard_root / "shards" / self.shard_of(capture_id), capture_id)

    def read_patch(self, capture_id: str, slot: str, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Pixels ``[y:y+h, x:x+w]`` of one frame, reading only the chunks that cover them."""
        if slot not in SLOTS:
            raise ValueError(f"slot must be one of {SLOTS}, got {slot!r}")
        d = self._dsets.get((capture_id, slot)) if os.getpid() == self._pid else None
        if d is None:
            g = self._group(capture_id)
            if slot not in g:
                raise DatasetError(f"capture {capture_id!r} has no {slot} frame", field=slot)
            d = g[slot]
            self._check_whole(capture_id, slot, d)
            self._dsets[(capture_id, slot)] = d
        H, W = d.shape[:2]
        if h <= 0 or w <= 0 or y < 0 or x < 0 or y + h > H or x + w > W:
            raise ValueError(f"patch y={y} x={x} h={h} w={w} outside {slot} of {W}x{H}")
        return self._read_checked(capture_id, slot, d, np.s_[y:y + h, x:x + w])

    def shape(self, capture_id: str, slot: str) -> tuple[int, int, int]:
        return tuple(self._group(capture_id)[slot].shape)
