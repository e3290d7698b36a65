"""curate (query, no copying, near-duplicates), ingest camerafusion, export BasicSR folders."""

import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest

from hzsr.core.errors import DatasetError
from hzsr.core.fileio import sha256_bytes
from hzsr.core.records import CaptureRecord
from hzsr.dataset.curate import curate
from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.dataset.phash import phash
from hzsr.dataset.reader import ShardReader


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hzsr.cli", *map(str, args)], capture_output=True, text=True,
                          env=os.environ, timeout=300)


def test_curate_subset_reads_without_copy(packed, tmp_path):
    sub = tmp_path / "sub"
    r = _cli("dataset", "curate", packed, "--query", "scene_kind == 'night' or verdict == 'fail'", "--out", sub)
    assert r.returncode == 0, r.stderr
    man = pd.read_csv(sub / "manifest.csv")
    full = pd.read_csv(packed / "manifest.csv")
    want = full.query("scene_kind == 'night' or verdict == 'fail'")["capture_id"].tolist()
    assert man["capture_id"].tolist() == want and 0 < len(want) < len(full)
    assert not (sub / "shards").exists()
    rd = ShardReader(sub)
    assert rd.ids() == want
    assert np.array_equal(rd.read(want[0]).main_W, ShardReader(packed).read(want[0]).main_W)


def test_bad_query_one_line(packed, tmp_path):
    r = _cli("dataset", "curate", packed, "--query", "scene_kind ==", "--out", tmp_path / "s")
    assert r.returncode == 2
    assert r.stderr.startswith("hzsr: error: --query: bad expression 'scene_kind =='") and "\n" == r.stderr[-1]
    assert len(r.stderr.splitlines()) == 1
    with pytest.raises(DatasetError, match="--query: bad expression 'no_such_column > 3': at character 1: "
                       "unknown column 'no_such_column'"):
        curate(packed, "no_such_column > 3", tmp_path / "s2")
    assert not (tmp_path / "s2").exists()


def test_near_duplicates_flagged(ds_sessions, tmp_path):
    src = tmp_path / "sA"
    shutil.copytree(ds_sessions[0], src)
    # c00009: c00004 (alone in its scene) again, W re-encoded at lower quality and 3% brighter.
    dup = src / "captures" / "c00009"
    shutil.copytree(src / "captures" / "c00004", dup)
    w = cv2.imread(str(dup / "main_W.jpg"))
    ok, buf = cv2.imencode(".jpg", cv2.convertScaleAbs(w, alpha=1.03), [cv2.IMWRITE_JPEG_QUALITY, 80])
    (dup / "main_W.jpg").write_bytes(buf.tobytes())
    rec = CaptureRecord.load(dup)
    rec.capture_id = "c00009"
    rec.frame("main_W").sha256 = sha256_bytes(buf.tobytes())
    rec.frame("main_W").size_bytes = len(buf)
    rec.save(dup)
    ds = tmp_path / "ds"
    pack_dataset([src], ds, PackConfig(progress=False))
    res = curate(ds, "capture_id == capture_id", tmp_path / "sub", max_distance=6)
    man = pd.read_csv(tmp_path / "sub" / "manifest.csv").set_index("capture_id")
    assert man.at["sA/c00009", "near_duplicate_of"] == "sA/c00004"
    assert man.at["sA/c00004", "near_duplicate_of"] == "sA/c00004"
    assert man.at["sA/c00009", "phash_distance"] <= 6
    # The simulator takes two captures per scene from the same place: those pair up, and never across scenes.
    assert man["near_duplicate_of"].to_dict() == {
        "sA/c00000": "sA/c00000", "sA/c00001": "sA/c00000", "sA/c00002": "sA/c00002", "sA/c00003": "sA/c00002",
        "sA/c00004": "sA/c00004", "sA/c00009": "sA/c00004"}
    assert res["near_duplicates"] == 6
    res = curate(ds, "source_capture_id in ['c00000', 'c00002', 'c00004']", tmp_path / "sub2", max_distance=6)
    man = pd.read_csv(tmp_path / "sub2" / "manifest.csv")
    assert len(man) == 3 and res["near_duplicates"] == 0 and man["near_duplicate_of"].isna().all()
    assert man["phash_distance"].min() > 6


def test_phash_properties():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 4)
    other = cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 4)
    h = int(phash(img), 16)
    assert bin(h ^ int(phash(cv2.convertScaleAbs(img, alpha=1.02)), 16)).count("1") <= 4
    assert bin(h ^ int(phash(other), 16)).count("1") > 16


