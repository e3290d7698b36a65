"""Interop with other layouts: ``ingest`` DCSR's CameraFusion, ``export`` BasicSR-style folders.

CameraFusion (Wang et al., ICCV 2021) has one iPhone 11 Pro Max per capture, no second phone:
``{train,val,test}/{HR,LR/x1,Ref/x1}/<name>.jpg``, matched by file name. The mapping:

=================  ===========================  =========================================
CameraFusion       hzsr slot                    why
=================  ===========================  =========================================
``LR/x1``          ``main_W`` (source)          the wide camera at full resolution
``Ref/x1``         ``main_T`` (target)          the tele of the *same* phone, same instant
(none)             ``ref_T`` absent             no second phone: ``has_reference`` False
``HR``             not imported                 the wide frame again (DCSR's ground truth
                                                for its synthetic x2/x4 protocol); named in
                                                the capture's ``notes``
``train/val/test`` ``splits.csv``               the data set's own split, kept as is
=================  ===========================  =========================================

Fields a JPEG folder cannot tell (exposure, ISO, AF ROI, focus distance, timestamps) are
absent, never zero: the reader returns no key for them. Intrinsics come from the files as
``model infer`` finds them without ``--meta`` (``hzsr.qa.pair_geometry``): EXIF
``FocalLengthIn35mmFilm`` of both images, else a SIFT + RANSAC similarity of the two; each
frame's ``intrinsics_source`` says which (``exif`` or ``estimated``), and when neither answers
the intrinsics stay absent and the notes say so.

``export --format folders`` writes ``OUT/{LR,HR,Ref}/<name>.png`` (LR = main_W source,
HR = main_T target, Ref = ref_T reference, when the capture has one) and ``OUT/meta_info.txt``
with one ``<name>.png (H,W,C)`` line per pair as BasicSR's ``PairedImageDataset`` reads it. The
frames are exported as captured (W and T are not aligned; alignment is the model's job). ``<name>``
is the capture id with ``/`` replaced by ``__``. Captures a curator rejected (``labels.csv``,
``hzsr.dataset.labels``) are not exported.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import cv2
import pandas as pd
from tqdm import tqdm

from hzsr.core.errors import ConfigError, DatasetError
from hzsr.core.fileio import atomic_write_bytes, sha256_file
from hzsr.dataset.codecs import DEFAULT_CODEC
from hzsr.dataset.labels import rejected_ids
from hzsr.dataset.manifest import write_manifest
from hzsr.dataset.reader import SPLITS, ShardReader
from hzsr.dataset.shard import shard_name, write_shard
from hzsr.dataset.sources import CaptureSource, SessionSource

CF_SPLITS = ("train", "val", "test")
_IMG_EXT = (".jpg", ".jpeg", ".png")


def _images(d: Path, root: Path, skipped: list[str]) -> dict[str, Path]:
    """Image files of ``d`` by stem; a file (or folder) whose real path leaves ``root`` is skipped.

    A symbolic link out of the folder being ingested (``LR/x1/a.jpg -> /home/me/private.jpg``)
    would copy a file the user did not hand over into the data set; it is reported, not read.
    """
    if not d.is_dir():
        return {}
    inside = root.resolve()
    out = {}
    for p in sorted(d.iterdir()):
        if p.suffix.lower() not in _IMG_EXT:
            continue
        if not p.resolve().is_relative_to(inside):
            skipped.append(f"{p}: links outside {root} (to {p.resolve()}); skipped")
            continue
        out[p.stem] = p
    return out


def _frame(path: Path, rel: str, slot: str, camera_role: str) -> dict[str, Any]:
    return {"slot": slot, "file": rel, "role": "main", "camera_role": camera_role,
            "sha256": sha256_file(path), "size_bytes": path.stat().st_size, "width": None, "height": None,
            "frame_number": None}


def _pair_intrinsics(wpath: Path, tpath: Path, w_size: tuple[int, int], t_size: tuple[int, int],
                     ) -> tuple[dict[str, dict[str, float]] | None, str | None]:
    """Both frames' intrinsics from EXIF or the pixels (module docstring), and where they came from."""
    from hzsr.qa.pair_geometry import RATIO_RANGE, estimate_similarity, exif_focal_35mm, pinhole_pair

    f_w, f_t = exif_focal_35mm(wpath), exif_focal_35mm(tpath)
    if f_w and f_t and RATIO_RANGE[0] <= f_t / f_w <= RATIO_RANGE[1]:
        k_w, k_t = pinhole_pair(w_size, t_size, ratio=f_t / f_w)
        how = "exif"
    else:
        w_img, t_img = cv2.imread(str(wpath), cv2.IMREAD_COLOR), cv2.imread(str(tpath), cv2.IMREAD_COLOR)
        est = estimate_similarity(w_img, t_img) if w_img is not None and t_img is not None else None
        if est is None:
            return None, None
        k_w, k_t = pinhole_pair(w_size, t_size, similarity=est)
        how = "estimated"
    as_dict = lambda k: {"fx": float(k[0, 0]), "fy": float(k[1, 1]), "cx": float(k[0, 2]), "cy": float(k[1, 2])}  # noqa: E731
    return {"main_W": as_dict(k_w), "main_T": as_dict(k_t)}, how


