"""The LED sync board, as built: its spec (``board.yaml``), what each LED shows when, and its face.

This is the real board's definition (``docs/sync-board.md`` is the build guide), so it belongs
to ``sync``, which decodes the board (``optical``) and writes its build kit (``boardkit``); the
simulator imports it from here to render the board (``hzsr.sim.syncboard``), never the reverse.

The board is a white face with four ArUco markers in its corners, a black panel with a matrix of
``fast_rows + 1`` rows of ``cols`` square LEDs, and a strip of ``gray_bits`` LEDs above it. It
shows time like a clock's digits, each read on many sensor rows:

- **fast running light:** in each of the ``fast_rows`` rows, the LED of column ``c`` is lit during
  ``[c step, (c + 1) step)`` of a cycle of ``cols step`` (1 ms for 10 columns at 100 us). Every
  row shows the same light (the rows share the column lines), so a frame sees it whatever its
  rolling shutter's speed;
- **slow running light:** the last row steps one LED per fast cycle (10 ms cycle ``C``);
- **Gray-code counter:** the strip shows the Gray code of ``floor(t / C)``, so board time is known
  modulo ``2^gray_bits C`` (41 s for 12 bits), with one bit changing at a time;
- **LED edges:** each LED switches within ``led_rise_us`` / ``led_fall_us`` (what the build guide
  asks of the drive; a builder measures them with a photodiode).

How a camera sees it (rolling shutter, exposure, LED edges) is modelled twice, on purpose: the
decoder's measurement model is ``hzsr.sync.optical``'s, and the simulator renders the board with
its own (``hzsr.sim.syncboard``: first-order LED responses), so the virtual rig tests the decoder
against a model it does not share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np

from hzsr.core.schema import Problem

#: 8-bit grey levels of the printed face: white face, black LED panel, the markers' black.
FACE, PANEL, MARKER_BLACK = 200.0, 14.0, 12.0


@dataclass
class BoardSpec:
    """The sync board, as built (metres, microseconds); every default is the reference build."""

    width_m: float = 0.5  # white face
    height_m: float = 0.36
    marker_dict: str = "DICT_4X4_50"  # cv2.aruco dictionary of the four corner markers
    marker_ids: list[int] = field(default_factory=lambda: [0, 1, 2, 3])  # corners TL, TR, BR, BL
    marker_size_m: float = 0.07  # black border to black border
    marker_margin_m: float = 0.012  # from the face's edge
    fast_rows: int = 9  # rows of the fast running light; one slow row follows
    cols: int = 10
    pitch_m: float = 0.025  # LED centre to centre
    led_size_m: float = 0.015  # square diffuser window of each LED
    matrix_top_m: float = 0.085  # centre of the first LED row, from the face's top
    step_us: float = 100.0  # each LED of the running light is lit this long
    gray_bits: int = 12  # counter LEDs, most significant first, left to right
    gray_pitch_m: float = 0.02
    gray_y_m: float = 0.045  # centre of the counter strip, from the face's top
    led_rise_us: float = 2.0  # each LED's switch-on, as a linear ramp of this length (2 tau of a first-order LED)
    led_fall_us: float = 4.0  # ... and its switch-off

    @property
    def rows(self) -> int:
        return self.fast_rows + 1

    @property
    def cycle_us(self) -> float:
        """The slow light's cycle: one count of the Gray counter."""
        return self.cols * self.cols * self.step_us

    def led_timing(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per matrix LED (row-major): when it lights in its cycle, for how long, and the cycle (us)."""
        c = np.arange(self.rows * self.cols) % self.cols
        slow = np.arange(self.rows * self.cols) >= self.fast_rows * self.cols
        length = np.where(slow, self.cols * self.step_us, self.step_us)
        cycle = np.where(slow, self.cycle_us, self.cols * self.step_us)
        return c * length, length, cycle

    @property
    def period_us(self) -> float:
        """Board time is unambiguous modulo this."""
        return self.cycle_us * 2**self.gray_bits

    def led_centres(self) -> np.ndarray:
        """(rows cols, 2) board coordinates (x right, y down, metres) of the running light, row-major."""
        x0 = self.width_m / 2 - (self.cols - 1) / 2 * self.pitch_m
        ys, xs = np.mgrid[0:self.rows, 0:self.cols]
        return np.stack([x0 + xs.ravel() * self.pitch_m, self.matrix_top_m + ys.ravel() * self.pitch_m], 1)

    def gray_centres(self) -> np.ndarray:
        x0 = self.width_m / 2 - (self.gray_bits - 1) / 2 * self.gray_pitch_m
        return np.stack([x0 + np.arange(self.gray_bits) * self.gray_pitch_m,
                         np.full(self.gray_bits, self.gray_y_m)], 1)

    def marker_corners(self) -> dict[int, np.ndarray]:
        """Each marker's four corners (clockwise from its top-left), board coordinates."""
        m, s, w, h = self.marker_margin_m, self.marker_size_m, self.width_m, self.height_m
        origins = [(m, m), (w - m - s, m), (w - m - s, h - m - s), (m, h - m - s)]
        return {mid: np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]], np.float64)
                for mid, (x, y) in zip(self.marker_ids, origins, strict=True)}

    def check(self) -> list[Problem]:
        out = []
        if len(self.marker_ids) != 4 or len(set(self.marker_ids)) != 4:
            out.append(Problem("marker_ids", "four distinct marker ids"))
        if not hasattr(cv2.aruco, self.marker_dict):
            out.append(Problem("marker_dict", f"not a cv2.aruco dictionary: {self.marker_dict!r}"))
        for name in ("fast_rows", "cols", "gray_bits"):
            if getattr(self, name) < 1:
                out.append(Problem(name, "must be >= 1"))
        if self.step_us <= 0:
            out.append(Problem("step_us", "must be > 0"))
        for name in ("led_rise_us", "led_fall_us"):
            if not 0 <= getattr(self, name) < self.step_us / 2:
                out.append(Problem(name, f"must be in 0 .. step_us / 2 ({self.step_us / 2:g} us)"))
        if self.led_size_m >= self.pitch_m:
            out.append(Problem("led_size_m", "must be smaller than pitch_m"))
        return out


