"""``dataset pack --truth``: the simulator's truth as optional shard arrays, checked like the frames."""

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from hzsr.cli import main as hzsr
from hzsr.core.errors import DatasetError
from hzsr.dataset.pack import PackConfig, pack_dataset
from hzsr.dataset.reader import ShardReader
from hzsr.dataset.verify import verify_dataset


def _truth(sess: Path) -> Path:
    return sess.parent / f"{sess.name}.truth"


def test_pack_truth_round_trip_and_verify(sim_session, tmp_path):
    out = tmp_path / "ds"
    pack_dataset([sim_session], out, PackConfig(progress=False, truth=True))
    assert verify_dataset(out, progress=False).verdict == "pass"
    r = ShardReader(out)
    ids = r.ids()
    assert len(ids) == 4
    for cid in ids:
        src_id = cid.split("/")[1]
        z = np.load(_truth(sim_session) / f"{src_id}.npz")
        js = json.loads((_truth(sim_session) / f"{src_id}.json").read_text())
        t = r.truth(cid)
        assert t is not None
        np.testing.assert_array_equal(t.arrays["ideal_T"], z["ideal_T"])
        np.testing.assert_array_equal(t.arrays["valid_ref_T"].astype(bool), z["valid_ref_T"])
        np.testing.assert_allclose(t.arrays["defocus_sigma_ref_T"], z["defocus_sigma_ref_T"], rtol=1e-3, atol=1e-3)
        assert t.crop_rect == js["crop_rect"]
        prov = r.meta(cid)["truth"]
        assert Path(prov["npz"]) == (_truth(sim_session) / f"{src_id}.npz").resolve()
        assert len(prov["npz_sha256"]) == 64
        assert json.loads(prov["capture_truth_json"])["capture_id"] == src_id
    # The default pack is unchanged: no truth, and such shards verify as before.
    plain = tmp_path / "plain"
    pack_dataset([sim_session], plain, PackConfig(progress=False))
    assert verify_dataset(plain, progress=False).verdict == "pass"
    rp = ShardReader(plain)
    assert rp.truth(rp.ids()[0]) is None and "truth" not in rp.meta(rp.ids()[0])


def test_truth_is_optional_per_capture(sim_session, tmp_path):
    (_truth(sim_session) / "c00001.npz").unlink()  # a capture without truth is packed without it
    out = tmp_path / "ds"
    pack_dataset([sim_session], out, PackConfig(progress=False, truth=True))
    r = ShardReader(out)
    have = {cid.split("/")[1]: r.truth(cid) is not None for cid in r.ids()}
    assert have == {"c00000": True, "c00001": False, "c00002": True, "c00003": True}
    assert verify_dataset(out, progress=False).verdict == "pass"


def test_verify_and_reader_catch_changed_truth(sim_session, tmp_path):
    out = tmp_path / "ds"
    pack_dataset([sim_session], out, PackConfig(progress=False, truth=True))
    shard = next((out / "shards").glob("shard-*.h5"))
    with h5py.File(shard, "r+") as h5:
        cid = h5.attrs["captures"][0]
        cid = cid.decode() if isinstance(cid, bytes) else str(cid)
        d = h5["captures"][cid]["truth"]["ideal_T"]
        d[0, 0] = (d[0, 0].astype(np.int32) + 1) % 256  # HDF5 rewrites the chunk's checksum; our sha256 differs
    rep = verify_dataset(out, progress=False)
    assert rep.verdict == "fail"
    assert any("truth/ideal_T: sha256 mismatch" in p for p in rep.problems), rep.problems
    with pytest.raises(DatasetError, match="truth/ideal_T"):
        ShardReader(out).truth(cid)


@pytest.mark.parametrize("damage, field, code", [
    ("truncate", None, 2),  # unreadable
    ("drop_ideal", "ideal_T", 1),  # read, and bad
    ("bad_shape", "valid_ref_T", 1),
    ("bad_json", "crop_rect", 1),
])
def test_bad_truth_is_one_line_naming_file_and_field(sim_session, tmp_path, capsys, damage, field, code):
    npz = _truth(sim_session) / "c00002.npz"
    z = dict(np.load(npz))
    if damage == "truncate":
        npz.write_bytes(npz.read_bytes()[:300])
    elif damage == "drop_ideal":
        del z["ideal_T"]
        np.savez_compressed(npz, **z)
    elif damage == "bad_shape":
        z["valid_ref_T"] = z["valid_ref_T"][:-1]
        np.savez_compressed(npz, **z)
    else:
        js = npz.with_suffix(".json")
        meta = json.loads(js.read_text())
        del meta["crop_rect"]["x0"]
        js.write_text(json.dumps(meta))
    out = tmp_path / "ds"
    rc = hzsr(["dataset", "pack", str(sim_session), "--out", str(out), "--truth", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == code
    assert len(err.splitlines()) == 1, err
    assert ("c00002.json" if damage == "bad_json" else "c00002.npz") in err
    if field:
        assert field in err
    assert not list((out / "shards").glob("shard-*.h5")) if (out / "shards").exists() else True
    # Without --truth the same sessions pack as before: the truth files are never read.
    assert hzsr(["dataset", "pack", str(sim_session), "--out", str(tmp_path / "plain"), "--quiet"]) == 0


def test_zip_member_damage_is_named(sim_session, tmp_path, capsys):
    """A npz whose member is corrupt (bad CRC / deflate data) names the member."""
    npz = _truth(sim_session) / "c00000.npz"
    raw = bytearray(npz.read_bytes())
    with zipfile.ZipFile(npz) as zf:
        info = zf.getinfo("ideal_T.npy")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 40
    raw[start:start + 64] = bytes(64)
    npz.write_bytes(bytes(raw))
    rc = hzsr(["dataset", "pack", str(sim_session), "--out", str(tmp_path / "ds"), "--truth", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "c00000.npz" in err and "ideal_T" in err