def camerafusion_sources(folder: str | Path) -> tuple[SessionSource, list[CaptureSource], pd.DataFrame, list[str]]:
    """Captures of a CameraFusion folder, its split table, and the files skipped (with reasons)."""
    from PIL import Image

    root = Path(folder)
    if not root.is_dir():
        raise DatasetError("folder not found", file=root, unreadable=True)
    found = [s for s in CF_SPLITS if (root / s).is_dir()]
    if not found:
        raise DatasetError(f"no {'/'.join(CF_SPLITS)} folders: not the camerafusion layout", file=root)
    sid = root.name or "camerafusion"
    caps, rows, skipped = [], [], []
    for split in found:
        lr, ref, hr = (_images(root / split / "LR" / "x1", root, skipped),
                       _images(root / split / "Ref" / "x1", root, skipped), _images(root / split / "HR", root, []))
        if not lr:
            raise DatasetError("no images", file=root / split / "LR" / "x1")
        for stem, wpath in lr.items():
            if stem not in ref:
                skipped.append(f"{wpath}: no Ref/x1/{stem}.* to pair with; skipped")
                continue
            tpath = ref[stem]
            cid = f"{sid}/{split}-{stem}"
            frames = {"main_W": _frame(wpath, str(wpath.relative_to(root)), "main_W", "W"),
                      "main_T": _frame(tpath, str(tpath.relative_to(root)), "main_T", "T")}
            notes = (f"camerafusion {split}: LR/x1 -> main_W, Ref/x1 -> main_T; no reference phone"
                     + (f"; HR {hr[stem].relative_to(root)} not imported" if stem in hr else ""))
            meta = {"capture_id": cid, "session_id": sid, "source_capture_id": f"{split}-{stem}",
                    "scene_id": stem, "scene_kind": "untagged", "scene_tags": [], "notes": notes,
                    "status": "complete", "trigger_host_ns": None, "source": "ingest:camerafusion",
                    "has_reference": False, "frames": frames, "sync": None, "qa": None}
            sizes = []
            for p in (wpath, tpath):
                with Image.open(p) as im:
                    sizes.append(im.size)
            raw = sum(w * h * 3 for w, h in sizes)
            intrinsics, how = _pair_intrinsics(wpath, tpath, sizes[0], sizes[1])
            if intrinsics is not None:
                for slot, k in intrinsics.items():
                    frames[slot]["intrinsics"] = k
                    frames[slot]["intrinsics_source"] = how
            else:
                meta["notes"] += "; intrinsics unknown (no EXIF 35 mm focal lengths, too few SIFT matches)"
            caps.append(CaptureSource(cid, sid, {"main_W": str(wpath), "main_T": str(tpath), "ref_T": None},
                                      meta, json.dumps({"source": "camerafusion", "split": split, "name": stem}),
                                      raw))
            rows.append({"capture_id": cid, "split": split, "group": stem, "stratum": "untagged"})
    sess = SessionSource(sid, {"session_id": sid, "source": "ingest:camerafusion", "session_dir": str(root.resolve()),
                               "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                               "session_json": json.dumps({"layout": "camerafusion", "folder": str(root.resolve())})})
    caps.sort(key=lambda c: c.dataset_id)
    return sess, caps, pd.DataFrame(rows, columns=["capture_id", "split", "group", "stratum"]), skipped


def ingest_camerafusion(folder: str | Path, out: str | Path, compression: str = DEFAULT_CODEC,
                        shard_size: str = "1GiB", progress: bool = True) -> dict[str, Any]:
    """Pack a CameraFusion folder into a new data set at ``out`` (with its own splits), holding its lock."""
    from hzsr.core.lock import DatasetLock

    out = Path(out)
    if (out / "shards").exists():
        raise ConfigError("a data set already exists here; choose another --out", file=out, field="--out")
    sess, caps, splits, skipped = camerafusion_sources(folder)
    with DatasetLock(out):
        if (out / "shards").exists():  # another ingest or pack got here first
            raise ConfigError("a data set already exists here; choose another --out", file=out, field="--out")
        return _ingest(out, sess, caps, splits, skipped, compression, shard_size, progress)


def _ingest(out: Path, sess: SessionSource, caps: list[CaptureSource], splits: pd.DataFrame, skipped: list[str],
            compression: str, shard_size: str, progress: bool) -> dict[str, Any]:
    from hzsr.dataset.pack import _cut, build_manifest, parse_shard_size

    groups = _cut(caps, parse_shard_size(shard_size))
    for k, group in enumerate(tqdm(groups, desc="ingest shards", unit="shard", disable=not progress)):
        write_shard(out / "shards" / shard_name(k), group, {sess.session_id: sess}, compression)
    mpath = write_manifest(out, build_manifest(out))
    spath = out / SPLITS
    atomic_write_bytes(spath, splits.sort_values("capture_id").to_csv(index=False).encode())
    return {"out": str(out), "captures": len(caps), "without_reference": len(caps), "skipped": skipped,
            "shards": len(groups), "manifest": str(mpath), "splits": str(spath)}


def export_folders(root: str | Path, out: str | Path, split: str | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Write ``OUT/{LR,HR,Ref}/<name>.png`` and ``OUT/meta_info.txt`` for a split (or everything)."""
    out = Path(out)
    if (out / "meta_info.txt").exists():
        raise ConfigError("an export already exists here; choose another --out", file=out, field="--out")
    reader = ShardReader(root)
    rejected = rejected_ids(reader.shard_root)  # labels.csv: a curator's rejections are not exported
    ids = [i for i in reader.ids(split) if i not in rejected]
    lines, no_ref = [], 0
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for cid in tqdm(ids, desc="export", unit="capture", disable=not progress):
        s = reader.read(cid)
        name = cid.replace("/", "__") + ".png"
        for folder, arr in (("LR", s.main_W), ("HR", s.main_T), ("Ref", s.ref_T)):
            if arr is None:
                no_ref += 1
                continue
            ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR), png)
            if not ok:  # pragma: no cover - encoding a uint8 RGB array does not fail
                raise DatasetError("cannot encode PNG", file=out / folder / name)
            atomic_write_bytes(out / folder / name, buf.tobytes())
        h, w, c = s.main_T.shape
        lines.append(f"{name} ({h},{w},{c})")
    meta = out / "meta_info.txt"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(meta, ("\n".join(lines) + ("\n" if lines else "")).encode())
    return {"out": str(out), "captures": len(ids), "without_reference": no_ref, "meta_info": str(meta),
            "split": split, "rejected": len(rejected & set(reader.ids(split)))}
