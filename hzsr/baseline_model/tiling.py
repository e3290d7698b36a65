"""Run the fusion UNet over a large image in overlapping tiles, so peak memory is bounded.

The image is cut into ``tile x tile`` cores. Each core is run with a ``halo`` of context on every
side (clipped at the image border, where the missing context is reflected instead), and only the
core of the result is kept. Memory is then O(tile^2), whatever the image size; the halo makes the
seams invisible: the UNet's effective receptive field is a few tens of pixels, so with the default
32-pixel halo a tiled result differs from a whole-image run by well under one 8-bit level
(``tests/baseline_model/test_tiling.py`` measures it).

Inputs are produced per tile by a callback, so the caller never has to materialise full-size float
inputs either (the pipeline warps the reference and samples its low-resolution maps per tile).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def tile_cores(height: int, width: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(y0, y1, x0, x1)`` cores that cover the image, row by row."""
    if tile < 16:
        raise ValueError(f"tile must be >= 16, got {tile}")
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            yield y0, min(y0 + tile, height), x0, min(x0 + tile, width)


def n_tiles(height: int, width: int, tile: int) -> int:
    return -(-height // tile) * -(-width // tile)


def run_tiled(
    model: Any,
    height: int,
    width: int,
    make_input: Callable[[int, int, int, int], np.ndarray],
    consume: Callable[[int, int, int, int, np.ndarray, tuple[int, int, int, int]], None],
    *,
    tile: int = 512,
    halo: int = 32,
    multiple: int = 16,
    device: str | torch.device = "cpu",
    workers: int = 1,
) -> int:
    """Run ``model`` tile by tile.

    Args:
        model: maps Nx3xHxW to Nx1xHxW; H and W must be multiples of ``multiple``. A torch module
            (tensors in and out), or a runner with ``takes_numpy`` true (``runtime._NumpyRunner``:
            numpy arrays in and out), for which the tiles are padded in numpy and torch is never
            imported (numpy's ``reflect`` and ``edge`` padding copy the same pixels as torch's
            ``reflect`` and ``replicate``).
        height, width: the image size.
        make_input: ``(y0, y1, x0, x1) -> CxhxW float32`` for any window inside the image.
        consume: called per core with ``(y0, y1, x0, x1, y_out, window)``: ``y_out`` is the model's
            output cropped to the core (float32, h x w), ``window`` the expanded window it came from.
        tile: core size in pixels.
        halo: context pixels on each side of a core.
        multiple: the model's size multiple; windows are reflect-padded up to it.
        device: where the model runs.
        workers: tiles in flight at once, each in its own thread (``model``, ``make_input`` and
            ``consume`` must then be thread-safe); 1 runs them in order in the caller's thread.

    Returns:
        the number of tiles run.
    """
    numpy_model = bool(getattr(model, "takes_numpy", False))
    if hasattr(model, "eval"):
        model.eval()

    def run_model(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
        """The model on the window ``x`` (CxhxW) padded by ``pads`` (top, bottom, left, right): 1xHxW."""
        pt, pb, pl, pr = pads
        reflect = max(pt, pb) < x.shape[1] and max(pl, pr) < x.shape[2]
        if numpy_model:
            x = np.ascontiguousarray(x)[None]
            if pt or pb or pl or pr:
                x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), mode="reflect" if reflect else "edge")
            return model(x)[0]
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():  # thread-local: entered in each worker
            t = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(0).to(device)
            if pt or pb or pl or pr:
                t = F.pad(t, (pl, pr, pt, pb), mode="reflect" if reflect else "replicate")
            return model(t)[0].float().cpu().numpy()

    def one(y0: int, y1: int, x0: int, x1: int) -> None:
        wy0, wy1 = max(0, y0 - halo), min(height, y1 + halo)
        wx0, wx1 = max(0, x0 - halo), min(width, x1 + halo)
        x = make_input(wy0, wy1, wx0, wx1)
        # Reflect where the image ends (as the image border would), then pad to the multiple.
        pt, pb = halo - (y0 - wy0), halo - (wy1 - y1)
        pl, pr = halo - (x0 - wx0), halo - (wx1 - x1)
        h, w = x.shape[1] + pt + pb, x.shape[2] + pl + pr
        pb += -h % multiple
        pr += -w % multiple
        out = run_model(x, (pt, pb, pl, pr))[0]
        cy, cx = halo, halo
        core = out[cy : cy + (y1 - y0), cx : cx + (x1 - x0)]
        consume(y0, y1, x0, x1, core, (wy0, wy1, wx0, wx1))

    cores = list(tile_cores(height, width, tile))
    if workers <= 1:
        for c in cores:
            one(*c)
        return len(cores)
    # Whole tiles in parallel: each worker warps, runs the model and blends its own tile, so the
    # numpy/OpenCV work (which releases the GIL) overlaps the network instead of waiting for it.
    # Tiles are independent and write disjoint cores, so the result is the sequential one.
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hzsr-tile") as pool:
        for f in [pool.submit(one, *c) for c in cores]:
            f.result()
    return len(cores)
