"""Optional ground-truth arrays of simulated captures in a shard (``hzsr dataset pack --truth``).

The simulator writes each capture's truth beside the session (``<session>.truth/<id>.npz`` and
``<id>.json``; ``hzsr.sim.truth``), where no stage of the toolkit reads it by default. With
``--truth`` the pack reads it for the captures that have it and stores, in the capture's group::

    captures/<id>/truth/ideal_T              uint8  H x W x 3  main W's viewpoint at T's resolution,
                                                               all in focus, noise-free (RGB)
    captures/<id>/truth/valid_ref_T          uint8  H x W      1 where the reference sees the surface
                                                               (0 = truly occluded)
    captures/<id>/truth/defocus_sigma_ref_T  float16 H x W     the reference's true blur sigma, T px
                                                               (defocused: > 1 T px)

on the truth's crop grid (``crop_rect``: W's crop that T sees by the intrinsics, T-sized), each
with its ``array_sha256`` and the pack's codec and Fletcher-32 like the frames. The group's
attributes are the provenance, returned by the reader as ``meta["truth"]``: the npz and json
paths, the npz's sha256, the crop rectangle (``crop_rect_json``) and the capture's truth json
verbatim. Shards without the group are valid; ``dataset verify`` checks the group where it exists.

This module is the whole feature: ``pack`` calls ``attach_truth``, ``shard.write_capture`` calls
``write_truth``, ``verify`` calls ``check_truth``, ``ShardReader.truth`` calls ``read_truth``.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hzsr.core.errors import DatasetError

GROUP = "truth"
#: The stored arrays: name -> (dtype in the shard, channels or 0 for a plane).
ARRAYS: dict[str, tuple[np.dtype, int]] = {
    "ideal_T": (np.dtype(np.uint8), 3),
    "valid_ref_T": (np.dtype(np.uint8), 0),
    "defocus_sigma_ref_T": (np.dtype(np.float16), 0),
}
CROP_RECT_KEYS = ("x0", "y0", "width", "height", "out_width", "out_height")


def truth_files(session_dir: str | Path, capture_id: str) -> tuple[Path, Path]:
    """``<session>.truth/<capture_id>.npz`` and ``.json`` (``hzsr.sim.truth.truth_dir``'s layout;
    the dataset layer may not import the simulator, so the convention is restated here)."""
    d = Path(session_dir)
    d = d.parent / f"{d.name}.truth"
    return d / f"{capture_id}.npz", d / f"{capture_id}.json"


@dataclass
class CaptureTruth:
    """One capture's truth as stored in a shard (arrays in their shard dtypes) and its provenance."""

    arrays: dict[str, np.ndarray]
    crop_rect: dict[str, float]  # hzsr.core.geometry.CropRect's fields (out_width, out_height int)
    provenance: dict[str, Any]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _crop_rect(obj: Any, path: Path) -> dict[str, float]:
    rect = obj.get("crop_rect") if isinstance(obj, dict) else None
    if not isinstance(rect, dict) or any(not isinstance(rect.get(k), (int, float)) or isinstance(rect.get(k), bool)
                                         for k in CROP_RECT_KEYS):
        raise DatasetError(f"expected a mapping with numbers {', '.join(CROP_RECT_KEYS)}", file=path,
                           field="crop_rect")
    return {k: (int(rect[k]) if k.startswith("out_") else float(rect[k])) for k in CROP_RECT_KEYS}


def load_truth(npz: Path, js: Path, frame_hw: tuple[int, int]) -> CaptureTruth:
    """Read and check one capture's truth files; arrays converted to their shard dtypes.

    Args:
        npz: the capture's ``.npz`` (``ideal_T``, ``valid_ref_T``, ``defocus_sigma_ref_T`` needed).
        js: the capture's truth ``.json`` (its ``crop_rect`` is needed).
        frame_hw: main T's height and width: every array must have it.

    Raises:
        DatasetError: an unreadable file or a missing or malformed field, one line naming both.
    """
    try:
        meta = json.loads(js.read_text())
    except FileNotFoundError:
        raise DatasetError("truth json missing beside its npz", file=js, unreadable=True) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read the truth json: {str(exc).splitlines()[0]}", file=js,
                           unreadable=True) from None
    rect = _crop_rect(meta, js)
    try:
        z = np.load(npz, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError(f"cannot read the truth npz: {str(exc).splitlines()[0] or type(exc).__name__}",
                           file=npz, unreadable=True) from None
    arrays: dict[str, np.ndarray] = {}
    with z:
        for name, (dtype, ch) in ARRAYS.items():
            if name not in z.files:
                raise DatasetError(f"array missing (has {', '.join(sorted(z.files)) or 'none'})", file=npz,
                                   field=name)
            try:
                a = z[name]
            except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, zlib.error) as exc:
                raise DatasetError(f"cannot decode the array: {str(exc).splitlines()[0] or type(exc).__name__}",
                                   file=npz, field=name, unreadable=True) from None
            want = (*frame_hw, ch) if ch else tuple(frame_hw)
            if a.shape != want:
                raise DatasetError(f"shape {a.shape}, expected {want} (main T's size)", file=npz, field=name)
            if name == "ideal_T" and a.dtype != np.uint8:
                raise DatasetError(f"dtype {a.dtype}, expected uint8", file=npz, field=name)
            if name == "valid_ref_T" and a.dtype not in (np.bool_, np.uint8):
                raise DatasetError(f"dtype {a.dtype}, expected bool", file=npz, field=name)
            if name == "defocus_sigma_ref_T" and (a.dtype.kind != "f" or not np.isfinite(a).all() or (a < 0).any()):
                raise DatasetError("expected finite non-negative floats", file=npz, field=name)
            arrays[name] = (a != 0).astype(dtype) if name == "valid_ref_T" else a.astype(dtype)
    prov = {"npz": str(npz.resolve()), "npz_sha256": _sha256_file(npz), "json": str(js.resolve()),
            "crop_rect_json": json.dumps(rect, sort_keys=True), "capture_truth_json": json.dumps(meta, sort_keys=True),
            "arrays": list(ARRAYS)}
    return CaptureTruth(arrays, rect, prov)


