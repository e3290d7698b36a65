"""Pack then read back: pixels bit-identical to the decoded JPEGs, every metadata field equal."""

import dataclasses
import json

import cv2
import numpy as np
import pytest

from hzsr.core.records import CaptureRecord, FrameRecord, SessionRecord
from hzsr.dataset.reader import ShardReader
from hzsr.dataset.schema import SLOTS

# Every field of the record, so a field added to capture.json is tested (and must be stored) too.
FRAME_FIELDS = [f.name for f in dataclasses.fields(FrameRecord)]
CAMERA_FIELDS = ["physical_id", "focal_length_mm", "f_number", "pixel_size_um"]
DEVICE_FIELDS = ["model", "build", "sync_type"]


def _all_captures(sessions):
    for s in sessions:
        sess = SessionRecord.load(s)
        for d in sorted((s / "captures").iterdir()):
            yield s, sess, CaptureRecord.load(d)


def test_pixels_bit_identical(ds_sessions, packed):
    r = ShardReader(packed)
    n = 0
    for s, sess, rec in _all_captures(ds_sessions):
        sample = r.read(f"{sess.session_id}/{rec.capture_id}")
        for slot in SLOTS:
            want = cv2.cvtColor(cv2.imread(str(s / "captures" / rec.capture_id / f"{slot}.jpg")), cv2.COLOR_BGR2RGB)
            got = getattr(sample, slot)
            assert got.dtype == np.uint8 and got.shape == want.shape
            assert np.array_equal(got, want), (rec.capture_id, slot)
        n += 1
    assert n == len(r.ids()) == 8


@pytest.mark.parametrize("field", FRAME_FIELDS)
def test_frame_field_round_trip(ds_sessions, packed, field):
    r = ShardReader(packed)
    for _, sess, rec in _all_captures(ds_sessions):
        meta = r.meta(f"{sess.session_id}/{rec.capture_id}")
        for f in rec.frames:
            want = getattr(f, field)
            if want is None and field in CAMERA_FIELDS:
                continue  # filled in from session.json's camera: test_camera_and_device_fields
            got = meta["frames"][f.slot].get(field)  # None (unknown) is stored as an absent attribute
            if field == "intrinsics":
                want = {"fx": want.fx, "fy": want.fy, "cx": want.cx, "cy": want.cy}
            assert got == want and type(got) is type(want), (rec.capture_id, f.slot, field, got, want)


@pytest.mark.parametrize("field", CAMERA_FIELDS + DEVICE_FIELDS)
def test_camera_and_device_fields(ds_sessions, packed, field):
    r = ShardReader(packed)
    for _, sess, rec in _all_captures(ds_sessions):
        meta = r.meta(f"{sess.session_id}/{rec.capture_id}")
        for f in rec.frames:
            dev = sess.device_by_serial(f.device)
            obj = dev if field in DEVICE_FIELDS else next(c for c in dev.cameras if c.role == f.camera_role)
            want = getattr(f, field, None)  # a frame's own LENS_APERTURE etc. wins over the camera's
            assert meta["frames"][f.slot][field] == (getattr(obj, field) if want is None else want)


@pytest.mark.parametrize("field", ["scene_id", "scene_tags", "notes", "status", "trigger_host_ns"])
def test_capture_fields(ds_sessions, packed, field):
    r = ShardReader(packed)
    for _, sess, rec in _all_captures(ds_sessions):
        meta = r.meta(f"{sess.session_id}/{rec.capture_id}")
        assert meta[field] == getattr(rec, field)
        assert meta["source_capture_id"] == rec.capture_id and meta["session_id"] == sess.session_id
        assert meta["scene_kind"] == rec.scene_id.split("-")[0]  # the simulator's kind, night included
        assert meta["has_reference"] is True


