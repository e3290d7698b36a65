"""DirectAppendFile (hzsr/core/directfile.py) holds exactly the bytes written, whatever the order.

HDF5 appends, rewrites metadata further back, reads it back and truncates; each case is checked
against a plain bytearray model of the file, with O_DIRECT and through the page cache, and with
O_DIRECT refused at the first write.
"""

import errno
import io

import h5py
import numpy as np
import pytest

from hzsr.core import directfile
from hzsr.core.directfile import ALIGN, DirectAppendFile


class _Model:
    """The file as a bytearray: what every read and the final file must show."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, pos: int, b: bytes) -> None:
        if len(self.data) < pos:
            self.data.extend(bytes(pos - len(self.data)))
        self.data[pos:pos + len(b)] = b

    def read(self, pos: int, n: int) -> bytes:
        got = bytes(self.data[pos:pos + n])
        return got + bytes(n - len(got))

    def truncate(self, size: int) -> None:
        del self.data[size:]
        self.data.extend(bytes(size - len(self.data)))


def _exercise(f: DirectAppendFile, seed: int) -> _Model:
    """A random mix of what HDF5 does: appends of odd sizes, rewrites further back, reads, truncation."""
    rng = np.random.default_rng(seed)
    m = _Model()
    for step in range(300):
        op = rng.random()
        size = max(len(m.data), 1)
        if op < 0.6:  # append (most of a pack: one tile after another)
            pos, n = len(m.data), int(rng.integers(1, 3 * ALIGN))
        elif op < 0.8:  # rewrite somewhere before the end (metadata), possibly running past it
            pos, n = int(rng.integers(0, size)), int(rng.integers(1, ALIGN // 2))
        elif op < 0.85:  # a gap past the end
            pos, n = len(m.data) + int(rng.integers(1, ALIGN)), int(rng.integers(1, 100))
        elif op < 0.97:  # read back (HDF5 reads its metadata), sometimes past the end
            pos, n = int(rng.integers(0, size + ALIGN)), int(rng.integers(1, 2 * ALIGN))
            f.seek(pos)
            buf = bytearray(n)
            assert f.readinto(memoryview(buf)) == n
            assert bytes(buf) == m.read(pos, n), f"step {step}: read at {pos}+{n}"
            continue
        else:
            new = int(rng.integers(0, size + ALIGN))
            f.truncate(new)
            m.truncate(new)
            continue
        b = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        f.seek(pos)
        assert f.write(memoryview(b)) == n
        m.write(pos, b)
        assert f.seek(0, io.SEEK_END) == len(m.data)
    return m


@pytest.mark.parametrize("direct", [True, False], ids=["o_direct", "page_cache"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_file_holds_what_was_written(tmp_path, direct, seed):
    path = tmp_path / "f.bin"
    f = DirectAppendFile(path, direct=direct, run_bytes=4 * ALIGN)  # small runs: many full-buffer sends
    m = _exercise(f, seed)
    f.close()
    assert path.read_bytes() == bytes(m.data)
    if direct and f.bytes_direct == 0:  # the file system refused O_DIRECT: the page-cache path was checked
        assert f.bytes_buffered > 0


@pytest.mark.parametrize("direct", [True, False], ids=["o_direct", "page_cache"])
def test_holes_reserved_at_the_end_are_filled_later_piece_by_piece(tmp_path, direct):
    """HDF5's pattern: tiles, a 3 KB hole for a B-tree node, more tiles; the node is written at close."""
    rng = np.random.default_rng(11)
    path = tmp_path / "f.bin"
    f = DirectAppendFile(path, direct=direct, run_bytes=4 * ALIGN)
    m = _Model()
    holes = []
    pos = 0
    for _ in range(12):
        for _ in range(3):  # three odd-sized tiles
            b = rng.integers(0, 256, 4689, dtype=np.uint8).tobytes()
            f.seek(pos)
            f.write(b)
            m.write(pos, b)
            pos += len(b)
        holes.append(pos)
        pos += 3136  # reserved, not written yet
    for h in holes:  # the nodes, each in two writes: the second lands in a block already patched once
        for lo, hi in ((h, h + 1000), (h + 1000, h + 3136)):
            b = rng.integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
            f.seek(lo)
            f.write(b)
            m.write(lo, b)
    f.seek(0)
    f.write(b"superblock")
    m.write(0, b"superblock")
    f.close()
    assert path.read_bytes() == bytes(m.data)


def test_o_direct_refused_at_the_first_write_falls_back(tmp_path, monkeypatch):
    """Some file systems open with O_DIRECT and refuse the write (EINVAL): same bytes, page cache."""
    real = directfile._pwrite_all
    refused = []

    def pwrite(fd, data, offset):
        if f._dfd is not None and fd == f._dfd:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        real(fd, data, offset)

    monkeypatch.setattr(directfile, "_pwrite_all", pwrite)
    path = tmp_path / "f.bin"
    f = DirectAppendFile(path, direct=True, run_bytes=4 * ALIGN)
    had_direct = f.direct
    m = _exercise(f, 7)
    f.close()
    assert path.read_bytes() == bytes(m.data)
    assert f.bytes_direct == 0 and not f.direct
    assert len(refused) == (1 if had_direct else 0)  # refused once, then never tried again


def test_an_hdf5_file_written_through_it_matches_one_written_by_hdf5(tmp_path):
    """Same arrays, same tiles byte for byte (Fletcher-32 included), same attributes as HDF5's own driver."""
    rng = np.random.default_rng(3)
    arrays = {"a": rng.integers(0, 256, (250, 375, 3), dtype=np.uint8),
              "b": rng.integers(0, 256, (130, 77, 3), dtype=np.uint8)}

    def write(h5: h5py.File) -> None:
        for k, a in arrays.items():
            d = h5.create_dataset(k, data=a, chunks=(64, 64, 3), fletcher32=True)
            d.attrs["note"] = "x" * 300
        h5.attrs["list"] = list(range(50))

    with DirectAppendFile(tmp_path / "direct.h5", run_bytes=4 * ALIGN) as raw, h5py.File(raw, "w") as h5:
        write(h5)
    with h5py.File(tmp_path / "sec2.h5", "w") as h5:
        write(h5)
    with h5py.File(tmp_path / "direct.h5", "r") as got, h5py.File(tmp_path / "sec2.h5", "r") as want:
        assert list(got.attrs["list"]) == list(want.attrs["list"])
        for k, a in arrays.items():
            g, w = got[k], want[k]
            assert g.fletcher32 and g.chunks == w.chunks and g.attrs["note"] == w.attrs["note"]
            assert np.array_equal(g[()], a)
            for i in range(g.id.get_num_chunks()):
                off = g.id.get_chunk_info(i).chunk_offset
                assert g.id.read_direct_chunk(off) == w.id.read_direct_chunk(off), (k, off)


def test_run_bytes_must_be_aligned(tmp_path):
    with pytest.raises(ValueError, match="multiple"):
        DirectAppendFile(tmp_path / "f", run_bytes=ALIGN + 1)


def test_close_with_a_slice_of_the_ring_still_referenced_keeps_the_file(tmp_path):
    """A lingering slice of a ring buffer must not turn a finished file's close into an error."""
    p = tmp_path / "f.bin"
    f = DirectAppendFile(p)
    f.write(b"x" * 10000)
    keep = f._views[0][:16]  # what an uncollected frame of the writer can still hold
    f.close()
    assert f.closed
    assert p.read_bytes() == b"x" * 10000
    del keep
