"""The pack's speed-ups keep its output (issue 19): RGB decoding, serial vs threaded, heap reuse, direct writes."""

import ctypes
import io
import shutil
import sys
from contextlib import closing
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from hzsr.core.bulkio import release_freed_buffers, reuse_freed_buffers
from hzsr.core.errors import HzsrError
from hzsr.dataset.pack import gather
from hzsr.dataset.shard import TMP_PREFIX, decode_jpeg, shard_header, write_shard


def _reference_decode(path: Path) -> np.ndarray:
    """What hzsr stored before issue 19: OpenCV's BGR decode, then BGR -> RGB."""
    return cv2.cvtColor(cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _jpegs(tmp_path: Path) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(5)
    img = cv2.GaussianBlur(rng.integers(0, 256, (61, 83, 3), dtype=np.uint8), (5, 5), 0)
    out = []
    for name, params in (("s420.jpg", [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]),
                         ("s444.jpg", [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])):
        cv2.imwrite(str(tmp_path / name), img, params)
        out.append(tmp_path / name)
    cv2.imwrite(str(tmp_path / "grey.jpg"), img[..., 0])
    out.append(tmp_path / "grey.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees on display; OpenCV applies it in both decodes
    buf = io.BytesIO()
    Image.fromarray(img[..., ::-1]).save(buf, "JPEG", exif=exif.tobytes())
    (tmp_path / "exif6.jpg").write_bytes(buf.getvalue())
    out.append(tmp_path / "exif6.jpg")
    return out


def test_rgb_decode_equals_bgr_decode_then_convert(tmp_path):
    for p in _jpegs(tmp_path):
        got, want = decode_jpeg(p), _reference_decode(p)
        assert got.shape == want.shape and got.dtype == np.uint8, p.name
        assert np.array_equal(got, want), p.name
    assert decode_jpeg(tmp_path / "exif6.jpg").shape == (83, 61, 3)  # the orientation was applied


def _arrays(path: Path) -> dict[str, tuple[bytes, str]]:
    out = {}
    with h5py.File(path, "r") as h5:
        for cid in shard_header(h5, path):
            g = h5["captures"][cid]
            for slot, d in g.items():
                if isinstance(d, h5py.Dataset):
                    out[f"{cid}/{slot}"] = (d[()].tobytes(), str(d.attrs["array_sha256"]))
            out[f"{cid}/phash"] = (b"", str(g.attrs["phash_main_W"]))
    return out


def test_serial_and_threaded_shards_hold_the_same(ds_sessions, tmp_path):
    sess, caps, _ = gather(ds_sessions)
    one = write_shard(tmp_path / "a" / "shard-00000.h5", caps, sess, "none", threads=1)
    three = write_shard(tmp_path / "b" / "shard-00000.h5", caps, sess, "none", threads=3)
    a, b = _arrays(one), _arrays(three)
    assert len(a) == 4 * len(caps) - sum(c.paths["ref_T"] is None for c in caps)
    assert a == b


@pytest.mark.parametrize("threads", [1, 3])
def test_a_bad_frame_mid_shard_leaves_no_file(ds_sessions, tmp_path, threads):
    sess, caps, _ = gather(ds_sessions)
    bad = tmp_path / "in"
    shutil.copytree(Path(caps[0].paths["main_W"]).parents[2], bad)
    caps = [c for c in caps if c.session_id == caps[0].session_id]
    path = str(bad / "captures" / caps[2].meta["source_capture_id"] / "main_T.jpg")
    Path(path).write_bytes(b"\xff\xd8 not a jpeg")
    caps[2].paths["main_T"] = path
    caps[2].meta["frames"]["main_T"]["sha256"] = None
    out = tmp_path / "out" / "shard-00000.h5"
    with pytest.raises(HzsrError, match="main_T.jpg"):
        write_shard(out, caps, sess, "none", threads=threads)
    assert not out.exists() and not list(out.parent.glob(f"{TMP_PREFIX}*"))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator is tuned on Linux only")
def test_a_frame_comes_from_the_heap_not_a_fresh_mapping():
    libc = ctypes.CDLL("libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc before 2.33 has no mallinfo2")
    libc.mallinfo2.restype = _Mallinfo2
    assert reuse_freed_buffers() is True
    assert reuse_freed_buffers() is True  # idempotent
    mapped = libc.mallinfo2().hblkhd  # bytes in mmapped blocks
    frame = np.ones((3000, 4000, 3), np.uint8)  # 36 MB: above glibc's default (dynamic) mmap threshold
    assert libc.mallinfo2().hblkhd == mapped  # from the heap: its pages are reused, not faulted in afresh
    del frame
    release_freed_buffers()


def test_a_failed_disk_write_leaves_no_file(ds_sessions, tmp_path, monkeypatch):
    """The shard's large writes fail (EIO, on the direct-write path's helper thread or not): the
    pack raises, and neither a shard nor its temp file is left."""
    import errno
    import functools
    import threading

    from hzsr.core import directfile

    real = directfile._pwrite_all
    calls = []

    def failing(fd, data, offset):
        calls.append(threading.current_thread().name)
        if len(calls) == 3:  # an event, not a timer: the third large write
            raise OSError(errno.EIO, "Input/output error")
        real(fd, data, offset)

    monkeypatch.setattr(directfile, "_pwrite_all", failing)
    # 16 KiB runs: these small frames then fill many buffers, written on the helper thread
    monkeypatch.setattr(directfile, "DirectAppendFile",
                        functools.partial(directfile.DirectAppendFile, run_bytes=4 * directfile.ALIGN))
    sess, caps, _ = gather(ds_sessions)
    out = tmp_path / "out" / "shard-00000.h5"
    with pytest.raises((OSError, RuntimeError)):
        write_shard(out, caps, sess, "none", threads=1)
    assert calls[2].startswith("direct-write")  # the failure was on the helper thread, and still surfaced
    assert not out.exists() and not list(out.parent.glob(f"{TMP_PREFIX}*"))


def test_threads_decode_one_capture_ahead_of_the_writer(ds_sessions, monkeypatch):
    """With decode threads, no frame of a capture beyond the next one is submitted while one is
    being written: the frames in flight (each 36 MB at 12 MP, fresh memory in a pack's first
    captures) stay at two captures' worth (issue 19, fourth pass)."""
    from concurrent.futures import ThreadPoolExecutor

    from hzsr.dataset import shard

    submitted: list[str] = []

    class Recording(ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            submitted.append(str(args[0]))
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(shard, "ThreadPoolExecutor", Recording)
    _, caps, _ = gather(ds_sessions)
    assert len(caps) >= 4
    owner = {str(p): i for i, c in enumerate(caps) for p in c.paths.values() if p is not None}
    with closing(shard._loaded_captures(caps, threads=3)) as loads:
        for k, (c, loaded) in enumerate(loads):
            assert c is caps[k] and set(loaded) == {s for s, p in c.paths.items() if p is not None}
            assert max(owner[p] for p in submitted) == min(k + 1, len(caps) - 1), k
    assert sorted(submitted) == sorted(owner)  # every frame decoded once


def test_the_writer_starts_a_capture_before_its_other_frames_are_decoded(ds_sessions, tmp_path, monkeypatch):
    """With decode threads, the first capture's main_T decode waits until its main_W has been
    written: the shard still completes, so the writer took main_W without waiting for the
    triplet (issue 19, sixth pass). The wait ends on that event; its 20 s bound only keeps a
    regression from hanging the run (it then fails the assert)."""
    import threading

    from hzsr.dataset import shard

    sess, caps, _ = gather(ds_sessions)
    first_T = str(caps[0].paths["main_T"])
    w_written = threading.Event()
    waited: list[bool] = []
    load, put = shard._load_slot, shard.put_attrs

    def gated_load(path, *args, **kwargs):
        if str(path) == first_T:
            waited.append(w_written.wait(20))
        return load(path, *args, **kwargs)

    def noting_put(obj, attrs):
        put(obj, attrs)
        if getattr(obj, "name", "").endswith(f"/{caps[0].dataset_id}/main_W"):
            w_written.set()

    monkeypatch.setattr(shard, "_load_slot", gated_load)
    monkeypatch.setattr(shard, "put_attrs", noting_put)
    out = write_shard(tmp_path / "shard-00000.h5", caps[:2], sess, "none", threads=2)
    assert waited == [True]  # main_T's decode was released by main_W's write
    with h5py.File(out, "r") as h5:
        assert set(h5["captures"][caps[0].dataset_id]) >= {"main_W", "main_T"}


_HEAPS_SCRIPT = """
import ctypes, sys, tempfile, threading
import numpy as np
from hzsr.core.bulkio import reuse_freed_buffers, share_one_heap
reuse_freed_buffers()
if sys.argv[1] == "shared":
    assert share_one_heap()
frames = []
t = threading.Thread(target=lambda: frames.append(np.ones((3000, 4000, 3), np.uint8)))  # decoded on a pool thread
t.start(); t.join()
frames.clear()  # freed on the writer's thread
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as f:
    fp = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    print(open(f.name).read().count("<heap nr="))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator is tuned on Linux only")
@pytest.mark.parametrize("mode, heaps", [("shared", 1), ("default", 2)])
def test_a_frame_decoded_on_a_pool_thread_lands_in_the_one_heap(mode, heaps):
    """With ``share_one_heap`` (set by write_shard when it has decode threads) a frame allocated on
    another thread comes from the main heap, where the next decode reuses it; without, glibc
    gives that thread an arena of its own, which warms up its own fresh frames. Run in a
    fresh process: in this one earlier threads' arenas exist, and glibc would hand the thread
    one of them in turn."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _HEAPS_SCRIPT, mode], capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) == heaps