def _camerafusion(tmp_path, sessions):
    cf = tmp_path / "CameraFusion"
    caps = sorted((sessions[0] / "captures").iterdir())
    plan = {"train": caps[:3], "val": caps[3:4], "test": caps[4:5]}
    for split, cs in plan.items():
        for k, c in enumerate(cs):
            name = f"IMG_{split}{k}.jpg"
            for sub, slot in (("HR", "main_W"), ("LR/x1", "main_W"), ("Ref/x1", "main_T")):
                (cf / split / sub).mkdir(parents=True, exist_ok=True)
                shutil.copy(c / f"{slot}.jpg", cf / split / sub / name)
    (cf / "train" / "Ref" / "x1" / "IMG_train2.jpg").unlink()  # an unpaired wide frame
    return cf, plan


def test_ingest_camerafusion_and_export(ds_sessions, tmp_path):
    cf, plan = _camerafusion(tmp_path, ds_sessions)
    ds = tmp_path / "cfds"
    r = _cli("dataset", "ingest", cf, "--layout", "camerafusion", "--out", ds, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["captures"] == 4 and res["without_reference"] == 4 and len(res["skipped"]) == 1
    rd = ShardReader(ds)
    assert rd.ids("test") == ["CameraFusion/test-IMG_test0"]
    assert rd.ids("train") == ["CameraFusion/train-IMG_train0", "CameraFusion/train-IMG_train1"]
    s = rd.read("CameraFusion/val-IMG_val0")
    src = plan["val"][0]
    assert s.ref_T is None and s.meta["has_reference"] is False
    assert np.array_equal(s.main_W, cv2.cvtColor(cv2.imread(str(src / "main_W.jpg")), cv2.COLOR_BGR2RGB))
    assert np.array_equal(s.main_T, cv2.cvtColor(cv2.imread(str(src / "main_T.jpg")), cv2.COLOR_BGR2RGB))
    fw = s.meta["frames"]["main_W"]
    assert fw["file"] == "val/LR/x1/IMG_val0.jpg" and fw["width"] == 160 and fw["height"] == 120
    assert "iso" not in fw and "af_roi" not in fw  # unknown stays absent, never 0
    assert s.meta["source"] == "ingest:camerafusion"
    assert rd.manifest["has_reference"].eq(False).all()
    assert _cli("dataset", "verify", ds, "--quiet").returncode == 0

    out = tmp_path / "export"
    r = _cli("dataset", "export", ds, "--split", "train", "--format", "folders", "--out", out)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (out / "LR").iterdir()) == ["CameraFusion__train-IMG_train0.png",
                                                               "CameraFusion__train-IMG_train1.png"]
    assert not (out / "Ref").exists()  # no reference phone in CameraFusion
    lines = (out / "meta_info.txt").read_text().splitlines()
    assert lines == ["CameraFusion__train-IMG_train0.png (120,160,3)", "CameraFusion__train-IMG_train1.png (120,160,3)"]
    png = cv2.cvtColor(cv2.imread(str(out / "HR" / "CameraFusion__train-IMG_train1.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(png, rd.read("CameraFusion/train-IMG_train1").main_T)


def test_export_with_reference(packed, tmp_path):
    shutil.copytree(packed, tmp_path / "ds")
    assert _cli("dataset", "split", tmp_path / "ds", "--ratios", "0.5,0.5").returncode == 0
    r = _cli("dataset", "export", tmp_path / "ds", "--split", "test", "--out", tmp_path / "ex", "--json")
    assert r.returncode == 0, r.stderr
    n = json.loads(r.stdout)["captures"]
    assert n > 0 and len(list((tmp_path / "ex" / "Ref").iterdir())) == n


def test_ingest_wrong_layout(tmp_path):
    (tmp_path / "x").mkdir()
    r = _cli("dataset", "ingest", tmp_path / "x", "--layout", "camerafusion", "--out", tmp_path / "o")
    assert r.returncode == 1 and "not the camerafusion layout" in r.stderr and len(r.stderr.splitlines()) == 1


def test_ingest_stays_inside_its_folder(ds_sessions, tmp_path):
    """A symbolic link out of the ingested folder is reported and not read (issue 22)."""
    from hzsr.dataset.interop import camerafusion_sources

    cf, _ = _camerafusion(tmp_path, ds_sessions)
    outside = tmp_path / "private.jpg"
    first = sorted((cf / "train" / "LR" / "x1").iterdir())[0]
    outside.write_bytes(first.read_bytes())
    (cf / "train" / "LR" / "x1" / "zz-leak.jpg").symlink_to(outside)
    (cf / "train" / "Ref" / "x1" / "zz-leak.jpg").write_bytes(first.read_bytes())
    _, caps, _, skipped = camerafusion_sources(cf)
    assert not any("zz-leak" in c.dataset_id for c in caps)
    assert any("zz-leak.jpg: links outside" in s for s in skipped), skipped