def attach_truth(captures: list[Any], sessions: dict[str, Any]) -> int:
    """Mark the captures whose session has truth files: ``meta["truth"]`` gets the provenance.

    Runs before any shard is written, so a bad truth file stops the pack with nothing written.
    Returns how many captures carry truth.
    """
    n = 0
    for c in captures:
        npz, js = truth_files(sessions[c.session_id].attrs["session_dir"], c.meta["source_capture_id"])
        if not npz.is_file():
            continue
        fm = c.meta["frames"]["main_T"]
        c.meta["truth"] = load_truth(npz, js, (int(fm["height"]), int(fm["width"]))).provenance
        n += 1
    return n


def write_truth(g: Any, src: Any, codec: str) -> None:
    """Write a capture's truth group (no-op for a capture ``attach_truth`` did not mark)."""
    prov = src.meta.get("truth")
    if not prov:
        return
    from hzsr.dataset.codecs import CHUNK_HW, filter_kwargs, tile
    from hzsr.dataset.schema import put_attrs
    from hzsr.dataset.shard import array_sha256

    npz = Path(prov["npz"])
    fm = src.meta["frames"]["main_T"]
    truth = load_truth(npz, Path(prov["json"]), (int(fm["height"]), int(fm["width"])))
    if truth.provenance["npz_sha256"] != prov["npz_sha256"]:
        raise DatasetError("truth file changed while the pack ran", file=npz, field="npz_sha256")
    tg = g.create_group(GROUP)
    put_attrs(tg, truth.provenance)
    kw = filter_kwargs(codec)
    for name, arr in truth.arrays.items():
        chunks = (tile(arr.shape[0], CHUNK_HW[0]), tile(arr.shape[1], CHUNK_HW[1]), *arr.shape[2:])
        d = tg.create_dataset(name, data=arr, chunks=chunks, **kw)
        d.attrs["array_sha256"] = array_sha256(arr)


def check_truth(g: Any, where: str) -> list[str]:
    """``dataset verify``'s checks of a capture's truth group: one line per problem.

    A capture without the group has nothing to check. Every array must be present, decode,
    match its sha256 and main T's size.
    """
    if GROUP not in g:
        return []
    from hzsr.dataset.shard import array_sha256

    problems: list[str] = []
    tg = g[GROUP]
    hw = tuple(g["main_T"].shape[:2]) if "main_T" in g else None
    for name, (dtype, _) in ARRAYS.items():
        if name not in tg:
            problems.append(f"{where}: {GROUP}/{name}: array missing")
            continue
        d = tg[name]
        try:
            arr = d[()]
        except (OSError, ValueError, RuntimeError) as exc:
            problems.append(f"{where}: {GROUP}/{name}: cannot decode array data: {str(exc).splitlines()[0]}")
            continue
        want = d.attrs.get("array_sha256")
        want = want.decode() if isinstance(want, bytes) else want
        if want is None or array_sha256(arr) != want:
            problems.append(f"{where}: {GROUP}/{name}: sha256 mismatch (truth data changed on disk)")
        elif arr.dtype != dtype or (hw is not None and arr.shape[:2] != hw):
            problems.append(f"{where}: {GROUP}/{name}: {arr.dtype} {arr.shape}, expected {dtype} on main T's size")
    return problems


def read_truth(g: Any, shard: Path, capture_id: str) -> CaptureTruth | None:
    """A packed capture's truth (None when its shard carries none), every array checked.

    Raises:
        DatasetError: damaged truth data, one line naming shard, capture and array.
    """
    if GROUP not in g:
        return None
    from hzsr.dataset.schema import get_attrs
    from hzsr.dataset.shard import array_sha256

    tg = g[GROUP]
    prov = get_attrs(tg)
    arrays = {}
    for name in ARRAYS:
        try:
            arr = tg[name][()]
        except (KeyError, OSError, ValueError, RuntimeError) as exc:
            raise DatasetError(f"{GROUP}/{name}: cannot read ({str(exc).splitlines()[0]}); run `hzsr dataset "
                               "verify`", file=shard, field=capture_id) from None
        want = tg[name].attrs.get("array_sha256")
        want = want.decode() if isinstance(want, bytes) else want
        if want is None or array_sha256(arr) != want:
            raise DatasetError(f"{GROUP}/{name}: data differ from their sha256; run `hzsr dataset verify`",
                               file=shard, field=capture_id)
        arrays[name] = arr
    try:
        rect = _crop_rect({"crop_rect": json.loads(prov["crop_rect_json"])}, shard)
    except (KeyError, TypeError, json.JSONDecodeError):
        raise DatasetError(f"{GROUP}: crop_rect_json missing or malformed", file=shard, field=capture_id) from None
    return CaptureTruth(arrays, rect, prov)