def test_sync_and_qa_rows(ds_sessions, packed):
    import pandas as pd

    r = ShardReader(packed)
    sync = pd.read_csv(ds_sessions[0] / "sync" / "sync.csv").set_index("capture_id")
    for cid, row in sync.iterrows():
        m = r.meta(f"sA/{cid}")
        assert m["sync"]["verdict"] == row["verdict"]
        assert m["sync"]["skew_ref_main_us"] == row["skew_ref_main_us"]
        assert m["sync"]["main_W_host_ns"] == row["main_W_host_ns"]
        assert m["qa"] is None
    m = r.meta("sB/c00002")
    assert m["qa"] == {"capture_id": "c00002", "verdict": "fail", "reasons": "misaligned | blur", "ncc": 0.2,
                       "flow_epe_px": 7.5}
    assert m["sync"] is None
    man = r.manifest.set_index("capture_id")
    assert man.loc["sB/c00001", "verdict"] == "warn" and man.loc["sB/c00002", "qa_ncc"] == 0.2
    assert man.loc["sA/c00000", "verdict"] == "pass"


def test_session_json_kept_verbatim(ds_sessions, packed):
    import h5py

    with h5py.File(packed / "shards" / "shard-00000.h5", "r") as h5:
        got = json.loads(h5["sessions"]["sA"].attrs["session_json"])
        cap = json.loads(h5["captures"]["sA/c00000"].attrs["capture_json"])
        assert h5.attrs["schema_version"] == 2
        assert h5["captures"]["sA/c00000"]["main_W"].chunks == (120, 80, 3)  # 160 px in two tiles
    assert got == json.loads((ds_sessions[0] / "session.json").read_text())
    assert cap == json.loads((ds_sessions[0] / "captures" / "c00000" / "capture.json").read_text())


def test_read_patch_matches_full(packed):
    r = ShardReader(packed)
    cid = r.ids()[3]
    full = r.read(cid).main_T
    assert np.array_equal(r.read_patch(cid, "main_T", 10, 20, 50, 70), full[10:60, 20:90])
    with pytest.raises(ValueError):
        r.read_patch(cid, "main_T", 100, 0, 50, 10)


def test_tiles_cover_frames_without_padding():
    from hzsr.dataset.codecs import chunk_shape, tile

    assert chunk_shape(3000, 4000) == (125, 125, 3)
    assert tile(4032, 128) == 126 and tile(100, 128) == 100 and tile(129, 128) == 65
    for n in (97, 128, 1000, 3000, 3024, 4000, 4032, 6000):
        t = tile(n, 128)
        k = -(-n // t)
        assert t <= 128 and k * t - n < k  # fewer padded pixels than tiles


def test_scene_kind_rule():
    from hzsr.dataset.schema import scene_kind

    assert scene_kind("night-0003", ["moving", "dynamic", "night", "low-light"]) == "night"
    assert scene_kind("lab-desk", ["portrait"]) == "portrait"
    assert scene_kind("street-01", []) == "street"
    assert scene_kind("IMG_20", []) == "untagged"


@pytest.mark.slow
def test_full_resolution_round_trip(tmp_path):
    """One 4000x3000 triplet: bit-identical pixels, 125x125 tiles, verify passes, patch reads agree."""
    from hzsr.dataset.pack import PackConfig, pack_dataset
    from hzsr.dataset.verify import verify_dataset
    from hzsr.sim.profiles import FULL_RES
    from hzsr.sim.simsession import SimConfig, simulate_session

    s = simulate_session(tmp_path / "full", SimConfig(captures=1, seed=2, size=FULL_RES), progress=False)
    pack_dataset([s], tmp_path / "ds", PackConfig(progress=False))
    r = ShardReader(tmp_path / "ds")
    sample = r.read("full/c00000")
    for slot in SLOTS:
        want = cv2.cvtColor(cv2.imread(str(s / "captures" / "c00000" / f"{slot}.jpg")), cv2.COLOR_BGR2RGB)
        assert np.array_equal(getattr(sample, slot), want)
    assert np.array_equal(r.read_patch("full/c00000", "ref_T", 2744, 3744, 256, 256), want[2744:, 3744:])
    assert verify_dataset(tmp_path / "ds", progress=False).problems == []
