"""``hzsr sync optical``: the rig's true skew, measured by photographing the sync board.

The decoder owes nothing to the simulator: the board's spec is ``hzsr.sync.board`` (the board as
built), and this module has its own measurement model of how a rolling-shutter camera sees it
(``docs/sync-board.md``). For each frame:

1. **find** the board: the four ArUco markers (``cv2.aruco``) give the board-to-image homography
   ``H`` (``cv2.findHomography`` over their 16 corners); LEDs smaller than ``min_led_px`` are
   "no board" (too far, too low a resolution), never a guess;
2. **read** each LED: the mean grey level across the middle half of its image on the row ``y_j``
   through its centre, less the panel's black level (median at the points between LEDs);
3. **fit** the board time ``t0`` at the first row's exposure start. LED ``j`` on row ``y_j`` sees
   the window ``[t0 + y_j rho, t0 + y_j rho + e]`` (``rho = readout / height``, ``e`` the frame's
   exposure time). The model of its light: the drive is on during ``[on_j, on_j + length_j)`` of
   each cycle, each edge a linear ramp (``led_rise_us``, ``led_fall_us`` of the spec), so

       light_j(a) = sum_m [R_r(a + e - s_m) - R_r(a - s_m)] - [R_f(a + e - f_m) - R_f(a - f_m)]

   with ``s_m = on_j + m C_j``, ``f_m = s_m + length_j`` and ``R_r(x)`` the integral of a ramp
   of length ``r`` (``x^2 / 2r`` on it, ``x - r/2`` after). The reading is ``a light_j / e``;
   ``t0 mod C`` minimises ``sum_j (obs_j - a pred_j)^2`` with ``a`` in closed form: a grid over
   the cycle (2 us), then a parabola through the best three. Its standard error is
   ``sigma_res / sqrt(sum_j (a dpred_j/dt0)^2)``. A fit whose residual is above
   ``max_rel_residual`` of the amplitude is "no board": the rows disagree (a wrong readout, a
   smeared frame), and a number from it would be a silent error;
4. **count** cycles, bit by bit: Gray LED ``b`` is read on its own row ``y_b``, in its own window
   ``[t0 + y_b rho, + e]``, which may fall in the count before or after another bit's (a rolled
   camera). Each candidate count ``N`` predicts every bit's lit fraction in its own window; the
   one that fits all bits is kept, and a frame where none fits (or two fit alike) is "no board".

**The readout** ``rho H`` comes from the frame (``rolling_shutter_skew_ns``, the phone's
SENSOR_ROLLING_SHUTTER_SKEW in ``capture.json``). When a frame lacks it, ``--readout-ms`` is
taken as an assumption good to ``assumed_readout_rel_uncertainty`` (25 %), and without that the
whole plausible range of phone sensors (``readout_range_ms``, 5-35 ms) is allowed: the
uncertainty widens to cover it (``readout_term``: ``y_mean |rho - rho'|`` at the range's ends).

The optical skew of a capture is ``t0(ref_T) - t0(main_W)`` wrapped into half the board's period;
its uncertainty is ``3 sqrt(s_W^2 + s_T^2) + readout_W + readout_T``. It is written beside the
clock estimate of ``hzsr sync check`` in ``<session>/sync/optical.csv``, with a plot of one
against the other (``sync/optical.png``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from hzsr.core.config import load_config
from hzsr.core.errors import BoardNotFound
from hzsr.core.fileio import atomic_write_bytes, atomic_write_json
from hzsr.core.records import SessionRecord
from hzsr.sync.board import BoardSpec, gray, gray_to_int


@dataclass
class OpticalConfig:
    """Options of ``hzsr sync optical``; every default lives here."""

    readout_ms: float | None = None  # assumed readout, only for frames without rolling_shutter_skew_ns
    assumed_readout_rel_uncertainty: float = 0.25  # how far an assumed readout_ms may be off
    reported_readout_rel_uncertainty: float = 0.002  # ... and the phone's reported one (line-time rounding)
    readout_range_ms: tuple[float, float] = (5.0, 35.0)  # plausible phone readouts, when nothing is known
    grid_us: float = 2.0  # search step of the fit
    min_contrast: float = 20.0  # grey levels: a fit whose LED amplitude is below this is "no signal"
    min_led_px: float = 3.0  # an LED window smaller than this (either side) cannot be read
    max_rel_residual: float = 0.25  # fit residual / amplitude above this: the rows disagree, no board
    max_gray_error: float = 0.3  # worst |observed - predicted| lit fraction of a Gray bit that still fits


@dataclass
class FrameReading:
    t0_us: float  # board time at the first row's exposure start
    sigma_us: float  # 1-sigma of t0 from the fit
    mean_row: float  # mean image row of the LEDs (for the readout term)
    amplitude: float
    markers: int
    readout_term_us: float = 0.0  # how far t0 may move within the readout's uncertainty
    readout_ms: float = 0.0  # the readout the fit used
    readout_source: str = ""  # frame (the phone's), assumed (--readout-ms), range (nothing known)
    rel_residual: float = 0.0  # fit residual / amplitude


def _ramp_cum(x: np.ndarray, r: float) -> np.ndarray:
    """Integral of a linear ramp of length ``r`` (0 -> 1) from -inf to ``x``: the edge model."""
    x = np.asarray(x, np.float64)
    if r <= 0:
        return np.maximum(x, 0.0)
    return np.where(x <= 0, 0.0, np.where(x < r, x * x / (2 * r), x - r / 2))


def pulse_light_us(window_start_us: np.ndarray, exposure_us: float, on_us: np.ndarray, length_us: np.ndarray,
                   cycle_us: np.ndarray, rise_us: float, fall_us: float) -> np.ndarray:
    """The decoder's model of the light (us at full brightness) a periodic LED gives a window
    ``[a, a + exposure]``: on during ``[on + m cycle, on + length + m cycle)``, linear edges."""
    a = np.asarray(window_start_us, np.float64)
    base = np.floor(a / cycle_us) * cycle_us
    out = np.zeros(np.broadcast(a, on_us, cycle_us).shape)
    for m in range(-1 - int(np.ceil(exposure_us / np.min(cycle_us))), 2):
        s0 = base + on_us + m * cycle_us
        f0 = s0 + length_us
        out += (_ramp_cum(a + exposure_us - s0, rise_us) - _ramp_cum(a - s0, rise_us)) \
            - (_ramp_cum(a + exposure_us - f0, fall_us) - _ramp_cum(a - f0, fall_us))
    return out


def _detector(spec: BoardSpec):
    d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, spec.marker_dict))
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    return cv2.aruco.ArucoDetector(d, params)


def find_board(grey: np.ndarray, spec: BoardSpec) -> tuple[np.ndarray, int]:
    """Board-metres -> image homography from the ArUco markers (at least three of four)."""
    corners, ids, _ = _detector(spec).detectMarkers(grey)
    if ids is None:
        raise BoardNotFound("no ArUco marker found")
    want = spec.marker_corners()
    src, dst = [], []
    for c, i in zip(corners, ids.ravel(), strict=True):
        if int(i) in want:
            src.append(want[int(i)])
            dst.append(c.reshape(4, 2))
    if len(src) < 3:
        raise BoardNotFound(f"{len(src)} of the board's 4 markers found")
    h, _ = cv2.findHomography(np.concatenate(src), np.concatenate(dst), 0)
    if h is None:
        raise BoardNotFound("markers do not fit one plane")
    return h, len(src)


def _project(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = h @ np.c_[pts, np.ones(len(pts))].T
    return (p[:2] / p[2]).T


def _read(grey: np.ndarray, h: np.ndarray, centres: np.ndarray, size_m: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Level on the centre row of each LED (middle half of its width), that row, and whether the
    whole LED is inside the image."""
    g = grey.astype(np.float32)
    uv = _project(h, centres)
    lo, hi = _project(h, centres - size_m / 2), _project(h, centres + size_m / 2)
    inside = ((np.minimum(lo, hi) >= 1) & (np.maximum(lo, hi) <= np.array(g.shape[::-1]) - 2)).all(1)
    half = np.abs(_project(h, centres + [size_m / 4, 0])[:, 0] - uv[:, 0])
    rows = np.clip(np.round(uv[:, 1]).astype(int), 0, g.shape[0] - 1)
    out = np.empty(len(uv))
    for k, ((u, _), r, hw) in enumerate(zip(uv, rows, half, strict=True)):
        x0, x1 = int(np.floor(u - hw)), int(np.ceil(u + hw)) + 1
        seg = g[r, max(x0, 0):min(x1, g.shape[1])]
        out[k] = seg.mean() if seg.size else np.nan
    return out, rows.astype(np.float64), inside


