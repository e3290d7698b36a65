"""Size before decode: an image's pixel count read from its header, refused above a limit.

A JPEG of a few hundred bytes can declare 20000x20000 pixels; decoding it allocates 1.2 GB and
takes seconds before any size check could run. Every place where an image enters hzsr (``qa
check``, ``qa align``, ``dataset pack`` / ``ingest``, ``model infer``) therefore reads the header
first (``image_header``) and refuses more than ``MAX_PIXELS`` (``check_image_size``), with one
line naming the file.

Formats read: JPEG (the SOFn segment), PNG (IHDR) and BMP (BITMAPINFOHEADER). hzsr's frames are
JPEG; anything else is refused as an unknown format, since its size could not be checked.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from hzsr.core.errors import ImageRefused, ImageTooLarge

#: The most pixels an image may declare: 64 MP, over five times a 12 MP phone frame, under a
#: quarter of a GB as decoded RGB.
MAX_PIXELS = 64_000_000

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (SOF0..SOF15 but DHT C4, JPG C8, DAC CC): they carry the size.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_HEADER_SCAN_BYTES = 1 << 20  # EXIF, ICC and maker notes come before SOF; a header past 1 MB is refused


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares, before any pixel is decoded."""

    format: str  # jpeg | png | bmp
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _jpeg_size(f) -> tuple[int, int] | None:
    """(width, height) from the first SOFn segment, walking the segments from SOI."""
    f.seek(2)
    read = 2
    while read < _HEADER_SCAN_BYTES:
        b = f.read(1)
        if not b:
            return None
        if b != b"\xff":
            continue  # tolerate garbage between segments, as libjpeg does
        m = f.read(1)
        while m == b"\xff":  # fill bytes
            m = f.read(1)
        if not m:
            return None
        marker = m[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            continue
        if marker == 0xD9:  # EOI before any frame
            return None
        seg = f.read(2)
        if len(seg) < 2:
            return None
        (length,) = struct.unpack(">H", seg)
        if marker in _SOF:
            data = f.read(5)
            if len(data) < 5:
                return None
            _, h, w = struct.unpack(">BHH", data)
            return w, h
        f.seek(length - 2, 1)
        read = f.tell()
    return None


def image_header(path: str | Path, field: str | None = None) -> ImageHeader:
    """The format and size ``path`` declares, from at most its first megabyte.

    ``field`` (e.g. ``SRC``, ``frames[1]``) is named in the error's one line.

    Raises:
        ImageRefused: the file cannot be read, is not JPEG/PNG/BMP, or its header is cut short
            (unreadable: exit 2).
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(32)
            if head[:2] == b"\xff\xd8":
                size, fmt = _jpeg_size(f), "jpeg"
            elif head[:8] == _PNG_SIG and head[12:16] == b"IHDR":
                size, fmt = struct.unpack(">II", head[16:24]), "png"
            elif head[:2] == b"BM" and len(head) >= 26:
                w, h = struct.unpack("<ii", head[18:26])
                size, fmt = (abs(w), abs(h)), "bmp"
            else:
                raise ImageRefused("not a decodable image (not JPEG, PNG or BMP)", file=p, field=field, unreadable=True)
    except OSError as exc:
        raise ImageRefused(f"cannot read: {exc.strerror or exc}", file=p, field=field, unreadable=True) from None
    if size is None:
        raise ImageRefused(f"{fmt.upper()} header without a frame size (cut short or damaged)", file=p,
                           field=field, unreadable=True)
    return ImageHeader(fmt, int(size[0]), int(size[1]))


def check_image_size(path: str | Path, max_pixels: int = MAX_PIXELS, field: str | None = None) -> ImageHeader:
    """``image_header(path)``, refused when it declares no pixels or more than ``max_pixels``.

    Call it before decoding: it reads a few bytes, whatever the image declares.

    Raises:
        ImageRefused: as ``image_header``, or the declared size is 0.
        ImageTooLarge: the declared size is above ``max_pixels``.
    """
    h = image_header(path, field)
    if h.width <= 0 or h.height <= 0:
        raise ImageRefused(f"{h.format.upper()} header declares {h.width}x{h.height} pixels", file=path,
                           field=field, unreadable=True)
    if h.pixels > max_pixels:
        raise ImageTooLarge(f"{h.format.upper()} header declares {h.width}x{h.height} = {h.pixels / 1e6:.0f} MP, "
                           f"more than the {max_pixels / 1e6:.0f} MP hzsr decodes (hzsr.core.imageio.MAX_PIXELS)",
                           file=path, field=field, unreadable=True)
    return h
