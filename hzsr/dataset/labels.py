"""The curation file ``DIR/labels.csv``: a curator's accept/reject verdict on captures, with reasons.

This module owns the file's rules; ``hzsr dataset browse`` writes it, and ``split``, ``curate``
and ``export`` read it (a rejected capture is left out of all three). Format (CSV, UTF-8, one row
per labelled capture, sorted by ``capture_id``)::

    capture_id,label,reason,curator,updated_utc,schema_version
    sA/c00002,rejected,motion blur on the subject,alice,2026-12-06T06:40:00+00:00,1

- ``label`` is ``accepted`` or ``rejected``; a capture without a row is unlabelled (clearing a
  label removes its row).
- ``reason`` is required for ``rejected`` (one line, at most ``MAX_REASON`` characters, no
  control characters); optional for ``accepted``.
- The file lives beside the shards: a subset folder's labels are its data set's, so a capture
  rejected while browsing a subset is rejected for the whole data set.
- Every change is a read-modify-write under the data set's writer lock (``_dataset_lock``:
  ``core/lock.py:DatasetLock``, the lock pack, split, ingest and repair take), and
  the file is replaced atomically (temp file, fsync, rename): a reader sees the old or the new
  file, never half of one, and two curators never lose each other's labels.
- ``revision`` (the first 16 hex digits of the file's sha256, ``"0"`` when there is none) tells a
  browser tab whether anything changed since it last looked.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import io
import threading
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hzsr.core.errors import DatasetBusyError, DatasetError
from hzsr.core.fileio import atomic_write_bytes
from hzsr.core.lock import DatasetLock

LABELS = "labels.csv"
LABELS_VERSION = 1
ACCEPTED, REJECTED = "accepted", "rejected"
LABEL_VALUES = (ACCEPTED, REJECTED)
COLUMNS = ("capture_id", "label", "reason", "curator", "updated_utc")
MAX_REASON = 200

#: One writer per process at a time: ``flock`` is per open file, so two threads of one server would
#: otherwise refuse each other instead of taking turns.
_IN_PROCESS = threading.Lock()


@dataclass(frozen=True)
class Label:
    """One row of ``labels.csv``."""

    capture_id: str  # the data set's id, "<session_id>/<capture_id>"
    label: str  # "accepted" or "rejected"
    reason: str = ""  # why; required when rejected
    curator: str = ""  # who (the login name of the process that wrote it)
    updated_utc: str = ""  # ISO 8601, seconds


@contextmanager
def _dataset_lock(data_root: Path) -> Iterator[None]:
    """The data set's one-writer lock (``core/lock.py:DatasetLock``), held while ``labels.csv`` is
    read, changed and replaced: a label waits for no pack, split or repair, it is refused in one
    line (``DatasetBusyError``, naming the holder) and the file stays as it was.
    """
    lock = DatasetLock(data_root)
    try:
        lock.acquire()
    except DatasetBusyError as exc:
        raise DatasetBusyError(f"data set is being written by another process ({exc.message.split(' (')[0]}); "
                               "try again when it has finished", file=data_root) from None
    try:
        yield
    finally:
        lock.release()


def labels_path(data_root: str | Path) -> Path:
    return Path(data_root) / LABELS


def check_reason(label: str, reason: str) -> str:
    """The reason as stored (stripped), or a one-line ``DatasetError`` naming what is wrong."""
    if label not in LABEL_VALUES:
        raise DatasetError(f"must be one of {', '.join(LABEL_VALUES)}, got {label!r}", field="label")
    reason = (reason or "").strip()
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in reason):
        raise DatasetError("control characters (line breaks included) are not allowed", field="reason")
    if len(reason) > MAX_REASON:
        raise DatasetError(f"longer than {MAX_REASON} characters", field="reason")
    if label == REJECTED and not reason:
        raise DatasetError("a rejection needs a reason", field="reason")
    return reason


def _parse(data: bytes, path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot parse: {exc}".splitlines()[0], file=path) from None
    for c in ("capture_id", "label"):
        if c not in df.columns:
            raise DatasetError("missing column", file=path, field=c)
    bad = ~df["label"].isin(LABEL_VALUES)
    if bad.any():
        i = int(bad.to_numpy().argmax())
        raise DatasetError(f"row {i + 1}: {df['label'].iloc[i]!r} is not one of {', '.join(LABEL_VALUES)}",
                           file=path, field="label")
    if "schema_version" in df.columns and (pd.to_numeric(df["schema_version"], errors="coerce") > LABELS_VERSION).any():
        raise DatasetError(f"written by a newer hzsr (version > {LABELS_VERSION}); update hzsr", file=path,
                           field="schema_version")
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = ""
    return df[list(COLUMNS)].drop_duplicates("capture_id", keep="last").reset_index(drop=True)


def read_labels(data_root: str | Path) -> tuple[pd.DataFrame, str]:
    """The labels (columns ``COLUMNS``, one row per labelled capture) and the file's revision."""
    path = labels_path(data_root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return pd.DataFrame(columns=list(COLUMNS), dtype=str), "0"
    except OSError as exc:
        raise DatasetError(f"cannot read: {exc.strerror}", file=path, unreadable=True) from None
    return _parse(data, path), hashlib.sha256(data).hexdigest()[:16]


def rejected_ids(data_root: str | Path) -> set[str]:
    """Capture ids a curator has rejected."""
    df, _ = read_labels(data_root)
    return set(df.loc[df["label"] == REJECTED, "capture_id"])


def without_rejected(manifest: pd.DataFrame, data_root: str | Path) -> tuple[pd.DataFrame, int]:
    """The manifest rows not rejected in ``labels.csv``, and how many were left out."""
    rej = rejected_ids(data_root)
    if not rej:
        return manifest, 0
    keep = ~manifest["capture_id"].isin(rej)
    return manifest[keep].reset_index(drop=True), int((~keep).sum())


def set_label(data_root: str | Path, capture_id: str, label: str | None, reason: str = "",
              known_ids: AbstractSet[str] | None = None, curator: str | None = None) -> str:
    """Label one capture (``label=None`` clears it), under the lock, atomically; return the new revision.

    Args:
        data_root: the data set folder (beside ``shards/``).
        capture_id: the capture; with ``known_ids``, it must be one of them.
        label: ``accepted``, ``rejected`` or None (remove the row).
        reason: why (required to reject).
        known_ids: the manifest's capture ids, to refuse a label for a capture that does not exist.
        curator: who; default the login name.
    """
    root = Path(data_root)
    if known_ids is not None and capture_id not in known_ids:
        raise DatasetError(f"unknown capture {capture_id!r}", field="capture_id")
    reason = check_reason(label, reason) if label is not None else ""
    who = curator if curator is not None else _login()
    with _IN_PROCESS, _dataset_lock(root):
        df, _ = read_labels(root)
        df = df[df["capture_id"] != capture_id]
        if label is not None:
            now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
            df = pd.concat([df, pd.DataFrame([[capture_id, label, reason, who, now]], columns=list(COLUMNS))])
        df = df.sort_values("capture_id").assign(schema_version=LABELS_VERSION)
        data = df.to_csv(index=False).encode("utf-8")
        atomic_write_bytes(labels_path(root), data)
    return hashlib.sha256(data).hexdigest()[:16]


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return ""