def frame_readout(readout_ns: float | None, cfg: OpticalConfig) -> tuple[float, float, float, str]:
    """(readout, lowest, highest, source), ms: the frame's own, an assumed one, or the plausible range."""
    if readout_ns:
        r = readout_ns / 1e6
        u = cfg.reported_readout_rel_uncertainty
        return r, r * (1 - u), r * (1 + u), "frame"
    if cfg.readout_ms:
        r, u = cfg.readout_ms, cfg.assumed_readout_rel_uncertainty
        return r, r * (1 - u), r * (1 + u), "assumed"
    lo, hi = cfg.readout_range_ms
    return (lo + hi) / 2, lo, hi, "range"


def decode_frame(grey: np.ndarray, spec: BoardSpec, exposure_ns: int, cfg: OpticalConfig,
                 readout_ns: float | None = None) -> FrameReading:
    """Board time at the first row's exposure start of one frame (see the module docstring).

    ``readout_ns``: the frame's SENSOR_ROLLING_SHUTTER_SKEW, if the phone reported it.

    Raises:
        BoardNotFound: the board cannot be read honestly in this frame (the message says why).
    """
    h, n_markers = find_board(grey, spec)
    height = grey.shape[0]
    readout_ms, r_lo, r_hi, source = frame_readout(readout_ns, cfg)
    rho = readout_ms * 1e3 / height
    e = exposure_ns / 1e3
    leds = spec.led_centres()
    size_px = _led_size_px(h, leds, spec.led_size_m)
    if size_px < cfg.min_led_px:
        raise BoardNotFound(f"LED windows are {size_px:.1f} px, below {cfg.min_led_px:g}: too small to read "
                            "(shoot closer or at a higher resolution)")
    obs, rows, inside = _read(grey, h, leds, spec.led_size_m)
    on, length, cyc = spec.led_timing()
    slow = np.arange(len(leds)) >= spec.fast_rows * spec.cols
    if not inside[slow].all() or inside.sum() < spec.cols * 3:
        raise BoardNotFound("the LED panel is not wholly in the frame")
    # Black level: the panel between LEDs (diagonal midpoints), where no LED light falls.
    mids = leds[:-spec.cols - 1] + spec.pitch_m / 2
    black, _, bin_ = _read(grey, h, mids[(np.arange(len(mids)) % spec.cols) < spec.cols - 1], spec.led_size_m / 4)
    black_level = np.median(black[bin_]) if bin_.any() else 0.0
    obs, rows, on, length, cyc = (x[inside] for x in (obs - black_level, rows, on, length, cyc))
    cycle = spec.cycle_us

    def pred(t0: np.ndarray, rho_: float = rho) -> np.ndarray:  # (len(t0), leds)
        a = np.asarray(t0)[:, None] + rows[None, :] * rho_
        return pulse_light_us(a, e, on[None, :], length[None, :], cyc[None, :], spec.led_rise_us,
                              spec.led_fall_us) / e

    def cost(t0: np.ndarray, rho_: float = rho) -> tuple[np.ndarray, np.ndarray]:
        p = pred(t0, rho_)
        a = (p @ obs) / np.maximum((p * p).sum(1), 1e-9)
        return ((obs[None, :] - a[:, None] * p) ** 2).sum(1), a

    def fit(rho_: float) -> tuple[float, float, float]:
        grid = np.arange(0, cycle, cfg.grid_us)
        c, a = cost(grid, rho_)
        i = int(np.argmin(c))
        cm, c0, cp = c[i - 1], c[i], c[(i + 1) % len(c)]
        den = cm - 2 * c0 + cp
        frac = 0.5 * (cm - cp) / den if den > 0 else 0.0
        t0 = float((grid[i] + np.clip(frac, -1, 1) * cfg.grid_us) % cycle)
        cb, ab = cost(np.array([t0]), rho_)
        return t0, float(cb[0]), float(ab[0])

    t0, c_best, amp = fit(rho)
    if amp < cfg.min_contrast:
        raise BoardNotFound(f"LED amplitude {amp:.1f} below {cfg.min_contrast:g}: no running light seen")
    dof = max(len(obs) - 2, 1)
    rel_res = float(np.sqrt(c_best / dof) / amp)
    if rel_res > cfg.max_rel_residual:
        raise BoardNotFound(f"the LED rows disagree (fit residual {rel_res:.2f} of the amplitude, above "
                            f"{cfg.max_rel_residual:g}): a wrong readout ({readout_ms:g} ms, {source}) or a smeared "
                            "frame; no time is read from it"
                            + ("; the frame reports no readout: pass --readout-ms" if source == "range" else ""))
    d = 0.5
    deriv = (pred(np.array([t0 + d])) - pred(np.array([t0 - d])))[0] / (2 * d) * amp
    sigma = float(np.sqrt(c_best / dof) / np.sqrt(max((deriv**2).sum(), 1e-12)))
    # How far t0 moves if the true readout is anywhere in [r_lo, r_hi]: the fit puts the LED rows'
    # times right on average, so t0 moves by the mean row times the change of rho.
    term = float(np.mean(rows)) * max(readout_ms - r_lo, r_hi - readout_ms) * 1e3 / height
    # Cycle count from the Gray strip, bit by bit on each bit's own rows.
    count = _gray_count(grey, h, spec, black_level, amp, t0, rho, e, cfg)
    return FrameReading(count * cycle + t0, sigma, float(np.mean(rows)), amp, n_markers, term, readout_ms, source,
                        rel_res)


