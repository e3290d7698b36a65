"""The shard layout (schema version 2) and the mapping between records and HDF5 attributes.

A shard ``shards/shard-NNNNN.h5`` holds many captures::

    /                               attrs: format="hzsr-shard", schema_version, shard, compression,
                                           captures (ids, in order)
    /sessions/<session_id>          attrs: session_json (verbatim session.json), source, created_utc,
                                           sync_summary_json / qa_summary_json when present
    /captures/<session_id>/<cid>    group of one capture; attrs: the capture.json fields (typed),
                                           scene_kind, has_reference, capture_json (verbatim)
        main_W, main_T, ref_T       uint8 (H, W, 3) RGB, chunked for patch reads; attrs: sha256
                                    of the array's C-order bytes, and every frame field (typed)
        sync/, qa/                  groups whose attrs are that capture's row of sync.csv / qa.csv

The dataset's capture id is ``<session_id>/<capture_id>``: capture ids repeat across sessions
(``c00000``), session ids do not. It is also the capture's HDF5 group path under ``/captures``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

#: 2: image arrays carry HDF5's per-chunk Fletcher-32 checksum (1: only the array's sha256).
SCHEMA_VERSION = 2
#: Shard schemas this hzsr reads: schema 1 shards are checked by their arrays' sha256 on first read.
READABLE_SCHEMAS = (1, 2)
FORMAT = "hzsr-shard"
SLOTS = ("main_W", "main_T", "ref_T")

#: Frame fields stored as typed attributes on each image array (capture.json ``frames[]``).
FRAME_INT_FIELDS = ("sensor_timestamp_ns", "exposure_time_ns", "iso", "width", "height", "size_bytes",
                    "frame_number")
FRAME_FLOAT_FIELDS = ("focus_distance_diopters",)
FRAME_STR_FIELDS = ("slot", "file", "device", "role", "camera_role", "camera_id", "timestamp_source",
                    "focus_calibration", "af_state", "sha256")
#: Camera fields copied from session.json's device/camera that took the frame.
CAMERA_FIELDS = ("physical_id", "focal_length_mm", "f_number", "pixel_size_um")
DEVICE_FIELDS = ("model", "build", "sync_type")

#: Capture fields stored as typed attributes on the capture group.
CAPTURE_STR_FIELDS = ("capture_id", "session_id", "source_capture_id", "scene_id", "scene_kind", "notes",
                      "status", "source")


def scene_kind(scene_id: str, tags: list[str]) -> str:
    """The scene kind used for stratified splits.

    The scene id's prefix before ``-`` when it is also a tag (``night-0003`` tagged ``night``, even
    if ``moving`` comes first), else the first tag (the crew's scene type), else the prefix, else
    ``"untagged"``.
    """
    prefix = scene_id.split("-", 1)[0] if "-" in scene_id else ""
    if prefix and prefix in tags:
        return prefix
    if tags:
        return str(tags[0])
    return prefix or "untagged"


def _attr_value(v: Any) -> Any:
    """A Python value as an HDF5 attribute value (None is never stored: absent means unknown)."""
    if isinstance(v, bool):
        return np.bool_(v)
    if isinstance(v, int):
        return np.int64(v)
    if isinstance(v, float):
        return np.float64(v)
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, str) for x in v):
            return np.array(v, dtype=object) if v else np.array([], dtype="S1")
        return np.asarray(v)
    raise TypeError(f"cannot store {type(v).__name__} as an attribute")


def put_attrs(obj, values: dict[str, Any]) -> None:
    """Write ``values`` as attributes, skipping None (unknown stays absent, never 0)."""
    import h5py

    for k, v in values.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) for x in v):
            obj.attrs.create(k, list(v), dtype=h5py.string_dtype())
        elif isinstance(v, (list, tuple)) and not v:
            obj.attrs.create(k, np.zeros(0, np.int64))
        else:
            obj.attrs[k] = _attr_value(v)


def get_attrs(obj) -> dict[str, Any]:
    """Attributes as plain Python values (numpy scalars -> int/float/bool, arrays -> lists)."""
    out: dict[str, Any] = {}
    for k, v in obj.attrs.items():
        out[k] = plain(v)
    return out


def plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v.tolist()]
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def table_row_attrs(row: dict[str, Any]) -> dict[str, Any]:
    """A row of sync.csv/qa.csv as attribute values: numbers stay numbers, the rest are strings."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, (np.integer, int)) and not isinstance(v, bool):
            out[k] = int(v)
        elif isinstance(v, (np.floating, float)):
            out[k] = float(v)
        elif isinstance(v, (np.bool_, bool)):
            out[k] = bool(v)
        else:
            out[k] = str(v)
    return out


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
