"""The sync board as a camera sees it, for the virtual rig and ``hzsr sim session``.

The board itself (its spec, what each LED shows when, its printed face) is the real board's
definition and lives in ``hzsr.sync.board``; this module places it in the world, gives it a clock,
and renders it through a rolling shutter. ``hzsr.sync.optical`` decodes the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hzsr.sync.board import BoardSpec, face_texture, gray

LED_ON = 220.0  # 8-bit level of an LED lit for the whole exposure (signal = LED_ON light / exposure)
WALL = 70.0  # 8-bit level of the wall behind the board


@dataclass(frozen=True)
class LedResponse:
    """How the simulated LEDs switch: first-order (RC) responses, not the decoder's linear ramps.

    A real LED behind a resistor follows its drive with a time constant; 10-90 % takes 2.2 tau.
    The decoder (``hzsr.sync.optical``) models the edges as linear ramps from the board spec, so
    this is a realistic mismatch it must live with.
    """

    tau_rise_us: float = 1.0
    tau_fall_us: float = 2.0


LED = LedResponse()


def _pulse_cum(u: np.ndarray, on: np.ndarray, length: np.ndarray, cycle: np.ndarray, led: LedResponse) -> np.ndarray:
    """Light integrated from the start of a cycle to ``u`` (0 <= u <= cycle), for a drive on during
    ``[on, on + length)`` of each cycle; the previous cycle's fall tail counts too."""
    tr, tf = led.tau_rise_us, led.tau_fall_us
    peak = 1 - np.exp(-length / tr)
    off = on + length

    def tail(y):  # fall tail integrated over [0, y] after an off edge
        return peak * tf * (1 - np.exp(-np.maximum(y, 0) / tf))

    y0 = cycle - off  # previous pulse's off edge, before this cycle's start
    pre = peak * tf * np.exp(-y0 / tf) * (1 - np.exp(-np.minimum(u, on) / tf))
    x = np.clip(u - on, 0, length)
    rise = x - tr * (1 - np.exp(-x / tr))
    return pre + rise + tail(u - off)


def led_light_us(window_start_us: np.ndarray, exposure_us: float, on: np.ndarray, length: np.ndarray,
                 cycle: np.ndarray, led: LedResponse = LED) -> np.ndarray:
    """Light (in us at full brightness) a periodic LED gives a row exposed over ``[a, a + exposure]``."""
    a = np.asarray(window_start_us, np.float64)
    u1 = np.mod(a, cycle)
    whole, rest = np.floor(exposure_us / cycle), np.mod(exposure_us, cycle)
    u2 = u1 + rest
    full = _pulse_cum(cycle, on, length, cycle, led)
    wrap = u2 > cycle
    part = np.where(wrap, full - _pulse_cum(u1, on, length, cycle, led)
                    + _pulse_cum(np.where(wrap, u2 - cycle, 0), on, length, cycle, led),
                    _pulse_cum(np.minimum(u2, cycle), on, length, cycle, led) - _pulse_cum(u1, on, length, cycle, led))
    return whole * full + part


def gray_light_us(window_start_us: np.ndarray, exposure_us: float, bit: int, spec: BoardSpec,
                  led: LedResponse = LED) -> np.ndarray:
    """Light the counter's LED of ``bit`` (0 = most significant) gives each row's window: the
    bit's state in each count, with a first-order edge wherever it changes (exposure < one count)."""
    a = np.asarray(window_start_us, np.float64)
    c = spec.cycle_us
    shift = spec.gray_bits - 1 - bit

    def state(n):
        return ((gray((n % 2**spec.gray_bits).astype(np.int64)) >> shift) & 1).astype(np.float64)

    def cum(n, x):  # light over [n c, n c + x] of count n, with its edge from count n - 1
        s, prev = state(n), state(n - 1)
        x = np.clip(x, 0, c)
        steady = s * x
        up = x - led.tau_rise_us * (1 - np.exp(-x / led.tau_rise_us))
        down = led.tau_fall_us * (1 - np.exp(-x / led.tau_fall_us))
        return np.where(s == prev, steady, np.where(s > prev, up, down))

    n0 = np.floor(a / c)
    u1, u2 = a - n0 * c, a - n0 * c + exposure_us
    return np.where(u2 <= c, cum(n0, u2) - cum(n0, u1), cum(n0, c) - cum(n0, u1) + cum(n0 + 1, u2 - c))


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
    tex = face_texture(spec)
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
          lambda i, a: LED_ON * led_light_us(a, exp_us, on[i], length[i], cycle[i]) / exp_us)
    paint(spec.gray_centres(), spec.led_size_m * 0.8,
          lambda i, a: LED_ON * gray_light_us(a, exp_us, i, spec) / exp_us)
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