def _led_size_px(h: np.ndarray, centres: np.ndarray, size_m: float) -> float:
    """The smallest side, in pixels, of the LED windows' images."""
    lo, hi = _project(h, centres - size_m / 2), _project(h, centres + size_m / 2)
    return float(np.abs(hi - lo).min())


def _gray_count(grey: np.ndarray, h: np.ndarray, spec: BoardSpec, black: float, amp: float, t0: float,
                rho: float, e: float, cfg: OpticalConfig) -> int:
    """The count of cycles at the first row's exposure start (``t0`` in ``[0, C)``), from the Gray
    strip read bit by bit: LED ``b`` on its own row ``y_b`` sees ``[t0 + y_b rho, + e]``."""
    gcent = spec.gray_centres()
    gobs, grows, gin = _read(grey, h, gcent, spec.led_size_m * 0.8)
    if not gin.all():
        raise BoardNotFound("the Gray-code strip is not wholly in the frame")
    level = (gobs - black) / amp  # observed lit fraction of each bit
    c = spec.cycle_us
    start = t0 + grows * rho  # each bit's window, relative to the count at t0's start
    k0 = np.floor(start / c).astype(np.int64)  # the count (relative) each window starts in
    into = start - k0 * c
    first = np.clip(c - into, 0, e) / e  # fraction of the window in that count; the rest is in the next
    shift = spec.gray_bits - 1 - np.arange(spec.gray_bits)
    nmod = 2**spec.gray_bits

    def predicted(n0: int) -> np.ndarray:
        b1 = (gray((n0 + k0) % nmod) >> shift) & 1
        b2 = (gray((n0 + k0 + 1) % nmod) >> shift) & 1
        return first * b1 + (1 - first) * b2

    bits = [int(v > 0.5) for v in level]
    guess = gray_to_int(bits)
    cands = {(guess - k + j) % nmod for k in set(k0.tolist()) | {0} for j in (-1, 0, 1)}
    scored = sorted((float(np.abs(level - predicted(n)).max()), n) for n in cands)
    (err, best), runner = scored[0], (scored[1][0] if len(scored) > 1 else np.inf)
    if err > cfg.max_gray_error:
        raise BoardNotFound(f"the Gray counter fits no count (worst bit off by {err:.2f} of full); its LEDs "
                            "may be occluded or saturated")
    if runner <= err + 0.1:
        raise BoardNotFound("the Gray counter fits two counts alike; the cycle count is ambiguous")
    return int(best)


