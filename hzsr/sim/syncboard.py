"""The sync board: an LED panel that shows time, for measuring a rig's true skew optically.

The board (``docs/sync-board.md`` is the build guide; :class:`BoardSpec` is its YAML) is a white
face with four ArUco markers in its corners, a black panel with a matrix of ``fast_rows + 1`` rows
of ``cols`` square LEDs, and a strip of ``gray_bits`` LEDs above it. It shows time like a clock's
digits, each read on many sensor rows:

- **fast running light:** in each of the ``fast_rows`` rows, the LED of column ``c`` is lit during
  ``[c step, (c + 1) step)`` of a cycle of ``cols step`` (1 ms for 10 columns at 100 us). Every
  row shows the same light (the rows share the column lines), so a frame sees it whatever its
  rolling shutter's speed;
- **slow running light:** the last row steps one LED per fast cycle (10 ms cycle ``C``);
- **Gray-code counter:** the strip shows the Gray code of ``floor(t / C)``, so board time is known
  modulo ``2^gray_bits C`` (41 s for 12 bits), with one bit changing at a time;
- **rolling shutter:** a camera row ``y`` integrates light over ``[t0 + y readout / H, + exposure]``
  (``t0`` the first row's exposure start, the frame's ``SENSOR_TIMESTAMP``), so each LED's
  brightness is the overlap of its lit interval with *its own row's* window.

This module renders what a camera sees of the board (for the virtual rig and ``hzsr sim
session``); ``hzsr.sync.optical`` decodes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np


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

    def check(self) -> list:
        from hzsr.core.schema import Problem

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


def lit_overlap_us(window_start_us: np.ndarray, exposure_us: float, on_us: np.ndarray, length_us: float,
                   cycle_us: float) -> np.ndarray:
    """Overlap of ``[a, a + exposure]`` with the periodic intervals ``[on + m cycle, on + length + m cycle)``."""
    a = np.asarray(window_start_us, np.float64)
    base = np.floor(a / cycle_us) * cycle_us
    out = np.zeros(np.broadcast(a, on_us, cycle_us).shape)
    for m in (-1, 0, 1):
        lo = np.maximum(a, base + on_us + m * cycle_us)
        hi = np.minimum(a + exposure_us, base + on_us + length_us + m * cycle_us)
        out += np.clip(hi - lo, 0, None)
    return out


def gray_lit_us(window_start_us: np.ndarray, exposure_us: float, bit: int, spec: BoardSpec) -> np.ndarray:
    """Time the counter's bit ``bit`` (0 = most significant) is lit within each window."""
    a = np.asarray(window_start_us, np.float64)
    c = spec.cycle_us
    n0 = np.floor(a / c)
    shift = spec.gray_bits - 1 - bit
    out = np.zeros_like(a)
    for m in (0, 1):
        n = n0 + m
        lo = np.maximum(a, n * c)
        hi = np.minimum(a + exposure_us, (n + 1) * c)
        on = (gray((n % 2**spec.gray_bits).astype(np.int64)) >> shift) & 1
        out += np.clip(hi - lo, 0, None) * on
    return out


# -- rendering ------------------------------------------------------------------------------
LED_ON = 220.0  # 8-bit level of an LED lit for the whole exposure (signal = LED_ON overlap / exposure)
FACE, PANEL, WALL = 200.0, 14.0, 70.0


@cache
def _face_texture(spec_key: tuple, mm_per_px: float = 1.0) -> np.ndarray:
    spec = BoardSpec(**dict(spec_key))
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
        tex[y0:y0 + n, x0:x0 + n] = np.where(img > 127, FACE, 12.0)
    return tex


def spec_key(spec: BoardSpec) -> tuple:
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in spec.__dict__.items())


@dataclass
class BoardPlacement:
    """Where the board hangs (world frame = main W camera) and its own clock."""

    centre_m: tuple[float, float, float] = (0.0, 0.035, 3.0)  # halfway between the phones' heights
    clock_offset_us: float = 0.0  # board time minus host time at host 0 ...
    clock_ppm: float = 0.0  # ... and its rate error (a microcontroller crystal)

    def board_us(self, host_ns: np.ndarray) -> np.ndarray:
        h = np.asarray(host_ns, np.float64) / 1e3
        return h * (1 + self.clock_ppm * 1e-6) + self.clock_offset_us


def board_homography(spec: BoardSpec, place: BoardPlacement, K: np.ndarray, R: np.ndarray,
                     C: np.ndarray) -> np.ndarray:
    """Board metres -> image pixels for a camera ``x ~ K R (X - C)`` (the board faces the rig)."""
    p0 = np.array(place.centre_m) - np.array([spec.width_m / 2, spec.height_m / 2, 0.0])
    m = np.array([[1, 0, p0[0] - C[0]], [0, 1, p0[1] - C[1]], [0, 0, p0[2] - C[2]]], np.float64)
    return K @ R @ m


