"""``PatchDataset``: random training patches from the cached per-capture arrays (``data.py``).

Sample ``i`` is drawn by a generator seeded with ``(seed, rank, i)``, so the patch stream depends
only on the config and the sample index: the same run is the same on a re-run, and a resumed run
continues the stream exactly (``IndexRangeSampler`` starts where the checkpoint left off),
whatever the number of DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from hzsr.baseline_model.data import load_stack


class PatchDataset(Dataset):
    """Random ``patch x patch`` crops; item = (x: 3xPxP, y_tgt: 1xPxP, mask: 1xPxP) float32.

    Args:
        paths: cached ``.npy`` stacks, one per capture (this rank's share of the split).
        patch: side in pixels.
        seed, rank: seed the per-sample generator.
        min_valid: redraw (up to 8 times) a patch whose loss-mask coverage is below this.
        length: ``len()``, the patches of one epoch (``data.patches_per_epoch``), so ``shuffle=True``
            works; any index is valid, and training draws past it with ``IndexRangeSampler``.
        weights: per-capture sampling weights (``data.kind_weights`` resolved per capture); None =
            uniform, drawn exactly as before weights existed.
    """

    def __init__(self, paths: list[Path], patch: int, seed: int, rank: int = 0, min_valid: float = 0.5,
                 length: int = 2048, weights: list[float] | None = None):
        if not paths:
            raise ValueError("no captures to draw patches from")
        self.paths = [str(p) for p in paths]
        self.patch = int(patch)
        self.seed, self.rank, self.min_valid = int(seed), int(rank), float(min_valid)
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.length = int(length)
        self._cum: np.ndarray | None = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (len(self.paths),) or (w < 0).any() or w.sum() <= 0:
                raise ValueError(f"weights must be {len(self.paths)} non-negative values, not all 0")
            self._cum = np.cumsum(w / w.sum())
        self._arrays: dict[int, np.ndarray] = {}  # memory maps, opened lazily in each worker

    def __len__(self) -> int:
        # Finite, so DataLoader(shuffle=True) works (2**62 made its permutation crash); the training
        # loop's sampler draws indices beyond it, each a patch of the same seeded stream.
        return self.length

    def _array(self, k: int) -> np.ndarray:
        a = self._arrays.get(k)
        if a is None:
            a = self._arrays[k] = load_stack(self.paths[k])
        return a

    def _pick(self, rng: np.random.Generator) -> int:
        """A capture index: uniform, or by inverse CDF of the weights (``u`` in [0, 1))."""
        if self._cum is None:
            return int(rng.integers(len(self.paths)))
        return min(int(np.searchsorted(self._cum, rng.random(), side="right")), len(self.paths) - 1)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.rank, int(index)])
        p = self.patch
        best = None
        for _ in range(8):
            k = self._pick(rng)
            a = self._array(k)
            _, h, w = a.shape
            if h < p or w < p:
                raise ValueError(f"{self.paths[k]}: {w}x{h} is smaller than the {p}px patch")
            y, x = int(rng.integers(h - p + 1)), int(rng.integers(w - p + 1))
            crop = np.asarray(a[:, y : y + p, x : x + p], dtype=np.float32)
            cover = float(crop[4].mean())
            if best is None or cover > best[0]:
                best = (cover, crop)
            if cover >= self.min_valid:
                break
        crop = best[1]
        if rng.random() < 0.5:
            crop = crop[:, :, ::-1]
        t = torch.from_numpy(np.ascontiguousarray(crop))
        return t[:3], t[3:4], t[4:5]


class IndexRangeSampler(Sampler[int]):
    """Yields ``start, start + 1, ..., start + count - 1``: sample indices for a (resumed) run."""

    def __init__(self, start: int, count: int):
        self.start, self.count = int(start), int(count)

    def __iter__(self):
        return iter(range(self.start, self.start + self.count))

    def __len__(self) -> int:
        return self.count
