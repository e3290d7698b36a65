"""``ShardDataset``: a map-style torch ``Dataset`` over a packed data set's shards, one capture per item.

For researchers who bring their own model: ``len(ds)`` is the number of captures in the split, so
``DataLoader(ds, shuffle=True, num_workers=N)`` works under fork and spawn (the ``ShardReader``
inside opens its files lazily in each worker and pickles without handles). Every pixel read is
checked (``ShardReader``): a damaged shard stops the loader with one line naming shard and capture.

An item is a dict::

    {"capture_id": "sA/c00003",
     "main_W": uint8 tensor 3 x H x W (RGB), "main_T": ..., "ref_T": ... (absent without a reference),
     "meta": the capture's metadata (ShardReader.meta: frames, sync, qa, ...)}

``transform`` (any picklable callable, for spawn) gets that dict with numpy ``H x W x 3`` arrays
instead of tensors, and its return value is the item as it is: crop, augment, convert as you like.
Frames of different captures differ in size, so batching needs a transform that crops (or
``batch_size=1``). ``PatchDataset`` (``patches.py``) is the training loop's own stream of aligned
patches; this is the raw captures.

Example::

    from torch.utils.data import DataLoader
    from hzsr.baseline_model.shard_dataset import ShardDataset, CenterCrop

    ds = ShardDataset("data/hzsr-v1", split="train", transform=CenterCrop(256))
    for batch in DataLoader(ds, batch_size=8, shuffle=True, num_workers=4):
        batch["main_W"]  # uint8 8 x 3 x 256 x 256
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from hzsr.dataset.reader import ShardReader
from hzsr.dataset.schema import SLOTS


class ShardDataset(Dataset):
    """One capture per index, in manifest order, of a split (or of the whole data set).

    Args:
        root: data set (or curated subset) folder.
        split: a split of ``splits.csv``; None for every capture.
        slots: which frames to read (default all three; fewer reads less).
        transform: called with the item dict of numpy arrays; its result is returned as the item.
        with_meta: include ``meta`` in the item (dicts of mixed types do not collate; off for batching).
    """

    def __init__(self, root: str | Path, split: str | None = None, slots: Sequence[str] = SLOTS,
                 transform: Callable[[dict[str, Any]], Any] | None = None, with_meta: bool = True):
        bad = [s for s in slots if s not in SLOTS]
        if bad:
            raise ValueError(f"slots must be among {SLOTS}, got {bad}")
        self.reader = ShardReader(root)
        self.ids = self.reader.ids(split)
        self.slots = tuple(slots)
        self.transform = transform
        self.with_meta = with_meta

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Any:
        if not -len(self.ids) <= index < len(self.ids):
            raise IndexError(f"index {index} out of range for {len(self.ids)} captures")
        cid = self.ids[index]
        sample = self.reader.read(cid)
        item: dict[str, Any] = {"capture_id": cid}
        for s in self.slots:
            arr = getattr(sample, s)
            if arr is not None:
                item[s] = arr
        if self.with_meta:
            item["meta"] = sample.meta
        if self.transform is not None:
            return self.transform(item)
        return {k: (torch.from_numpy(np.ascontiguousarray(v.transpose(2, 0, 1))) if k in SLOTS else v)
                for k, v in item.items()}


class CenterCrop:
    """A picklable transform: the centre ``size x size`` of each frame, as uint8 ``3 x size x size`` tensors.

    Args:
        size: side in pixels (every frame must be at least this large).
    """

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in item.items():
            if k in SLOTS:
                h, w = v.shape[:2]
                if h < self.size or w < self.size:
                    raise ValueError(f"{item['capture_id']}: {k} is {w}x{h}, smaller than the crop {self.size}")
                y, x = (h - self.size) // 2, (w - self.size) // 2
                crop = np.ascontiguousarray(v[y:y + self.size, x:x + self.size].transpose(2, 0, 1))
                out[k] = torch.from_numpy(crop)
            elif k != "meta":
                out[k] = v
        return out