def render_board(spec: BoardSpec, place: BoardPlacement, K: np.ndarray, R: np.ndarray, C: np.ndarray,
                 size: tuple[int, int], start_host_ns: float, exposure_ns: int, readout_ns: int,
                 rng: np.random.Generator, quality: int = 92) -> tuple[bytes, np.ndarray]:
    """One frame of the board: rows exposed one after another (rolling shutter). Returns (jpeg, grey)."""
    w, h = size
    hmat = board_homography(spec, place, K, R, C)
    tex = _face_texture(spec_key(spec))
    th, tw = tex.shape
    scale = np.diag([spec.width_m / tw, spec.height_m / th, 1.0])  # texture px -> board metres
    ht = hmat @ scale @ np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    img = cv2.warpPerspective(tex, ht, (w, h), flags=cv2.INTER_AREA if ht[0, 0] / ht[2, 2] < 1 else cv2.INTER_LINEAR,
                              borderValue=-1.0)
    wall = WALL + 8 * np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    img = np.where(img < 0, wall, img).astype(np.float32)

    exp_us = exposure_ns / 1e3
    row_us = readout_ns / 1e3 / h
    t0 = float(place.board_us(start_host_ns))

    def paint(centres: np.ndarray, size_m: float, level_fn) -> None:
        for i, (bx, by) in enumerate(centres):
            corners = np.array([[bx - size_m / 2, by - size_m / 2, 1], [bx + size_m / 2, by + size_m / 2, 1]]).T
            p = hmat @ corners
            (x0, x1), (y0, y1) = np.sort(p[0] / p[2]), np.sort(p[1] / p[2])
            ys = np.arange(max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, h))
            xs = np.arange(max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, w))
            if not len(ys) or not len(xs):
                continue
            cov_y = np.clip(np.minimum(ys + 0.5, y1) - np.maximum(ys - 0.5, y0), 0, 1)
            cov_x = np.clip(np.minimum(xs + 0.5, x1) - np.maximum(xs - 0.5, x0), 0, 1)
            level = level_fn(i, t0 + ys * row_us)
            img[ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1] += (cov_y * level)[:, None] * cov_x[None, :]

    on, length, cycle = spec.led_timing()
    paint(spec.led_centres(), spec.led_size_m,
          lambda i, a: LED_ON * lit_overlap_us(a, exp_us, on[i], length[i], cycle[i]) / exp_us)
    paint(spec.gray_centres(), spec.led_size_m * 0.8,
          lambda i, a: LED_ON * gray_lit_us(a, exp_us, i, spec) / exp_us)
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    img += rng.normal(0, 2.0, img.shape).astype(np.float32)
    grey = np.clip(img, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    ok, buf = cv2.imencode(".jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes(), grey


#: A crew sets a short manual exposure for the board; the virtual phones use this one.
BOARD_EXPOSURE_NS = 200_000
BOARD_ISO = 800


def board_scene(index: int, rng: np.random.Generator):
    """A ``sync-board`` scene: the board ~3 m in front of the rig (a wall behind for AF metadata)."""
    from hzsr.sim.scene import Layer, Scene

    place = BoardPlacement(centre_m=(float(rng.uniform(-0.01, 0.01)), 0.035 + float(rng.uniform(-0.01, 0.01)),
                                     float(rng.uniform(2.9, 3.1))),
                           clock_offset_us=float(rng.uniform(0, 1e9)), clock_ppm=float(rng.normal(0, 20)))
    spec = BoardSpec()
    wall = Layer("board", "brick", place.centre_m[2], (place.centre_m[0], place.centre_m[1]), spec.width_m, "full")
    return Scene(f"sync-board-{index:04d}", "sync-board", ["sync-board", "static"], [wall], "board", 1.0,
                 extra={"board": spec, "placement": place})


def render_board_slot(rig, scene, slot: str, start_host_ns: float, rng: np.random.Generator,
                      readout_ns: int, quality: int = 92):
    """Render ``slot`` of ``rig`` looking at a ``sync-board`` scene: (jpeg, FrameExposure)."""
    from hzsr.sim.rig import FrameExposure

    pose = rig.pose(slot)
    jpg, _ = render_board(scene.extra["board"], scene.extra["placement"], pose.K, pose.R, pose.C, rig.size,
                          start_host_ns, BOARD_EXPOSURE_NS, readout_ns, rng, quality)
    return jpg, FrameExposure(BOARD_EXPOSURE_NS, BOARD_ISO, 1.0)