def gray(n: np.ndarray | int) -> np.ndarray:
    n = np.asarray(n, np.int64)
    return n ^ (n >> 1)


def gray_to_int(bits: list[int]) -> int:
    """Gray code, most significant bit first, to the integer it counts."""
    out, b = 0, 0
    for g in bits:
        b ^= int(g)
        out = (out << 1) | b
    return out



# -- the printed face -------------------------------------------------------------------------
def face_texture(spec: BoardSpec, mm_per_px: float = 1.0) -> np.ndarray:
    """The board's face as grey levels at ``mm_per_px``: white face, markers, black LED panel and
    strip (LEDs dark). What the build kit prints and the simulator textures the board with; the
    array is shared (cached), so copy it before drawing on it."""
    return _face_texture(spec_key(spec), mm_per_px)


@cache
def _face_texture(key: tuple, mm_per_px: float) -> np.ndarray:
    spec = BoardSpec(**dict(key))
    w, h = int(round(spec.width_m * 1000 / mm_per_px)), int(round(spec.height_m * 1000 / mm_per_px))
    tex = np.full((h, w), FACE, np.float32)
    px = 1000 / mm_per_px

    def rect(x0, y0, x1, y1, v):
        tex[int(round(y0 * px)):int(round(y1 * px)), int(round(x0 * px)):int(round(x1 * px))] = v

    leds = spec.led_centres()
    pad = spec.pitch_m / 2
    rect(leds[:, 0].min() - pad, leds[:, 1].min() - pad, leds[:, 0].max() + pad, leds[:, 1].max() + pad, PANEL)
    g = spec.gray_centres()
    gp = spec.gray_pitch_m / 2
    rect(g[:, 0].min() - gp, g[:, 1].min() - gp, g[:, 0].max() + gp, g[:, 1].max() + gp, PANEL)
    d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, spec.marker_dict))
    for mid, c in spec.marker_corners().items():
        n = int(round(spec.marker_size_m * px))
        img = cv2.aruco.generateImageMarker(d, mid, n).astype(np.float32)
        x0, y0 = int(round(c[0, 0] * px)), int(round(c[0, 1] * px))
        tex[y0:y0 + n, x0:x0 + n] = np.where(img > 127, FACE, MARKER_BLACK)
    return tex


def spec_key(spec: BoardSpec) -> tuple:
    """``spec`` as a hashable tuple (a cache key)."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.__dict__.items())
