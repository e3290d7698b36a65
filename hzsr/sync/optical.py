"""``hzsr sync optical``: the rig's true skew, measured by photographing the sync board.

For each frame (``docs/sync-board.md`` describes the board, :class:`hzsr.sync.board.BoardSpec`
its YAML):

1. **find** the board: the four ArUco markers (``cv2.aruco``) give the board-to-image homography
   ``H`` (``cv2.findHomography`` over their 16 corners);
2. **read** each LED: the mean grey level across the middle half of its image on the row ``y_j``
   through its centre, less the panel's black level (median at the points between LEDs);
3. **fit** the board time ``t0`` at the first row's exposure start. LED ``j`` on row ``y_j`` sees
   the window ``[t0 + y_j rho, t0 + y_j rho + e]`` (``rho = readout / height``, ``e`` the frame's
   exposure time), so its reading is ``a overlap_j(t0) / e`` (fast and slow lights alike; LEDs
   outside the image are left out). ``t0 mod C`` minimises
   ``sum_j (obs_j - a pred_j)^2`` with ``a`` in closed form: a grid over the cycle (2 us), then a
   parabola through the best three. Its standard error is ``sigma_res / sqrt(sum_j (a dpred_j/dt0)^2)``;
4. **count** cycles: the Gray-code strip on row ``y_g`` reads the count at mid-window
   ``t0 + y_g rho + e / 2``; that fixes ``t0`` modulo ``2^bits C``.

The optical skew of a capture is ``t0(ref_T) - t0(main_W)`` wrapped into half the board's period;
its uncertainty is ``3 sqrt(s_W^2 + s_T^2) + readout_rel_uncertainty (|y_W| + |y_T|) rho``. It is
written beside the clock estimate of ``hzsr sync check`` in ``<session>/sync/optical.csv``, with
a plot of one against the other (``sync/optical.png``).
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
from hzsr.sync.board import BoardSpec, gray_to_int, lit_overlap_us


@dataclass
class OpticalConfig:
    """Options of ``hzsr sync optical``; every default lives here."""

    readout_ms: float = 10.0  # rolling-shutter skew, first to last row (SENSOR_ROLLING_SHUTTER_SKEW)
    readout_rel_uncertainty: float = 0.0  # relative error of readout_ms (0: it came from the HAL)
    grid_us: float = 2.0  # search step of the fit
    min_contrast: float = 20.0  # grey levels: a fit whose LED amplitude is below this is "no signal"


@dataclass
class FrameReading:
    t0_us: float  # board time at the first row's exposure start
    sigma_us: float  # 1-sigma of t0 from the fit
    mean_row: float  # mean image row of the LEDs (for the readout term)
    amplitude: float
    markers: int


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


def decode_frame(grey: np.ndarray, spec: BoardSpec, exposure_ns: int, cfg: OpticalConfig) -> FrameReading:
    """Board time at the first row's exposure start of one frame (see the module docstring)."""
    h, n_markers = find_board(grey, spec)
    height = grey.shape[0]
    rho = cfg.readout_ms * 1e3 / height
    e = exposure_ns / 1e3
    leds = spec.led_centres()
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

    def pred(t0: np.ndarray) -> np.ndarray:  # (len(t0), leds)
        a = np.asarray(t0)[:, None] + rows[None, :] * rho
        return lit_overlap_us(a, e, on[None, :], length[None, :], cyc[None, :]) / e

    def cost(t0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = pred(t0)
        a = (p @ obs) / np.maximum((p * p).sum(1), 1e-9)
        return ((obs[None, :] - a[:, None] * p) ** 2).sum(1), a

    grid = np.arange(0, cycle, cfg.grid_us)
    c, a = cost(grid)
    i = int(np.argmin(c))
    if a[i] < cfg.min_contrast:
        raise BoardNotFound(f"LED amplitude {a[i]:.1f} below {cfg.min_contrast:g}: no running light seen")
    cm, c0, cp = c[i - 1], c[i], c[(i + 1) % len(c)]
    den = cm - 2 * c0 + cp
    frac = 0.5 * (cm - cp) / den if den > 0 else 0.0
    t0 = float((grid[i] + np.clip(frac, -1, 1) * cfg.grid_us) % cycle)
    c_best, a_best = cost(np.array([t0]))
    d = 0.5
    deriv = (pred(np.array([t0 + d])) - pred(np.array([t0 - d])))[0] / (2 * d) * a_best[0]
    dof = max(len(obs) - 2, 1)
    sigma = float(np.sqrt(c_best[0] / dof) / np.sqrt(max((deriv**2).sum(), 1e-12)))
    # Cycle count from the Gray strip, read at its own rows' mid-window.
    gcent = spec.gray_centres()
    gobs, grows, gin = _read(grey, h, gcent, spec.led_size_m * 0.8)
    if not gin.all():
        raise BoardNotFound("the Gray-code strip is not wholly in the frame")
    gobs = gobs - black_level
    bits = [int(v > 0.5 * a_best[0]) for v in gobs]
    count = gray_to_int(bits)
    mid = t0 + float(np.mean(grows)) * rho + e / 2
    n = (count - int(np.floor(mid / cycle))) % 2**spec.gray_bits
    return FrameReading(n * cycle + t0, sigma, float(np.mean(rows)), float(a_best[0]), n_markers)


def wrap_us(x: float, period: float) -> float:
    return float(x - period * np.round(x / period))


def optical_skew(ra: FrameReading, rb: FrameReading, spec: BoardSpec, cfg: OpticalConfig,
                 rho_us: float) -> tuple[float, float]:
    """``t0(b) - t0(a)`` wrapped into half the board's period, and its uncertainty (us)."""
    s = wrap_us(rb.t0_us - ra.t0_us, spec.period_us)
    u = 3 * np.hypot(ra.sigma_us, rb.sigma_us) + cfg.readout_rel_uncertainty * (ra.mean_row + rb.mean_row) * rho_us
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
                                                f.exposure_time_ns, cfg)
            except BoardNotFound as exc:
                problems.append(f"{f.slot}: {exc}")
        rho = cfg.readout_ms * 1e3 / (r.frames[0].height if r.frames else 1)

        if "main_W" in readings and "ref_T" in readings:
            row["optical_skew_us"], row["optical_uncertainty_us"] = optical_skew(
                readings["main_W"], readings["ref_T"], spec, cfg, rho)
        if "main_W" in readings and "main_T" in readings:
            row["optical_wt_us"], row["optical_wt_uncertainty_us"] = optical_skew(
                readings["main_W"], readings["main_T"], spec, cfg, rho)
        if r.capture_id in clock.index:
            row["clock_skew_us"] = clock.at[r.capture_id, "skew_ref_main_us"]
            row["clock_bound_us"] = clock.at[r.capture_id, "skew_bound_us"]
        row["status"] = "ok" if "optical_skew_us" in row else "no_board"
        row["reason"] = " | ".join(problems)
        rows.append(row)
    df = pd.DataFrame(rows, columns=["capture_id", "scene_id", "optical_skew_us", "optical_uncertainty_us",
                                     "clock_skew_us", "clock_bound_us", "optical_wt_us",
                                     "optical_wt_uncertainty_us", "status", "reason"])
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
    }
    atomic_write_json(out / "optical.json", json.loads(json.dumps(summary, default=float)))
    if plots and len(ok):
        _plot(out / "optical.png", ok, session.session_id)
    return summary


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
