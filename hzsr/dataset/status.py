"""``hzsr status PATH``: for a session or a data set, which stages have run, what is stale or
unfinished, and the next command to run.

A session's stages are capture, ``sync check``, ``qa check`` and ``dataset pack``; a data set's are
pack, split and (for each capture) fresh sync/QA results. A stage is ``done``, ``stale`` (it ran,
but captures were added or changed after it), ``running`` (a writer holds the folder's lock),
``unfinished`` (work left: unfinished captures, an interrupted pack), ``not run`` or ``n/a``.
The report reads files only: it never takes a lock or writes anything.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hzsr.core.errors import DatasetError
from hzsr.core.lock import DATASET_LOCK_NAME, LOCK_NAME


@dataclass
class Stage:
    name: str
    state: str  # done, stale, running, unfinished, not run, n/a
    detail: str = ""


@dataclass
class StatusReport:
    path: Path
    kind: str  # "session" or "dataset"
    stages: list[Stage] = field(default_factory=list)
    next_command: str | None = None  # None: nothing left to do

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "kind": self.kind, "next": self.next_command,
                "stages": [s.__dict__ for s in self.stages]}

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.kind}"]
        out += [f"  {s.name:<10} {s.state:<10} {s.detail}".rstrip() for s in self.stages]
        out.append(f"next: {self.next_command}" if self.next_command else "next: nothing left to do")
        return out


def lock_holder(folder: Path, name: str) -> int | None:
    """PID of the process holding ``folder/name`` (0 when it wrote none), or None when free.

    Tests the ``flock`` on a read-only descriptor and lets go at once; the file is never written.
    """
    path = folder / name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 64).decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _table_ids(path: Path) -> set[str] | None:
    """capture_id values of a sync.csv / qa.csv (None when the table is missing or unreadable)."""
    import pandas as pd

    if not path.is_file():
        return None
    try:
        return set(pd.read_csv(path, usecols=["capture_id"], dtype=str)["capture_id"])
    except (OSError, ValueError):
        return None


def session_status(root: Path) -> StatusReport:
    from hzsr.core.session import CaptureState, SessionPaths, captures

    rep = StatusReport(root, "session")
    paths = SessionPaths(root)
    caps = list(captures(root))
    by = {s: [c.capture_id for c in caps if c.state is s] for s in CaptureState}
    complete = set(by[CaptureState.COMPLETE])
    holder = lock_holder(root, LOCK_NAME)
    unfinished = by[CaptureState.UNFINISHED]
    detail = (f"{len(complete)} complete, {len(unfinished)} unfinished, {len(by[CaptureState.DISCARDED])} "
              f"discarded, {len(by[CaptureState.ABANDONED])} abandoned")
    if holder is not None:
        rep.stages.append(Stage("capture", "running", f"{detail}; pid {holder or '?'} holds the session"))
    elif unfinished:
        rep.stages.append(Stage("capture", "unfinished", f"{detail} ({', '.join(unfinished[:5])})"))
    else:
        rep.stages.append(Stage("capture", "done", detail))
    nxt: list[str] = []
    if holder is None and unfinished:
        nxt.append(f"hzsr capture resume {root}")
    for name, csv, cmd in (("sync", paths.sync_csv, f"hzsr sync check {root}"),
                           ("qa", paths.qa_csv, f"hzsr qa check {root}")):
        ids = _table_ids(csv)
        if ids is None:
            state, det = ("not run", "") if csv.exists() is False else ("stale", f"{csv} is unreadable")
        else:
            missing = sorted(complete - ids)
            state = "stale" if missing else "done"
            det = (f"{len(complete & ids)} of {len(complete)} complete captures judged"
                   + (f"; not yet: {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "") if missing else ""))
        rep.stages.append(Stage(name, state, det))
        if state != "done" and complete:
            nxt.append(cmd)
    rep.stages.append(Stage("pack", "n/a", "data sets are not recorded in a session; `hzsr status DATASET` "
                            "tells whether one is up to date"))
    if holder is not None:
        rep.next_command = f"wait for pid {holder or '?'} (hzsr capture) to finish, then: hzsr status {root}"
    elif nxt:
        rep.next_command = nxt[0]
    elif complete:
        rep.next_command = f"hzsr dataset pack {root} --out DATASET"
    else:
        rep.next_command = f"hzsr capture run {root}"
    return rep


def dataset_status(root: Path) -> StatusReport:
    from hzsr.dataset.freshness import stale_report
    from hzsr.dataset.manifest import MANIFEST, load_manifest
    from hzsr.dataset.reader import SPLITS, SUBSET
    from hzsr.dataset.shard import TMP_PREFIX

    rep = StatusReport(root, "subset" if (root / SUBSET).is_file() else "dataset")
    shard_dir = root / "shards"
    shards = sorted(shard_dir.glob("shard-*.h5")) if shard_dir.is_dir() else []
    temps = sorted(shard_dir.glob(f"{TMP_PREFIX}*")) if shard_dir.is_dir() else []
    holder = lock_holder(root, DATASET_LOCK_NAME)
    man = None
    nxt: list[str] = []
    if holder is not None:
        rep.stages.append(Stage("pack", "running", f"pid {holder or '?'} is writing the data set"))
    elif temps or (shards and not (root / MANIFEST).is_file()):
        rep.stages.append(Stage("pack", "unfinished", f"{len(shards)} complete shards, {len(temps)} temp files of "
                                "an interrupted pack" + ("" if (root / MANIFEST).is_file() else ", no manifest")))
        nxt.append(f"hzsr dataset pack SESSION... --out {root}  (the same sessions: it resumes)")
    if (root / MANIFEST).is_file():
        man = load_manifest(root)
        if rep.kind == "subset":
            from hzsr.dataset.reader import ShardReader

            rep.stages.append(Stage("subset", "done", f"{len(man)} captures selected from "
                                    f"{ShardReader(root).shard_root}"))
        elif holder is None and not (temps or (shards and not (root / MANIFEST).is_file())):
            rep.stages.append(Stage("pack", "done", f"{len(man)} captures in {man['shard'].nunique()} shards, "
                                    f"{man['session_id'].nunique()} sessions"))
    elif rep.kind == "dataset" and not shards and holder is None:
        rep.stages.append(Stage("pack", "not run", "no shards, no manifest"))
        nxt.append(f"hzsr dataset pack SESSION... --out {root}")
    if man is not None:
        from hzsr.dataset.reader import ShardReader

        # A subset reads the data set's splits.csv when it has none of its own (as ShardReader does).
        split_path = next((b / SPLITS for b in (root, ShardReader(root).shard_root) if (b / SPLITS).is_file()),
                          root / SPLITS)
        if split_path.is_file():
            from hzsr.dataset.splits import load_splits

            sp = load_splits(split_path)
            sp = sp[sp["capture_id"].isin(set(man["capture_id"]))]  # a subset counts its own captures
            new = sorted(set(man["capture_id"]) - set(sp["capture_id"]))
            rep.stages.append(Stage("split", "stale" if new else "done",
                                    f"{len(new)} captures packed after the split" if new else
                                    ", ".join(f"{k} {v}" for k, v in sp["split"].value_counts().sort_index().items())))
            if new:
                nxt.append(f"hzsr dataset split {root}  (keeps existing groups; assigns the new ones)")
        else:
            rep.stages.append(Stage("split", "not run", ""))
            nxt.append(f"hzsr dataset split {root}")
        fr = stale_report(root)
        if fr["unknown"]:
            rep.stages.append(Stage("results", "stale", fr["unknown"]))
            nxt.insert(0, f"hzsr dataset pack SESSION... --out {root}  (refreshes sync/QA results, pixels untouched)")
        elif fr["stale"]:
            rep.stages.append(Stage("results", "stale", f"{len(fr['stale'])} of {fr['checked']} captures have newer "
                                    "sync/QA results in their session"))
            nxt.insert(0, f"hzsr dataset pack SESSION... --out {root}  (refreshes sync/QA results, pixels untouched)")
        else:
            rep.stages.append(Stage("results", "done", f"{fr['checked']} captures' sync/QA results current"
                                    + (f"; {len(fr['sessions_missing'])} session folders gone, not checked"
                                       if fr["sessions_missing"] else "")))
    rep.stages.append(Stage("verify", "n/a", "not recorded; run it after copying or before a release"))
    if holder is not None:
        rep.next_command = f"wait for pid {holder or '?'} to finish, then: hzsr status {root}"
    else:
        rep.next_command = nxt[0] if nxt else f"hzsr model train {root} --out RUN"
    return rep


def status(path: str | Path) -> StatusReport:
    """The status of a session folder or a data set (or subset) folder.

    Raises:
        DatasetError: ``path`` is missing (exit 2) or neither a session nor a data set.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError("folder not found", file=root, unreadable=True)
    if (root / "session.json").is_file():
        return session_status(root)
    if any((root / n).exists() for n in ("shards", "manifest.csv", "subset.json", DATASET_LOCK_NAME)):
        return dataset_status(root)
    raise DatasetError("neither a session (no session.json) nor a data set (no shards/, manifest.csv)",
                       file=root, unreadable=True)