def wrap_us(x: float, period: float) -> float:
    return float(x - period * np.round(x / period))


def optical_skew(ra: FrameReading, rb: FrameReading, spec: BoardSpec) -> tuple[float, float]:
    """``t0(b) - t0(a)`` wrapped into half the board's period, and its uncertainty (us):
    ``3 sqrt(s_a^2 + s_b^2)`` plus both frames' readout terms."""
    s = wrap_us(rb.t0_us - ra.t0_us, spec.period_us)
    u = 3 * np.hypot(ra.sigma_us, rb.sigma_us) + ra.readout_term_us + rb.readout_term_us
    return s, float(u)


def _grey(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise BoardNotFound(f"cannot read image {path.name}")
    return img


def run_optical(session_dir: str | Path, board: str | Path | None = None, cfg: OpticalConfig | None = None,
                plots: bool = True) -> dict[str, Any]:
    """Decode every capture of a sync-board session; write ``sync/optical.csv`` (+ plot). Summary back."""
    from hzsr.sync.check import SyncThresholds, analyse, load_captures

    cfg = cfg or OpticalConfig()
    spec = load_config(BoardSpec, board) if board else BoardSpec()
    root = Path(session_dir)
    session = SessionRecord.load(root)
    recs, bad = load_captures(root)
    clock_df, _ = analyse(session, recs, bad, SyncThresholds())
    clock = clock_df.set_index("capture_id")
    rows = []
    for r in sorted(recs, key=lambda x: x.capture_id):
        row: dict[str, Any] = {"capture_id": r.capture_id, "scene_id": r.scene_id}
        readings: dict[str, FrameReading] = {}
        problems = []
        for f in r.frames:
            try:
                readings[f.slot] = decode_frame(_grey(root / "captures" / r.capture_id / f.file), spec,
                                                f.exposure_time_ns, cfg, f.rolling_shutter_skew_ns)
            except BoardNotFound as exc:
                problems.append(f"{f.slot}: {exc.message}")
        sources = sorted({x.readout_source for x in readings.values()})
        if "main_W" in readings and "ref_T" in readings:
            row["optical_skew_us"], row["optical_uncertainty_us"] = optical_skew(readings["main_W"], readings["ref_T"],
                                                                                 spec)
        if "main_W" in readings and "main_T" in readings:
            row["optical_wt_us"], row["optical_wt_uncertainty_us"] = optical_skew(readings["main_W"],
                                                                                  readings["main_T"], spec)
        row["readout_source"] = ",".join(sources)
        if r.capture_id in clock.index:
            row["clock_skew_us"] = clock.at[r.capture_id, "skew_ref_main_us"]
            row["clock_bound_us"] = clock.at[r.capture_id, "skew_bound_us"]
        row["status"] = "ok" if "optical_skew_us" in row else "no_board"
        row["reason"] = " | ".join(problems)
        rows.append(row)
    df = pd.DataFrame(rows, columns=["capture_id", "scene_id", "optical_skew_us", "optical_uncertainty_us",
                                     "clock_skew_us", "clock_bound_us", "optical_wt_us",
                                     "optical_wt_uncertainty_us", "readout_source", "status", "reason"])
    df["clock_minus_optical_us"] = df["clock_skew_us"] - df["optical_skew_us"]
    df["within_bound"] = (df["clock_minus_optical_us"].abs()
                          <= df["clock_bound_us"] + df["optical_uncertainty_us"])
    out = root / "sync"
    atomic_write_bytes(out / "optical.csv", df.to_csv(index=False).encode())
    ok = df[df["status"] == "ok"]
    diff = ok["clock_minus_optical_us"].dropna().to_numpy()
    summary = {
        "session_id": session.session_id, "captures": int(len(df)), "decoded": int(len(ok)),
        "board": asdict(spec), "config": asdict(cfg),
        "optical_skew_us": {"p50": _p(np.abs(ok["optical_skew_us"]), 50), "p95": _p(np.abs(ok["optical_skew_us"]), 95)},
        "optical_uncertainty_us_p50": _p(ok["optical_uncertainty_us"], 50),
        "clock_minus_optical_us": {"median": _p(diff, 50, signed=True), "p95_abs": _p(np.abs(diff), 95)},
        "clock_bound_covers": float(ok["within_bound"].mean()) if len(ok) else None,
        "readout_sources": sorted({x for v in ok["readout_source"].dropna() for x in str(v).split(",") if x}),
        "enough_decoded": bool(len(df)) and len(ok) * 2 >= len(df),
        "why_not_decoded": _why(df[df["status"] != "ok"]["reason"]),
    }
    atomic_write_json(out / "optical.json", json.loads(json.dumps(summary, default=float)))
    if plots and len(ok):
        _plot(out / "optical.png", ok, session.session_id)
    return summary


def _why(reasons: pd.Series, top: int = 3) -> list[str]:
    """The commonest reasons frames were not decoded, with their counts (each frame's own words)."""
    counts: dict[str, int] = {}
    for text in reasons.dropna():
        for part in str(text).split(" | "):
            msg = part.split(": ", 1)[-1]
            counts[msg] = counts.get(msg, 0) + 1
    return [f"{n} x {m}" for m, n in sorted(counts.items(), key=lambda x: -x[1])[:top]]


def _p(x, q, signed: bool = False):
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return round(float(np.percentile(x, q)), 2) if len(x) else None


def _plot(path: Path, ok: pd.DataFrame, name: str) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.errorbar(ok["optical_skew_us"], ok["clock_skew_us"], xerr=ok["optical_uncertainty_us"],
                yerr=ok["clock_bound_us"], fmt="o", ms=3, ecolor="0.7", elinewidth=0.8)
    lim = np.nanmax(np.abs(np.r_[ok["optical_skew_us"], ok["clock_skew_us"], 1.0])) * 1.3
    ax.plot([-lim, lim], [-lim, lim], "k--", lw=0.8, label="clock = optical")
    ax.set_xlabel("optical skew ref_T - main_W (us)")
    ax.set_ylabel("clock-estimated skew (us), bar = its bound")
    ax.set_title(f"{name}: clock vs optical skew")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
