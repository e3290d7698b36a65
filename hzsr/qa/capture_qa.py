"""QA of one capture: read its three frames, register the three pairings, measure, judge.

A capture's problems (a missing or undecodable frame, mismatched sizes, absent AF metadata, a
broken ``capture.json``) become reasons in its row; nothing here raises for bad data, so a
session run always goes on to the next capture.

Pairings (SRC grid first; the flow convention of ``hzsr.qa.align``):

- ``wt``: main W crop vs main T (source vs target);
- ``tt``: main T vs reference T;
- ``wr``: main W crop vs reference T (the training pairing).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hzsr.core.errors import HzsrError, ImageRefused, ImageTooLarge
from hzsr.core.imageio import check_image_size
from hzsr.core.records import CaptureRecord, FrameRecord
from hzsr.core.verdict import Reason, Verdict, verdict_of
from hzsr.qa import rig_offset
from hzsr.qa.align import (
    GlobalShift,
    crop_w_to_t,
    flow_grid_scale,
    gate_shift,
    global_translation,
    prefer_expected,
    prefer_structure,
    to_luma,
)
from hzsr.qa.config import QAConfig
from hzsr.qa.maps import occlusion_map, plane_at_other_focus
from hzsr.qa.quality import (
    band_sharpness_ratio,
    brightness_log_ratio,
    channel_max,
    clip_roi,
    colour_delta,
    directional_share_ratios,
    directional_sharpness_ratios,
    frame_quality,
    matched_interpolation,
    sharpness,
)
from hzsr.qa.register import Registration, defocus_at_plane, plane_for_other_focus, register_pair
from hzsr.qa.stereo_occlusion import add_hidden, alike_fold, hidden_through_main_t, hidden_through_the_ts, with_fold

PAIRINGS = {"wt": ("main_W", "main_T"), "tt": ("main_T", "ref_T"), "wr": ("main_W", "ref_T")}
_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}
# OpenCV >= 4.11 decodes straight to RGB (libjpeg-turbo writes the channels in that order: the same
# pixels as BGR then cv2.cvtColor, without the copy); older ones decode BGR and convert.
_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)
_REDUCED_RGB = {r: (f & ~cv2.IMREAD_COLOR) | _RGB for r, f in _REDUCED.items()} if _RGB is not None else None

@dataclass
class CaptureQA:
    """The row of one capture, its reasons, and the images the report shows."""

    capture_id: str
    row: dict[str, Any] = field(default_factory=dict)
    reasons: list[Reason] = field(default_factory=list)
    images: dict[str, np.ndarray] = field(default_factory=dict)  # thumbnails and maps, uint8
    seconds: float = 0.0
    # Per graded figure, the lowest and highest verdict rank it gives when moved by
    # +-check.quick_margin of itself: what a coarser measurement could have said (``quick_check``).
    spread: list[tuple[str, int, int]] = field(default_factory=list)  # (code, lowest rank, highest rank)
    margin: float = 0.0  # the relative margin of ``spread`` (0: exact)
    # Per figure tag, the quick check's measured uncertainty in the figure's own units
    # (``check.quick_margins``); a tag without one falls back to the relative ``margin``.
    # A pair: (below, above) the quick value, each side apart (``check.quick_margins_directed``).
    abs_margins: dict[str, float | tuple[float, float]] = field(default_factory=dict)
    # Per figure tag whose ideal is 1, its margin as a share of max(1 - value, shortfall_floor)
    # (``check.quick_margins_shortfall``); it takes precedence over ``abs_margins``.
    shortfall_margins: dict[str, float] = field(default_factory=dict)
    shortfall_floor: float = 0.02
    graded: list[tuple[str, float]] = field(default_factory=list)  # (figure tag, value) of every graded figure
    # The reasons a graded figure gave (``_grade``): ``spread`` speaks for them in ``decided``.
    graded_reasons: list[Reason] = field(default_factory=list)
    # moving_object's spread before ``moving_undecided_off_the_rig`` (the quick check; restored
    # where large_shift, graded again with the session's offset, can no longer warn).
    moving_spread: tuple[str, int, int] | None = None

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.reasons)

    def _fixed_rank(self) -> int:
        """The worst level of the reasons no graded figure gave (a missing frame, no overlap)."""
        return max((r.level.rank for r in self.reasons if not any(r is g for g in self.graded_reasons)),
                   default=0)

    def undecided_by(self) -> list[str]:
        """The codes whose figure could raise the verdict above its lowest possible value."""
        lo = max([self._fixed_rank()] + [a for _, a, _ in self.spread])
        return sorted({c for c, _, b in self.spread if b > lo})

    def decided(self) -> Verdict | None:
        """The verdict if every figure near a threshold gives it on either side; else None.

        The verdict is the worst level: its lowest possible value is the worst of each reason's
        lowest, its highest the worst of the highest. Reasons not from a graded figure (a missing
        frame, no overlap) count at their level; a graded figure's own reason does not set a floor
        (its quick value may lie on the wrong side of the threshold: its spread says so).
        """
        fixed = self._fixed_rank()
        lo = max([fixed] + [a for _, a, _ in self.spread])
        hi = max([fixed] + [b for _, _, b in self.spread])
        return [Verdict.PASS, Verdict.WARN, Verdict.FAIL][lo] if lo == hi else None

    def add(self, level: str, code: str, message: str) -> None:
        self.reasons.append(Reason(Verdict(level), code, message))

def _k(f: FrameRecord, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of ``f`` for its image resampled by (sx, sy) (pixel centres stay centres)."""
    i = f.intrinsics
    return np.array([[i.fx * sx, 0, (i.cx + 0.5) * sx - 0.5], [0, i.fy * sy, (i.cy + 0.5) * sy - 0.5], [0, 0, 1]])

def _reduction(long_side: int, target: int) -> int:
    """Largest JPEG DCT scaling (1, 2, 4, 8) that keeps the long side >= 3/4 of ``target``."""
    r = 1
    while r < 8 and long_side / (2 * r) >= 0.75 * target:
        r *= 2
    return r

def _w_reduction(crop_w: float, need_w: float) -> int:
    """Largest JPEG DCT scaling (1, 2, 4, 8) that keeps a W crop ``crop_w`` W px wide at least
    ``need_w`` px wide."""
    r = 1
    while r < 8 and crop_w / (2 * r) >= need_w:
        r *= 2
    return r


@dataclass(frozen=True)
class DecodeScales:
    """The JPEG DCT scaling of each frame of a capture, for ``qa check`` or the quick check.

    ``decode``: per slot, the scaling its JPEG is decoded with; ``analysis``: per slot, the
    scaling whose size the analysis image has (the quick check's Ts are decoded at ``qa
    check``'s scaling for the AF ROI and resized to the coarser one; elsewhere the two agree).
    ``check``: per slot, ``qa check``'s own scaling (what the quick check compares itself with).
    ``w_crop_px``: main W's crop of T's view in the W px ``qa check`` and this check decode
    (None without main W and main T).
    """

    decode: dict[str, int]
    analysis: dict[str, int]
    check: dict[str, int]
    w_crop_px: tuple[float, float] | None


def decode_scales(frames: dict[str, FrameRecord], cfg: QAConfig, *, quick: bool) -> DecodeScales:
    """Every decode scaling of one capture, from ``capture.json``'s sizes: the one rule, for
    ``qa check`` and the quick check alike (the quick check's figures are compared with ``qa
    check``'s at the scalings this gives both).

    - A T: the largest scaling that keeps its long side >= 3/4 of ``check.analysis_long_side``
      (``qa check``) or ``check.quick_long_side`` (quick). The quick check decodes both Ts at ``qa
      check``'s scaling where ``check.quick_fine_af_roi`` and keeps that image for the AF ROI (the
      focus sharpness ratio measured on a 320-384 px T misses a blur of a few px that ``qa
      check`` sees at 1000-1280); its own analysis image is that one resized to the size its
      coarser scaling would have given.
    - Main W: the largest scaling whose crop of T's view keeps at least
      ``check.w_crop_min_share`` (``qa check``) or ``check.quick_w_crop_min_share`` (quick) of
      T's analysis width at that check's T scaling; without main T, a T's rule.

    Every scaling is taken before any pixel is decoded (the size-before-decode guard reads each
    header first, ``check_image_size``); a coarser scaling than these would leave an analysis
    fewer pixels than it measures on (docs/qa.md, helper issue18decode).
    """
    ch = cfg.check
    dec: dict[str, int] = {}
    ana: dict[str, int] = {}
    chk: dict[str, int] = {}
    for slot, f in frames.items():
        if slot in ("main_T", "ref_T"):
            long = max(f.width, f.height)
            chk[slot] = _reduction(long, ch.analysis_long_side)
            ana[slot] = _reduction(long, ch.quick_long_side) if quick else chk[slot]
            dec[slot] = min(chk[slot], ana[slot]) if quick and ch.quick_fine_af_roi else ana[slot]
    w_crop_px = None
    fw, ft = frames.get("main_W"), frames.get("main_T")
    if fw is not None:
        if ft is None:  # no T to crop W to: W at T's rule (no crop is registered without main T)
            chk["main_W"] = _reduction(max(fw.width, fw.height), ch.analysis_long_side)
            ana["main_W"] = _reduction(max(fw.width, fw.height), ch.quick_long_side) if quick else chk["main_W"]
        else:
            cw = ft.width * fw.intrinsics.fx / ft.intrinsics.fx  # W pixels across T's field of view
            # W's crop is upsampled onto T's grid and compared there at W's optical resolution:
            # it keeps most of T's analysis width (the T width its DCT scaling gives).
            t_w = ft.width / _reduction(max(ft.width, ft.height), ch.analysis_long_side)
            chk["main_W"] = _w_reduction(cw, ch.w_crop_min_share * t_w)
            if quick:
                t_wq = ft.width / _reduction(max(ft.width, ft.height), ch.quick_long_side)
                ana["main_W"] = _w_reduction(cw, ch.quick_w_crop_min_share * t_wq)
            else:
                ana["main_W"] = chk["main_W"]
            w_crop_px = (cw / chk["main_W"], cw / ana["main_W"])
        dec["main_W"] = ana["main_W"]
    return DecodeScales(dec, ana, chk, w_crop_px)


def _decode(path: Path, reduce: int) -> tuple[np.ndarray | None, str | None]:
    """RGB uint8, or None and why. A JPEG without its end marker counts as undecodable."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    if data.size == 0:
        return None, "empty file"
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-64:].tobytes():
        return None, "truncated JPEG (no end-of-image marker)"
    if _REDUCED_RGB is not None:
        img = cv2.imdecode(data, _REDUCED_RGB[reduce])
        return (None, "not a decodable image") if img is None else (img, None)
    img = cv2.imdecode(data, _REDUCED[reduce])
    if img is None:
        return None, "not a decodable image"
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), None

def _fit_size(w: int, h: int, target: int) -> tuple[int, int]:
    """The (width, height) ``_fit_long`` gives an image of ``w`` x ``h``."""
    if max(h, w) <= 1.25 * target:
        return w, h
    s = target / max(h, w)
    return round(w * s), round(h * s)


def _fit_long(img: np.ndarray, target: int) -> np.ndarray:
    h, w = img.shape[:2]
    size = _fit_size(w, h, target)
    return img if size == (w, h) else cv2.resize(img, size, interpolation=cv2.INTER_AREA)

def _thumb(img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(1.0, long_side / max(h, w))
    if s >= 1.0:
        return img
    return cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)

def second_motion(src: np.ndarray, ref: np.ndarray, r_tt: Registration, cfg: QAConfig, *,
                  flow_units: float = 1.0, info: dict[str, float] | None = None,
                  row_figures: bool = True, static_shift: tuple[float, float] | None = None,
                  static_bound_px: float = 0.0) -> Registration | None:
    """T vs T registered again from the translation of what the first registration lost.

    The dense flow starts from one global translation (the keypoints' majority). When a moving
    subject fills half the frame and moves far between the two instants (a sync skew), that
    majority is the subject: DIS, started at its shift, never finds the static scene 50-200 px
    away, the scene is forward-backward inconsistent and left out, and what is left (the subject)
    is consistent with itself (``moving_frac`` 0.002-0.04 on movers of 94-205 px in the labelled
    set). The keypoints of the pixels the first flow could not explain (``M_occ >= 0.5`` or out
    of frame) give a second translation; two translations that differ across the mount's baseline
    by more than ``thresholds.second_motion_px`` (flow-grid px) cannot both be static (across it a
    static scene has only the mount's rotation term), so T vs T is registered again from the
    second one (if it lies within ``thresholds.second_motion_max_frac`` of the frame from the
    first: a periodic background's keypoints can agree on a shift of most of the frame), and
    ``motion_inconsistency`` takes each pixel's flow from whichever registration explains it.
    ``row_figures``: ``register_pair``'s (False: only what a verdict reads).

    Evidence of a second motion is a part of the scene the first registration saw and could not
    explain. A second translation is refused where the first registration explained nearly all it
    saw (it lost under ``thresholds.second_motion_min_seen_lost`` of the pixels its flow lands in
    the reference's frame for) while most of what the second registration explains (more than
    ``thresholds.second_motion_max_unseen``) lies where the first never saw (outside the
    reference's frame at the first flow). ``make demo``'s bump of the reference phone (-0.50 of
    the width over a mirror-tiled backdrop, the first registration at the bump) left half of main
    T outside the reference's frame; the keypoints there agreed on a texture period, (-151, -52) px
    (49 inliers), whose registration explained 0.10 of the frame, 0.66 of it unseen by the first,
    while the first lost 0.20 of what it saw; read as the static scene it made the bump 0.22 of
    the width. A mover that took the first translation makes the first lose the static scene:
    0.44-0.79 of what it saw on the calibration seeds (both sizes, both checks). Each condition
    alone would be weaker: a small mover found second, the first at the static scene, is lost
    over little of the view but lies inside it; a mover's static scene can lie half outside the
    frame (0.51). Not used: the band-passed correlation at the second translation (0.04-0.74 on
    the calibration movers, whose static scenes span depths; -0.08 for the demo's period) and the
    reference's correlation with itself at the lag (-0.1: no period of the whole image).
    ``info`` (when given) receives ``second_unseen``, ``first_seen_lost`` and the candidate
    ``second_dx/dy``. ``static_shift``: where the rig puts the static scene (its parallax at the
    focus distance, analysis px; the static scene lies there up to the two Ts' rotation,
    ``static_bound_px`` = ``tt_offset_bound_px``); where the first registration departs from it
    across the baseline by more than that bound (it cannot be the static scene) and lost at least
    ``thresholds.second_motion_min_seen_lost`` of what it saw, T vs T is also registered from
    there, and the candidate that explains more of the lost pixels with a motion of its own wins.

    Returns:
        The second registration, or None when there is no second translation that departs and
        lines up what it explains.
    """
    b = np.asarray(cfg.rig.ref_baseline_m, np.float64)
    if not np.hypot(*b) > 0:
        return None
    lost = ~(r_tt.valid & (r_tt.occlusion < 0.5))
    if lost.mean() < 0.1:
        return None
    # Keypoints only where the first flow lost the scene, in both Ts (a black fill instead gave the
    # mask's outline the strongest corners, and in the reference T the mover took most of the
    # strongest corners: 11-12 inliers on a 1280 px mover, at align.min_inliers).
    g = r_tt.grid_scale
    lost_ref = occlusion_map(r_tt.flow_bwd * g, r_tt.flow_fwd * g, cfg.maps.occlusion_scale) >= 0.5
    g2, used = gate_shift(global_translation(src, ref, cfg, src_mask=lost, ref_mask=lost_ref), cfg)
    e = b / np.hypot(*b)
    e_perp = np.array([-e[1], e[0]])
    h, w = src.shape[:2]
    seen = r_tt.valid
    seen_lost = float((lost & seen).sum() / max(int(seen.sum()), 1))
    rcfg = replace(cfg, maps=replace(cfg.maps, hidden=False))

    def departs(dx: float, dy: float) -> bool:
        # Two translations that differ across the baseline cannot both be static; keypoints of a
        # periodic background can agree on a shift of most of the frame (clean 1280 px portraits:
        # 0.60-0.75 of the width away from the first), whose registration explains a sliver and
        # read as 0.06-0.14 moving; the movers' two translations lie 0.10-0.25 of the width apart.
        across = abs((dx - r_tt.shift.dx) * e_perp[0] + (dy - r_tt.shift.dy) * e_perp[1])
        return (across * r_tt.grid_scale * flow_units > cfg.thresholds.second_motion_px
                and np.hypot((dx - r_tt.shift.dx) / w, (dy - r_tt.shift.dy) / h)
                <= cfg.thresholds.second_motion_max_frac)

    def explains(r: Registration) -> np.ndarray:
        # What the first saw and lost that r explains with a motion of its own (not the first's).
        m = lost & seen & r.valid & (r.occlusion < 0.5)
        across = np.abs((r.flow_fwd[..., 0] - r_tt.shift.dx) * e_perp[0]
                        + (r.flow_fwd[..., 1] - r_tt.shift.dy) * e_perp[1])  # input px
        return m & (across * r_tt.grid_scale * flow_units > cfg.thresholds.moving_px)

    second = None
    if used and departs(g2.dx, g2.dy):
        second = register_pair(src, ref, rcfg, shift=g2, flow_units=flow_units, row_figures=row_figures,
                               rejected=row_figures)
    # Where the first registration followed a mover and lost much of what it saw, the static scene
    # lies where the rig puts it (``static_shift``: the rig's parallax at the focus distance, up to
    # the two Ts' small rotation), which the lost pixels' keypoints need not find (another mover
    # can take them, its flow then joining the first's: calibration lab-1807 c00013 at 480x360,
    # the walker and the mover took both translations and 0.72 of T's view stayed unexplained).
    # T vs T is registered from there too, and the one that explains more of what the first saw
    # and lost with a motion of its own is the second. No keypoints vouch for the rig's shift, so
    # what it explains must lie mostly where the first saw (at most second_motion_max_unseen
    # outside the reference's frame at the first flow): a bumped phone's first registration loses
    # 0.36 of what it saw (lab-1802 c00019, c00043 at 480x360), and from the rig's parallax the
    # flow lined up only what the bump had carried out of the reference's frame (0.90-1.0 of it).
    # The rig's shift lacks the two Ts' rotation (unknown to a lone capture, up to static_bound_px
    # across): only a first translation beyond that bound cannot be the static scene (a clean
    # 640x480 capture, test_verdicts' seed 4242 c00000, failed moving_object when any departure of
    # second_motion_px let the rig's shift in).
    first_off = abs((r_tt.shift.dx - static_shift[0]) * e_perp[0]
                    + (r_tt.shift.dy - static_shift[1]) * e_perp[1]) if static_shift is not None else 0.0
    if (cfg.check.second_motion_from_rig and static_shift is not None and first_off > static_bound_px
            and seen_lost >= cfg.thresholds.second_motion_min_seen_lost and departs(*static_shift)):
        rig = register_pair(src, ref, rcfg, shift=GlobalShift(0.0, 0.0, 0, 0), fallback_shift=static_shift,
                            flow_units=flow_units, row_figures=row_figures, rejected=row_figures)
        rig_explained = lost & rig.valid & (rig.occlusion < 0.5)
        n_rig = int(rig_explained.sum())
        rig_unseen = float((rig_explained & ~seen).sum() / n_rig) if n_rig else 1.0
        n_new = int(explains(rig).sum())
        if n_new and rig_unseen <= cfg.thresholds.second_motion_max_unseen and (
                second is None or n_new > int(explains(second).sum())):
            second, g2 = rig, rig.shift
    if second is None:
        return None
    # Only what the first registration saw (its flow lands in the reference's frame) and could not
    # explain is evidence of a second motion; what it never saw, a texture period can explain.
    explained = lost & second.valid & (second.occlusion < 0.5)
    n = int(explained.sum())
    unseen = float((explained & ~r_tt.valid).sum() / n) if n else 1.0
    if info is not None:
        info.update(second_unseen=unseen, second_dx=float(g2.dx), second_dy=float(g2.dy), first_seen_lost=seen_lost)
    if unseen > cfg.thresholds.second_motion_max_unseen and seen_lost < cfg.thresholds.second_motion_min_seen_lost:
        return None
    return second


def motion_inconsistency(r_tt: Registration, cfg: QAConfig, step: int = 4,
                         flow_units: float = 1.0,
                         second: Registration | None = None,
                         static_shift: tuple[float, float] | None = None,
                         static_bound_px: float = 0.0) -> tuple[float, np.ndarray]:
    """Fraction of main T whose flow to the reference T is not parallax, and the map.

    The two T cameras have (nearly) the same orientation and a fixed baseline, so a static scene's
    flow between them is a smooth rotation term plus parallax along one direction ``e`` (the
    mount's baseline, ``rig.ref_baseline_m``; without one, the principal direction of the flow's
    variation). Across ``e`` only the
    smooth term remains: an affine fit (trimmed least squares) of the flow component along ``e⊥``
    explains every static pixel. What moved between the two instants (a skew and a moving
    subject) departs from it. Only forward-backward consistent pixels count. Departure in
    flow-grid pixels; a pixel counts when it exceeds ``thresholds.moving_px``. ``flow_units``:
    flow-grid px of the grid that threshold was set for per px of this one (the quick check
    passes qa check's grid width over its own). ``second``: T vs T registered from a second
    translation (``second_motion``); a pixel the first flow does not explain takes its flow, each
    registration's pixels get their own fit, the smaller group counts as moving when the two fits
    differ by more than ``moving_px``, and the figure is the larger of the first registration's
    alone and that over both. Which of the two moved: with ``static_shift`` (the rig's parallax at
    the focus distance, analysis px: where the static scene lies up to the two Ts' rotation, at
    most ``static_bound_px`` across), where exactly one of the two translations departs from it
    across the baseline by more than that bound, that one (across it a static scene has only the
    rotation term); else the smaller group.
    """
    g = r_tt.grid_scale
    f = r_tt.flow_fwd[::step, ::step].reshape(-1, 2).astype(np.float64) * g
    h, w = r_tt.flow_fwd.shape[:2]
    yy, xx = np.mgrid[0:h:step, 0:w:step]
    ok = (r_tt.valid & (r_tt.occlusion < 0.5))[::step, ::step].ravel()
    groups = [ok]  # pixels each registration explains: the first's, then the second's
    if second is not None:
        ok2 = (second.valid & (second.occlusion < 0.5))[::step, ::step].ravel() & ~ok
        f[ok2] = second.flow_fwd[::step, ::step].reshape(-1, 2)[ok2].astype(np.float64) * second.grid_scale
        if ok2.sum() >= 50:
            groups.append(ok2)
    moving = np.zeros(len(f), bool)
    if ok.sum() < 50:
        return 0.0, moving.reshape(xx.shape)
    b = np.asarray(cfg.rig.ref_baseline_m, np.float64)
    if np.hypot(*b) > 0:
        # The mount's baseline (rig config) is the parallax direction. The flow's own principal
        # direction is not: a mover's motion can dominate it (and is then explained away), and
        # where depth spreads the flow little, the rotation term's and DIS's errors tilt it, so
        # a clean scene's depth step leaks across and reads as motion (clean captures failed so).
        e = b / np.hypot(*b)
        e_perp = np.array([-e[1], e[0]])
    else:  # no baseline configured: the principal direction of the flow's variation
        d = f[ok] - np.median(f[ok], axis=0)
        _, _, vt = np.linalg.svd(d - d.mean(0), full_matrices=False)
        e_perp = np.array([-vt[0, 1], vt[0, 0]])
    p = f @ e_perp
    x = np.column_stack([xx.ravel() / w - 0.5, yy.ravel() / h - 0.5, np.ones(len(f))])
    fits = []
    for grp in groups:  # each registration's pixels: their own static term across the baseline
        sel = grp.copy()
        for _ in range(3):  # trimmed least squares: refit on the best 70 %
            a, *_ = np.linalg.lstsq(x[sel], p[sel], rcond=None)
            resid = np.abs(x @ a - p)
            sel = grp & (resid <= np.percentile(resid[grp], 70))
        moving |= grp & (resid * flow_units > cfg.thresholds.moving_px)
        fits.append(a)
    first = float(moving[groups[0]].mean())  # the figure without a second registration
    if len(groups) == 2:
        # Two registrations whose static terms differ across the baseline by more than moving_px
        # over the frame are two motions. The one that moved departs further across the baseline
        # from the rig's parallax: "the smaller group moved" fails where a mover fills more of the
        # view than the static scene both registrations saw, or where both followed movers and the
        # static scene was lost (calibration lab-1807 c00013, 480x360: the walker and the mover
        # took the two translations, 0.24 and 0.04 of the view, and the figure read 0.08).
        gap = np.median(np.abs(x @ (fits[0] - fits[1]))) * flow_units
        if gap > cfg.thresholds.moving_px:
            off = [abs((r.shift.dx - static_shift[0]) * e_perp[0] + (r.shift.dy - static_shift[1]) * e_perp[1])
                   for r in (r_tt, second)] if static_shift is not None and np.hypot(*b) > 0 else [0.0, 0.0]
            beyond = [o > static_bound_px for o in off]
            if beyond[0] != beyond[1]:  # one of them cannot be the static scene: it moved
                moved = int(beyond[1])
            else:
                moved = int(groups[1].sum() < groups[0].sum())
            moving |= groups[moved]
    union = groups[0] | (groups[1] if len(groups) == 2 else False)
    # The larger of the two readings: within the first registration alone (the figure without a
    # second), and over both (the second adds what the first lost).
    return max(first, float(moving[union].mean())), moving.reshape(xx.shape)


def analyse_capture(capture_dir: str | Path, cfg: QAConfig | None = None, *, quick: bool = False,
                    thumbs: bool = True, focus_offsets: dict[str, tuple[float, float]] | None = None,
                    row_figures: bool = True, gate_inliers: dict[str, int] | None = None,
                    check_keypoints: bool = False) -> CaptureQA:
    """Everything ``hzsr qa check`` knows about one capture folder. Never raises for bad data.

    ``row_figures``: False leaves out the row's figures that no verdict reads (SSIM, MAE,
    ``M_flow``'s fraction, the flow's residual, the W-crop blur ratios, and the W-crop blur
    anisotropy where T vs T's is graded instead): the capture line's quick check (``quick_check``)
    shows a verdict only (about 0.02 s of a 12 MP quick analysis's CPU). Verdicts, reasons and
    every graded figure are the same either way; ``qa check --quick`` keeps them for its CSV.

    ``gate_inliers``: per pairing (``wt``, ``wr``, ``tt``), its keypoint vote counted as having
    this many inliers (its shift unchanged): the quick check's look at the other side of the
    inlier gate (``align.min_inliers``, ``thresholds.fail_min_inliers``), where ``qa check``'s
    count may lie (``quick_check``, ``quick_gate_counts``). None, or a pairing not named: as counted.

    ``check_keypoints`` (with ``quick``): every keypoint search keeps ``qa check``'s number of
    corners (``align.max_keypoints``) instead of the quick check's. Where the quick analysis
    registers ``qa check``'s own pixels (row ``quick_pixels_as_check`` 1: frames small enough that
    neither check reduces them), its keypoint votes and inlier counts are then ``qa check``'s
    (``quick_check`` decides the inlier gate with them).

    ``focus_offsets``: per pairing with a W crop (``wt``, ``wr``), the session's constant flow
    offset (analysis px) between where the depth-flow relation puts the focus distance's plane
    (``<p>_focus_expected_dx/dy``) and the AF ROI's largest cluster (``<p>_subject_dx/dy``): the
    rig's small rotations (``focus_offsets_of``). Given, ``M_defocus`` is measured from the focus
    distance's plane where the cluster is another one (``maps.focus_plane_flow``).
    """
    cfg = cfg or QAConfig()
    t0 = time.perf_counter()
    capture_dir = Path(capture_dir)
    out = CaptureQA(capture_dir.name, {"capture_id": capture_dir.name},
                    margin=(cfg.check.quick_margin if quick else 0.0),
                    abs_margins=({**cfg.check.quick_margins, **cfg.check.quick_margins_directed} if quick else {}),
                    shortfall_margins=(dict(cfg.check.quick_margins_shortfall) if quick else {}),
                    shortfall_floor=cfg.check.quick_shortfall_floor)
    th = cfg.thresholds
    try:
        rec = CaptureRecord.load(capture_dir)
    except HzsrError as exc:
        out.add("fail", "bad_record", exc.one_line())
        out.seconds = time.perf_counter() - t0
        return out
    out.row["scene_id"] = rec.scene_id
    out.row["scene_tags"] = ";".join(rec.scene_tags)
    frames = {f.slot: f for f in rec.frames}
    cfg_full_keypoints = cfg.align.max_keypoints
    if quick:
        target = cfg.check.quick_long_side
        quick_kp = cfg_full_keypoints if check_keypoints else min(cfg_full_keypoints, cfg.check.quick_max_keypoints)
        cfg = replace(cfg, align=replace(cfg.align, dis_preset=cfg.check.quick_dis_preset, max_keypoints=quick_kp),
                      maps=replace(cfg.maps, hidden=False))  # M_hid is not graded: ~10 ms a pairing saved
    else:
        target = cfg.check.analysis_long_side

    imgs: dict[str, np.ndarray] = {}
    fine: dict[str, np.ndarray] = {}  # quick check: the Ts as qa check analyses them (AF ROI only)
    scales = decode_scales(frames, cfg, quick=quick)
    w_crop_px: tuple[float, float] | None = None  # quick: the W crop's width in W px, qa check's and its own
    t_reduce: dict[str, int] = {}  # each T's JPEG DCT scaling as decoded here
    for slot in PAIRINGS["wr"] + ("main_T",):
        if slot in imgs:
            continue
        f = frames.get(slot)
        if f is None:
            out.add("fail", "missing_frame", f"no {slot} frame in capture.json")
            continue
        path = capture_dir / f.file
        if not path.is_file():
            out.add("fail", "missing_frame", f"{f.file}: file not found")
            continue
        r_fine, r = scales.decode[slot], scales.analysis[slot]
        if quick and slot == "main_W":
            w_crop_px = scales.w_crop_px
        # Size before decode: the header's size, checked against the cap and capture.json, costs a
        # few bytes; a 752-byte JPEG declaring 20000x20000 would otherwise decode to 1.2 GB.
        try:
            hdr = check_image_size(path)
        except ImageRefused as exc:
            out.add("fail", "image_too_large" if isinstance(exc, ImageTooLarge) else "undecodable",
                    f"{f.file}: {exc.message}")
            continue
        if (hdr.width, hdr.height) != (f.width, f.height):
            out.add("fail", "size_mismatch", f"{f.file}: header declares {hdr.width}x{hdr.height}, "
                    f"capture.json says {f.width}x{f.height}")
            continue
        img, why = _decode(path, r_fine)
        if slot in ("main_T", "ref_T"):
            t_reduce[slot] = r_fine
        if img is None:
            out.add("fail", "undecodable", f"{f.file}: {why}")
            continue
        exp_w, exp_h = math.ceil(f.width / r_fine), math.ceil(f.height / r_fine)
        if abs(img.shape[1] - exp_w) > 1 or abs(img.shape[0] - exp_h) > 1:
            out.add("fail", "size_mismatch", f"{f.file}: decodes to {img.shape[1] * r_fine}x"
                    f"{img.shape[0] * r_fine}, capture.json says {f.width}x{f.height}")
            continue
        if r_fine < r:
            fine[slot] = _fit_long(img, cfg.check.analysis_long_side)  # qa check's own T image
            size = _fit_size(math.ceil(img.shape[1] * r_fine / r), math.ceil(img.shape[0] * r_fine / r), target)
            imgs[slot] = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        else:
            imgs[slot] = img if slot == "main_W" else _fit_long(img, target)

    for slot in ("main_T", "ref_T"):
        f = frames.get(slot)
        if f is None:
            continue
        roi_ok = len(f.af_roi) == 4 and f.af_roi[2] > 0 and f.af_roi[3] > 0
        if not roi_ok or f.af_state in ("INACTIVE", "NOT_FOCUSED_LOCKED") or f.focus_distance_diopters is None:
            out.add("warn", "no_af_metadata", f"{slot}: AF state {f.af_state}, ROI {f.af_roi}: "
                    "defocus and focus checks use the frame centre")

    if "main_T" in imgs and "ref_T" in imgs and imgs["main_T"].shape != imgs["ref_T"].shape:
        a, b = frames["main_T"], frames["ref_T"]
        out.add("warn", "size_mismatch", f"main_T is {a.width}x{a.height}, ref_T {b.width}x{b.height}: "
                "ref_T resampled to main_T's grid")
        h, w = imgs["main_T"].shape[:2]
        imgs["ref_T"] = cv2.resize(imgs["ref_T"], (w, h), interpolation=cv2.INTER_AREA)
    if len(fine) == 2 and fine["main_T"].shape != fine["ref_T"].shape:  # as qa check resamples it
        h, w = fine["main_T"].shape[:2]
        fine["ref_T"] = cv2.resize(fine["ref_T"], (w, h), interpolation=cv2.INTER_AREA)

    # Quality of each frame, on what was decoded.
    quality: dict[str, dict[str, float]] = {}
    for slot, img in imgs.items():
        f = frames[slot]
        sx = img.shape[1] / f.width
        roi = [v * sx for v in f.af_roi] if len(f.af_roi) == 4 and f.af_roi[2] > 0 else None
        if roi is None:
            h, w = img.shape[:2]
            roi = [w * 0.4, h * 0.4, w * 0.2, h * 0.2]
        small = _fit_long(img, target)  # W is decoded larger than the analysis grid: measure it there
        quality[slot] = frame_quality(small, [v * small.shape[1] / img.shape[1] for v in roi], row_figures=row_figures)
        for k, v in quality[slot].items():
            out.row[f"{slot}_{k}"] = v

    if "main_T" not in imgs:
        out.seconds = time.perf_counter() - t0
        out.row["seconds"] = out.seconds
        return out

    t_img = imgs["main_T"]
    th_, tw_ = t_img.shape[:2]
    out.row["analysis_width"] = tw_
    ft = frames["main_T"]
    sx_t, sy_t = tw_ / ft.width, th_ / ft.height
    crop = None
    opt = 1.0
    if "main_W" in imgs:
        fw = frames["main_W"]
        wi = imgs["main_W"]
        try:
            crop, rect = crop_w_to_t(wi, _k(fw, wi.shape[1] / fw.width, wi.shape[0] / fw.height),
                                     _k(ft, sx_t, sy_t), (tw_, th_))
            opt = min(1.0, 1.0 / rect.scale)
            out.row["crop_scale"] = rect.scale
        except ValueError as exc:
            out.add("fail", "bad_intrinsics", f"main_W/main_T intrinsics: {exc}")

    def roi_of(slot: str, shift=(0.0, 0.0)) -> list[float]:
        f = frames[slot]
        if len(f.af_roi) == 4 and f.af_roi[2] > 0:
            s = th_ / f.height
            x, y, w, h = (v * s for v in f.af_roi)
        else:
            x, y, w, h = tw_ * 0.4, th_ * 0.4, tw_ * 0.2, th_ * 0.2
        return [x - shift[0], y - shift[1], w, h]

    # M_defocus's constants and moving_object's moving_px are in flow-grid px of qa check's grid:
    # the quick check, on a coarser grid, counts its flow in those units
    # (check.quick_flow_in_check_units), or the same parallax would mark fewer pixels off the
    # focal plane, and the same motion fewer pixels moving (a mover at 0.26 in qa check, 0.001).
    units = 1.0
    if quick and cfg.check.quick_flow_in_check_units:
        r_full = scales.check["main_T"]  # qa check's T scaling (decode_scales)
        w_full, h_full = _fit_size(math.ceil(ft.width / r_full), math.ceil(ft.height / r_full),
                                   cfg.check.analysis_long_side)
        units = (w_full * flow_grid_scale((h_full, w_full), cfg)) / (tw_ * flow_grid_scale((th_, tw_), cfg))
        # focus_plane_differs's in-focus radius is in qa check's flow-grid px too (qa check: 1).
        out.row["flow_units"] = float(units)
    if quick:
        # Frames small enough that neither check reduces them (the labelled set's 480x360): the
        # quick check registers qa check's own pixels, both Ts and the W crop, and with qa check's
        # keypoints (check_keypoints) counts qa check's inliers (quick_check's inlier gate).
        r_full = scales.check["main_T"]
        full_size = _fit_size(math.ceil(ft.width / r_full), math.ceil(ft.height / r_full), cfg.check.analysis_long_side)
        out.row["quick_pixels_as_check"] = int(
            (tw_, th_) == full_size and all(v == r_full for v in t_reduce.values())
            and (w_crop_px is None or w_crop_px[0] == w_crop_px[1]))
    regs: dict[str, Registration] = {}
    structure_ncc = float("nan")  # T vs T: the best band-passed correlation prefer_structure saw
    afs: dict[str, list[float] | None] = {}  # each pairing's AF ROI on its SRC grid
    srcs = {"main_W": crop, "main_T": t_img, "ref_T": imgs.get("ref_T")}
    tt_fold = None  # stereo_occlusion.alike_fold of main T vs ref T, shared by "tt" and "wr"
    af_outside: dict[str, tuple[float, float, str]] = {}  # pairings whose shifted AF ROI left SRC
    for name, (a, b) in PAIRINGS.items():
        src, ref = srcs[a], srcs[b]
        if src is None or ref is None:
            continue
        o = opt if a == "main_W" else 1.0

        hints = []
        if name == "wr" and "wt" in regs and "tt" in regs:  # W -> main T -> ref T composes
            hints.append((regs["wt"].shift.dx + regs["tt"].shift.dx, regs["wt"].shift.dy + regs["tt"].shift.dy))
        kcfg = cfg
        if quick and name == "tt":
            # T vs T carries large_shift, the depth figure and moving_object: with 600 corners a
            # periodic texture let a wrong period win (2 of 4 clean 12 MP captures failed so).
            kcfg = replace(cfg, align=replace(cfg.align, max_keypoints=cfg_full_keypoints if check_keypoints else min(
                cfg_full_keypoints, cfg.check.quick_tt_max_keypoints)))
        found = global_translation(src, ref, kcfg, optical_scale=o, hints=hints)
        if gate_inliers and name in gate_inliers:  # as qa check might count them (quick_check)
            out.row[f"{name}_inliers_counted"] = found.inliers
            found = GlobalShift(found.dx, found.dy, int(gate_inliers[name]), found.matches)
        fallback = (0.0, 0.0)  # where the dense flow starts if the inlier gate refuses the shift
        if name == "tt" and ft.focus_distance_diopters is not None:
            e_tt = expected_parallax(float(_k(ft, sx_t, sy_t)[0, 0]), cfg.rig.ref_baseline_m,
                                     ft.focus_distance_diopters)
            e_tt = (float(e_tt[0]), float(e_tt[1]))
            found, preferred, rival, structure_ncc, structure_peak = tt_vote(src, ref, found, e_tt, cfg)
            if structure_peak is not None:  # where the refused vote's views line up (large_shift may read it)
                out.row["tt_structure_peak_dx"], out.row["tt_structure_peak_dy"] = structure_peak
            if cfg.check.tt_prefer_rig_parallax:
                out.row["tt_shift_from_rig_parallax"] = int(preferred)
            if cfg.check.tt_prefer_structure and not preferred:
                out.row["tt_shift_from_structure"] = int(rival)
            if cfg.check.tt_unanchored_from_rig_parallax:
                # A shaken T keeps few corners that match the sharp one (a 22 px smear at 1280x960: 8
                # inliers); from zero shift DIS never reached the portrait's 181 px parallax, and
                # motion_blur was measured on a misregistered pair (0.80; 0.47 on the true pixels).
                fallback = e_tt
        g, _ = gate_shift(found, cfg)  # the inlier gate: a shift from too few matches is not used
        af = roi_of(b, (g.dx, g.dy)) if a == "main_W" else roi_of("main_T")  # tt: SRC is main T
        if clip_roi(af, src.shape) is None:
            # A shift of most of a frame (a bumped rig) carries the AF ROI off the source: there is
            # no in-focus flow to measure, so no defocus map for this pairing (the shift itself is
            # judged by large_shift / no_overlap).
            af_outside[name] = (g.dx, g.dy, a)  # a reason once it is known whether wr's map comes from main T
            af = None
        pcfg = cfg
        if b == "ref_T":  # the reference's longer baseline: more parallax for the same blur
            pcfg = replace(cfg, maps=replace(cfg.maps, defocus_gamma=cfg.maps.defocus_gamma_ref,
                                             defocus_sigma_f=cfg.maps.defocus_sigma_f_ref))
        if quick and name in ("tt", "wr"):
            # T vs T carries moving_object and the depth figure: ultrafast DIS lost a subject that
            # moved 40-70 px between the two instants (moving_frac 0.04 where qa check saw 0.81).
            # W crop vs ref T carries occluded, rejected and PSNR: with qa check's preset they are
            # qa check's figures, not ultrafast's (p95 |quick - full| of the occluded fraction 0.17).
            preset = cfg.check.quick_tt_dis_preset if name == "tt" else cfg.check.quick_wr_dis_preset
            pcfg = replace(pcfg, align=replace(pcfg.align, dis_preset=preset))
        # The pair's baseline from the rig config: M_hid follows the geometry (maps.hidden_map).
        wt, tt = np.asarray(cfg.rig.wt_baseline_m, float), np.asarray(cfg.rig.ref_baseline_m, float)
        base = {"wt": wt, "wr": wt + tt, "tt": tt}.get(name)
        if base is not None and (not np.any(base) or not cfg.maps.hidden_use_baseline):
            base = None
        focus_flow = None
        fb = wt if name == "wt" else wt + tt  # SRC is the W crop: from main W to b
        if a == "main_W" and frames[b].focus_distance_diopters is not None and np.any(fb):
            # The depth-flow relation: where the plane at b's focus distance must be in this flow.
            e = expected_parallax(float(_k(ft, sx_t, sy_t)[0, 0]), tuple(fb), frames[b].focus_distance_diopters)
            out.row[f"{name}_focus_expected_dx"], out.row[f"{name}_focus_expected_dy"] = float(e[0]), float(e[1])
            if focus_offsets and name in focus_offsets:
                focus_flow = e + np.asarray(focus_offsets[name], np.float64)
        alike = name == "tt" and base is not None and cfg.maps.hidden and cfg.maps.hidden_alike_stereo
        from_ts = (name == "wr" and base is not None and cfg.maps.hidden_wr_from_the_ts and tt_fold is not None
                   and "wt" in regs and regs["wt"].hidden is not None)
        if alike or from_ts:  # M_occ from semi-global matching between the Ts below, not from DIS
            pcfg = replace(pcfg, maps=replace(pcfg.maps, hidden=False))
        # M_defocus where something reads it: main T's (wt); the reference T's (wr) unless the
        # W crop vs main T flow gives it (_ref_defocus_from_main_t, which replaces wr's own);
        # T vs T's only as a row figure (no verdict reads it).
        defocus_map = row_figures or name == "wt" or (name == "wr" and not _ref_defocus_replaces_wr(regs, frames, cfg))
        regs[name] = register_pair(src, ref, pcfg, af_roi=af, optical_scale=o, shift=g,
                                   baseline=None if base is None else tuple(base), flow_units=units,
                                   focus_flow=focus_flow, fallback_shift=fallback, row_figures=row_figures,
                                   rejected=row_figures or name == "wr",  # graded on wr alone
                                   defocus_map=defocus_map)
        if alike:
            tt_fold = alike_fold(src, ref, regs[name].shift, tuple(base), cfg, regs[name].flow_fwd)
            regs[name] = with_fold(regs[name], tt_fold)
        if from_ts:
            regs[name] = with_fold(regs[name], hidden_through_the_ts(tt_fold, regs["wt"].flow_fwd, regs["wt"].hidden))
        elif (name == "wr" and base is not None and regs[name].hidden is not None and cfg.maps.hidden_through_main_t
                and "wt" in regs and "tt" in regs):  # M_occ's small steps, from the two Ts (stereo_occlusion)
            regs[name] = add_hidden(regs[name], hidden_through_main_t(
                srcs["main_T"], srcs["ref_T"], regs["tt"].shift, regs["tt"].flow_fwd, regs["wt"].flow_fwd, cfg,
                tt_fold=tt_fold))
        if name == "tt" and np.isfinite(structure_ncc):  # the views' best structure correlation (_shares_structure)
            regs[name].stats["structure_ncc"] = structure_ncc
        afs[name] = af
        for k, v in regs[name].stats.items():
            out.row[f"{name}_{k}"] = v

    fx_t = float(_k(ft, sx_t, sy_t)[0, 0])
    _ref_defocus_from_main_t(out, regs, frames, fx_t, cfg)
    for name, (dx, dy, a) in af_outside.items():
        # A reference T turned off the W crop leaves wr no AF ROI of its own, yet its map may come
        # from the W crop vs main T flow (_ref_defocus_from_main_t): say where from.
        whence = ("its defocus map comes from the W crop vs main T flow"
                  if name == "wr" and out.row.get("wr_defocus_from_main_t") else "no defocus map")
        out.add("warn", "af_roi_outside", f"{name}: the AF ROI, moved by the {dx:+.0f}, {dy:+.0f} px "
                f"shift, lies outside the {a} frame: {whence}")
    # The parallax the rig gives main T's focus plane: where the AF subject must be (large_shift).
    diop = ft.focus_distance_diopters if ft.focus_distance_diopters is not None else 0.0
    expected = {"wt": expected_parallax(fx_t, cfg.rig.wt_baseline_m, diop),
                "tt": expected_parallax(fx_t, cfg.rig.ref_baseline_m, diop)}
    rejected_tag = None
    if len(fine) == 2 and w_crop_px is not None and _fine_detail_may_decide(out, regs.get("wr"), cfg):
        # qa check's M_reject compares the W crop and the warped reference T at W's optical
        # resolution, 4x finer than the quick check's W crop: texture in between (foliage) is
        # rejected there and invisible here (a landscape: 0.22-0.60 in qa check, 0.00 here). Where
        # main T has little of it, the quick figure errs by far less: a margin of its own.
        share = fine_detail_share(fine["main_T"], *w_crop_px)
        out.row["main_T_fine_detail_share"] = share
        rejected_tag = rejected_tag_for(out, share, cfg)
    _judge_registration(out, regs, tw_, cfg, expected, rejected_tag=rejected_tag, fx_t=fx_t, focus_d=diop)
    _measure_subject_focus(out, regs, afs, srcs, opt, fx_t, diop, cfg, quick=quick, row_figures=row_figures)
    _judge_quality(out, frames, quality, regs, srcs, opt, roi_of, cfg, fine if len(fine) == 2 else None,
                   row_figures=row_figures)
    if any(r.code == "overexposed" and r.level is Verdict.FAIL for r in out.reasons):
        # Clipped frames have few keypoints and a poor PSNR: the exposure explains the "no
        # overlap", which stays a warning (it once failed half the overexposed captures twice).
        out.reasons = [Reason(Verdict.WARN, r.code, r.message + " (overexposure explains it)")
                       if r.code == "no_overlap" and r.level is Verdict.FAIL else r for r in out.reasons]
    if _reg_ok(regs.get("tt"), th, consistent=True):
        scfg = cfg  # the quick check searches the second translation with T vs T's keypoints too
        if quick:  # (600 found another mover, not the scene: 0.06 where qa check saw 0.44)
            scfg = replace(cfg, align=replace(cfg.align, max_keypoints=cfg_full_keypoints if check_keypoints else min(
                cfg_full_keypoints, cfg.check.quick_tt_max_keypoints)))
        info: dict[str, float] = {}
        static = ((out.row["tt_expected_dx"], out.row["tt_expected_dy"]) if "tt_expected_dx" in out.row else None)
        bound = tt_offset_bound_px(out.row, cfg) if "tt_fx_px" in out.row else 0.0
        if static is not None and not bound > 0:
            static = None  # no focal length: the rotation's bound is unknown
        second = second_motion(srcs["main_T"], srcs["ref_T"], regs["tt"], scfg, flow_units=units, info=info,
                               row_figures=row_figures, static_shift=static, static_bound_px=bound)
        out.row["tt_second_shift_used"] = int(second is not None)
        if info:  # a second translation was registered: how much of what it explains the first never saw
            out.row["tt_second_unseen_share"] = info["second_unseen"]
            out.row["tt_first_seen_lost_share"] = info["first_seen_lost"]
            out.row["tt_second_candidate_dx"], out.row["tt_second_candidate_dy"] = info["second_dx"], info["second_dy"]
        if second is not None:
            out.row["tt_second_shift_dx"], out.row["tt_second_shift_dy"] = second.shift.dx, second.shift.dy
            tt_departure_from_static_scene(out, second, cfg)
        frac, moving = motion_inconsistency(regs["tt"], cfg, flow_units=units, second=second, static_shift=static,
                                            static_bound_px=bound)
        out.row["moving_frac"] = frac
        _grade(out, "moving_object", frac, th.warn_moving_frac, th.fail_moving_frac,
               "fraction of main T whose flow to ref T is not parallax (moved between the two instants: "
               f"a moving subject and a sync skew) {frac:.2f}")
        if quick:
            moving_undecided_off_the_rig(out)
        if thumbs:
            out.images["map_moving"] = (moving * 255).astype(np.uint8)
    if thumbs:
        _collect_images(out, srcs, regs, cfg)
    out.seconds = time.perf_counter() - t0
    out.row["seconds"] = out.seconds
    return out


def _ref_defocus_replaces_wr(regs: dict[str, Registration], frames: dict, cfg: QAConfig) -> bool:
    """Whether ``_ref_defocus_from_main_t`` will replace the W crop vs reference T pairing's own
    ``M_defocus`` (given that pairing is registered): known once the W crop vs main T is."""
    wt_r = regs.get("wt")
    return bool(cfg.maps.defocus_ref_from_main_t and wt_r is not None and wt_r.defocus_plane is not None
                and "main_T" in frames and "ref_T" in frames
                and frames["main_T"].focus_distance_diopters is not None
                and frames["ref_T"].focus_distance_diopters is not None)


def _ref_defocus_from_main_t(out: CaptureQA, regs: dict[str, Registration], frames: dict, fx_t: float,
                             cfg: QAConfig) -> None:
    """The reference T's ``M_defocus`` from the W crop vs main T flow (``maps.defocus_ref_from_main_t``):
    main T's plane moved to the reference T's focus distance (``maps.plane_at_other_focus``), or the
    AF ROI's largest cluster within the in-focus radius of it (``register.plane_for_other_focus``)."""
    if "wr" not in regs or not _ref_defocus_replaces_wr(regs, frames, cfg):
        return
    wt_r, wr_r = regs["wt"], regs["wr"]
    d_main, d_ref = frames["main_T"].focus_distance_diopters, frames["ref_T"].focus_distance_diopters
    plane = plane_for_other_focus(wt_r, plane_at_other_focus(wt_r.defocus_plane, fx_t, cfg.rig.wt_baseline_m,
                                                             d_main, d_ref), cfg)
    m = defocus_at_plane(wt_r, plane, cfg)
    regs["wr"] = replace(wr_r, defocus=m, stats={**wr_r.stats, "defocus_frac": float((m[wr_r.valid] >= 0.5).mean())
                                                  if wr_r.valid.any() else 0.0})
    out.row["wr_defocus_frac"] = regs["wr"].stats["defocus_frac"]
    out.row["wr_defocus_from_main_t"] = 1


def focus_offsets_of(rows: list[dict], min_captures: int) -> dict[str, tuple[float, float]]:
    """Per W-crop pairing, the session's offset of the depth-flow relation: the median over its
    captures of ``<p>_subject - <p>_focus_expected`` (analysis px). Each camera module sits on
    its phone with a small rotation (a few tenths of a degree: tens of px at T's focal length),
    a constant of the session; most captures' AF ROI is mostly the plane in focus, so the median
    is that constant. Pairings with fewer than ``min_captures`` such captures are left out."""
    out: dict[str, tuple[float, float]] = {}
    for name in ("wt", "wr"):
        d = [(r[f"{name}_subject_dx"] - r[f"{name}_focus_expected_dx"],
              r[f"{name}_subject_dy"] - r[f"{name}_focus_expected_dy"]) for r in rows
             if all(np.isfinite(r.get(f"{name}_{k}", np.nan)) for k in
                    ("subject_dx", "subject_dy", "focus_expected_dx", "focus_expected_dy"))]
        if len(d) >= max(1, min_captures):
            m = np.median(np.asarray(d, np.float64), axis=0)
            out[name] = (float(m[0]), float(m[1]))
    return out


def focus_plane_differs(row: dict, offsets: dict[str, tuple[float, float]], cfg: QAConfig
                        ) -> dict[str, tuple[float, float]]:
    """The pairings of this capture whose ``M_defocus`` ``qa check`` measures again from the focus
    distance's plane (``maps.focus_plane_flow``), with their offsets; empty: none.

    A pairing qualifies where the AF ROI's largest cluster departs from the focus distance's
    plane by more than the map's in-focus radius ``sqrt(gamma)`` *along* the pair's baseline and
    by no more than that across it: parallax changes only along the baseline, so a plane at
    another depth departs along it, while a rig bump (ref T turned by a third of the frame) or a
    late frame departs across it and leaves the rig's geometry, and the focus distance's plane,
    meaningless there (the largest cluster is kept). Not "wr" where its map came from the W crop
    vs main T flow (``wr_defocus_from_main_t``): measuring again would repeat the analysis for the same map.
    """
    wt, tt = np.asarray(cfg.rig.wt_baseline_m, np.float64), np.asarray(cfg.rig.ref_baseline_m, np.float64)
    out: dict[str, tuple[float, float]] = {}
    for name, off in offsets.items():
        if name == "wr" and row.get("wr_defocus_from_main_t"):
            continue  # its map is main T's plane moved (_ref_defocus_from_main_t): wr's own plane changes nothing
        try:
            d = np.array([row[f"{name}_subject_dx"] - row[f"{name}_focus_expected_dx"] - off[0],
                          row[f"{name}_subject_dy"] - row[f"{name}_focus_expected_dy"] - off[1]])
            g = float(row[f"{name}_grid_scale"])
        except KeyError:
            continue
        b = wt if name == "wt" else wt + tt
        if not np.all(np.isfinite(d)) or not np.any(b):
            continue
        u = b / np.hypot(*b)
        gamma = cfg.maps.defocus_gamma_ref if name == "wr" else cfg.maps.defocus_gamma
        # The radius is in qa check's flow-grid px: the quick check's coarser grid counts its px
        # in those units (flow_units; 1.6 at 1280x960, where sqrt(gamma) / g alone read a radius
        # 1.6x qa check's and kept the cluster qa check measures again: lab-1803 c00023).
        tol = np.sqrt(max(gamma, 0.0)) / (g * float(row.get("flow_units", 1.0)))
        along, across = float(d @ u), float(d[0] * u[1] - d[1] * u[0])
        if abs(along) > tol and abs(across) <= tol:
            out[name] = off
    return out


def tt_vote(src: np.ndarray, ref: np.ndarray, found: GlobalShift, e_tt: tuple[float, float],
            cfg: QAConfig) -> tuple[GlobalShift, bool, bool, float, tuple[float, float] | None]:
    """T vs T's keypoint vote checked against the rig's parallax ``e_tt`` and the images.

    Returns:
        ``(shift, preferred, rival, structure_ncc, structure_peak)``: the shift to use; whether the
        rig's parallax replaced the vote (``align.prefer_expected``); whether the best-correlated
        shift did (``align.prefer_structure``); the best band-passed correlation that search saw
        (NaN where it did not search), which ``_shares_structure`` reads; and where the inlier gate
        refuses the vote, the shift the search's best peak lines the views up at, when it beat the
        rig's parallax (``prefer_structure``'s margin; None elsewhere): ``large_shift`` reads it
        where it correlates ``check.tt_shift_from_structure_min_ncc`` (``_judge_registration``).
    """
    preferred = rival = False
    structure_ncc = float("nan")
    structure_peak = None
    if cfg.check.tt_prefer_rig_parallax:
        # A repeating texture registers a period away as well: the rig's parallax breaks the tie.
        found, preferred = prefer_expected(src, ref, found, e_tt)
    if cfg.check.tt_prefer_structure and not preferred and found.inliers >= cfg.align.min_inliers:
        # Off the rig's parallax at a shift the two Ts do not line up at (a repeating texture
        # outvoting a bumped rig's small shared view): the rival that does. Only a shift the inlier
        # gate would use: too few matches is no vote (global_translation's (0, 0) placeholder),
        # and a dark, low-contrast pair of the same view correlates 0.07-0.17 through its noise,
        # which would read as no shared structure.
        found, rival, structure_ncc = prefer_structure(
            src, ref, found, e_tt, below_ncc=cfg.check.tt_structure_below_ncc,
            min_ncc=cfg.check.tt_structure_min_ncc, ncc_margin=cfg.check.tt_structure_margin)
    elif (cfg.check.tt_prefer_structure and not preferred
          and found.matches >= cfg.check.tt_structure_unanchored_min_matches):
        # The inlier gate refuses the vote, yet both Ts have corners enough to match (a dark,
        # low-contrast pair has none: 0 matches): their matches agree on no shift. Do the views
        # share structure anywhere? Measured only (the shift is the gate's): a phone knocked off a
        # dark or smooth scene (a night shot, a landscape) lined up from the rig's parallax at
        # 20-23 dB with a consistent flow on 0.6 of the view, and no_overlap missed it
        # (_shares_structure reads the figure). Always searched: the placeholder lies near the
        # parallax of a far focus.
        peak, moved, structure_ncc = prefer_structure(
            src, ref, GlobalShift(float(e_tt[0]), float(e_tt[1]), found.inliers, found.matches), e_tt,
            below_ncc=cfg.check.tt_structure_below_ncc, min_ncc=cfg.check.tt_structure_min_ncc,
            ncc_margin=cfg.check.tt_structure_margin, radius_frac=-1.0)
        if moved:  # the views line up better off the rig's parallax (the dense flow still starts on it)
            structure_peak = (peak.dx, peak.dy)
    return found, preferred, rival, structure_ncc, structure_peak


def _lines_up(stats: dict, th, consistent: bool = False) -> bool:
    """The pairing's dense warp lines up: PSNR at least ``warn_psnr_db``, and with ``consistent``
    (T vs T) a flow consistent on more than ``1 - fail_no_overlap_occluded_frac`` of the view.

    A warp between unrelated views can read 20-23 dB on smooth content; its forward and backward
    flows cannot agree. Only the two Ts are held to that: same optics, same pixels. A W crop
    against a T is W upsampled k times against a sharp image, and its flow can disagree almost
    everywhere on a view the phones share (``make demo``'s clean near portrait, W crop vs
    reference T: 0.99 at 24 dB, with T vs T at 189 inliers); a phone knocked off the scene shows
    in T vs T (``wr`` composes ``wt`` and ``tt``)."""
    p = stats.get("psnr_db", float("nan"))
    return bool(np.isfinite(p) and p >= th.warn_psnr_db
                and not (consistent and stats.get("occluded_frac", 0.0) >= th.fail_no_overlap_occluded_frac))


def _shares_structure(stats: dict, th) -> bool:
    """False where T vs T's search for the shift the two views line up at best
    (``align.prefer_structure``) found no shift correlating ``fail_no_overlap_structure_ncc``:
    the views share no structure anywhere. Keypoints can still agree on a repeating texture, and a
    dark or flat view's flow can still line up (a knocked-off night shot: 23 inliers on a texture
    period, 23 dB, flow consistent on 0.74 of the view, band-passed correlation 0.09 at best)."""
    v = stats.get("structure_ncc", float("nan"))
    return not (np.isfinite(v) and v < th.fail_no_overlap_structure_ncc)


def _reg_ok(r: Registration | None, th, consistent: bool = False) -> bool:
    """The pairing is registered: enough shift inliers, or a dense warp that lines up anyway
    (``_lines_up``; ``consistent`` for T vs T), and views that share structure (``_shares_structure``)."""
    if r is None:
        return False
    return _shares_structure(r.stats, th) and (r.stats["inliers"] >= th.fail_min_inliers
                                               or _lines_up(r.stats, th, consistent))


def _grade(out: CaptureQA, code: str, value: float, warn: float | None, fail: float | None, what: str,
           below: bool = False, abs_margin: float = 0.0, tag: str | None = None) -> None:
    """Add a reason when ``value`` crosses ``fail`` (else ``warn``); ``below``: low values are bad.

    ``abs_margin``: an uncertainty of the figure in its own units, added to ``out.margin``'s
    relative one for ``spread`` (what a coarser or uncalibrated measurement could have said)."""
    if value is None or not np.isfinite(value):
        return

    def rank(v: float) -> int:
        for r, limit in ((2, fail), (1, warn)):
            if limit is not None and (v < limit if below else v > limit):
                return r
        return 0

    key = tag or code
    out.graded.append((key, float(value)))
    if out.margin:
        lo, hi = _margin_span(out, key, value, abs_margin)
        ranks = [rank(lo), rank(hi)]
        out.spread.append((key, min(ranks), max(ranks)))
    for level, limit in (("fail", fail), ("warn", warn)):
        if limit is not None and (value < limit if below else value > limit):
            out.add(level, code, f"{what} {'<' if below else '>'} {limit:g}")
            out.graded_reasons.append(out.reasons[-1])
            return


def _margin_span(out: CaptureQA, key: str, value: float, abs_margin: float = 0.0) -> tuple[float, float]:
    """Where qa check's figure may lie given the quick one, ``value``: its margin under ``key``
    (``out.shortfall_margins``: ``share * max(1 - value, out.shortfall_floor)``; else
    ``out.abs_margins``, one or (below, above)), else ``out.margin`` of itself; plus ``abs_margin``."""
    share = out.shortfall_margins.get(key)
    if share is not None:  # a share of the figure's shortfall from its ideal 1
        m = share * max(1.0 - value, out.shortfall_floor)
        return value - m - abs_margin, value + m + abs_margin
    m = out.abs_margins.get(key)
    if m is not None:  # the quick check's measured departure from qa check's figure
        m_lo, m_hi = (m, m) if isinstance(m, (int, float)) else m
        return value - m_lo - abs_margin, value + m_hi + abs_margin
    return value * (1 - out.margin) - abs_margin, value * (1 + out.margin) + abs_margin


REFINED = " refined"  # a figure tag's suffix: the same figure measured finer (compared with qa check's own)


def refine_grade(out: CaptureQA, tag: str, value: float, grade) -> None:
    """The quick check's second look at a figure: ``value``, measured finer than the figure graded
    last under ``tag``, replaces it where that one is undecided (its spread spans two verdict
    ranks) and the finer one has a margin of its own (``check.quick_margins[tag + REFINED]``).

    ``grade(value)`` grades the finer figure (``_grade`` with ``tag + REFINED``). The finer figure
    is recorded in ``out.graded`` either way, so that its margin can be fitted against qa check's.
    """
    i = max((k for k, sp in enumerate(out.spread) if sp[0] == tag), default=None)
    if i is None or out.spread[i][1] == out.spread[i][2] or tag + REFINED not in out.abs_margins:
        out.graded.append((tag + REFINED, float(value)))
        return
    out.spread.pop(i)
    code = tag.split(" (")[0]
    coarse = [r for r in out.graded_reasons if r.code == code]
    if coarse:  # the coarse figure's own reason gives way to the finer one's
        out.reasons = [r for r in out.reasons if r is not coarse[-1]]
        out.graded_reasons = [r for r in out.graded_reasons if r is not coarse[-1]]
    grade(value)


def refined_tt_anisotropy(t_roi: np.ndarray, ref_roi: np.ndarray, mask: np.ndarray, t_eq: np.ndarray,
                          cfg: QAConfig) -> tuple[float | None, float]:
    """The quick check's refined T-vs-T ``motion_blur`` figure on the AF ROI at qa check's scale
    (``_fine_af_roi``'s main T luma, warped reference T luma, mask, main T through the warp's
    weights): (directional share min/max, ``coarse_correlation`` of the two ROIs).

    The figure is None (not to be graded; NaN where it cannot be measured) unless the two ROIs
    correlate at least ``check.quick_refine_min_corr`` once low-passed by
    ``check.quick_refine_corr_sigma_roi`` of the ROI's height: a smear leaves the coarse content
    alike, but a subject that moved between the two instants, or an ROI the coarse flow
    misregisters, differs there and reads as a smear (make demo: 0.59-0.80 on the ROI, 0.99 in qa
    check over the registered frame; issue 18's ninth pass). Clipped pixels (either T) are left out.
    """
    mask = mask & ~(cv2.dilate(((t_roi >= 250) | (ref_roi >= 250)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)
    dirs = directional_share_ratios(t_eq, ref_roi, mask, n_dirs=8)
    if not (np.isfinite(dirs).all() and dirs.max() > 0):
        return float("nan"), float("nan")
    anis = float(dirs.min() / dirs.max())
    corr = coarse_correlation(t_eq, ref_roi, mask, cfg.check.quick_refine_corr_sigma_roi * t_roi.shape[0])
    return (anis if np.isfinite(corr) and corr >= cfg.check.quick_refine_min_corr else None), corr


def moving_undecided_off_the_rig(out: CaptureQA) -> None:
    """The quick check: where ``large_shift`` may warn (the reference T off the rig's geometry, a
    bump), ``moving_object``'s figure may give any verdict. The two checks' keypoints can settle
    on different translations there (make demo's bumped shot: 185 px in the quick check, 160 in qa
    check), and the figure reads what the flow leaves unexplained (0.29 against 0.04: quick `fail`,
    qa check `warn`; issue 18's ninth pass). Where ``large_shift`` fails, the verdict is decided."""
    i = max((k for k, sp in enumerate(out.spread) if sp[0] == "moving_object"), default=None)
    if i is None:
        return
    if out.moving_spread is None:
        out.moving_spread = out.spread[i]  # as graded: grade_tt_shift's second look may restore it
    out.spread[i] = out.moving_spread
    if any(sp[0].startswith("large_shift") and sp[2] >= 1 for sp in out.spread):
        out.spread[i] = ("moving_object", 0, 2)


def coarse_correlation(a: np.ndarray, b: np.ndarray, mask: np.ndarray, sigma: float) -> float:
    """The correlation of ``a`` and ``b`` over ``mask`` after a Gaussian low-pass of ``sigma`` px:
    a smear of a few px leaves it near 1 (the coarse content is the same), content that differs
    (a subject that moved, a misregistered ROI) lowers it. NaN where the mask is too small."""
    if int(mask.sum()) < 64:
        return float("nan")
    la = cv2.GaussianBlur(a.astype(np.float32), (0, 0), sigma)[mask]
    lb = cv2.GaussianBlur(b.astype(np.float32), (0, 0), sigma)[mask]
    la, lb = la - la.mean(), lb - lb.mean()
    den = float(np.sqrt((la * la).sum() * (lb * lb).sum()))
    return float((la * lb).sum() / den) if den > 1e-9 else float("nan")


LITTLE_DETAIL = " (little fine detail)"  # a figure tag's suffix: the capture has little texture the quick grid misses


def fine_detail_share(t_fine: np.ndarray, n_full: float, n_quick: float) -> float:
    """The share of main T's texture energy, at W's optical resolution in ``qa check``, that the
    quick check's coarser W crop cannot see: ``E = mean((a - up(down(a)))^2) / var(a)``.

    ``a``: ``t_fine`` (main T as qa check analyses it) resampled to ``n_full`` px wide (the W
    crop's width in the W px qa check decodes); ``down``: to ``n_quick`` px (the quick check's W
    crop), ``up``: bilinear back. Cost: two area resizes of one image (~2 ms at 1280 px).
    """
    hf, wf = t_fine.shape[:2]
    wa = max(8, min(wf, round(n_full)))
    wq = max(4, min(wa, round(n_quick)))
    ha, hq = max(8, round(hf * wa / wf)), max(4, round(hf * wq / wf))
    a = cv2.resize(to_luma(t_fine), (wa, ha), interpolation=cv2.INTER_AREA).astype(np.float32)
    c = cv2.resize(cv2.resize(a, (wq, hq), interpolation=cv2.INTER_AREA), (wa, ha), interpolation=cv2.INTER_LINEAR)
    v = float(a.var())
    return float(np.mean((a - c) ** 2) / v) if v > 1e-9 else 0.0


def _fine_detail_may_decide(out: CaptureQA, r: Registration | None, cfg: QAConfig) -> bool:
    """Whether ``fine_detail_share`` is worth measuring (the quick check's CPU): the rejected
    fraction has a margin for little fine detail, and it is undecided with the margin of all
    captures (a margin no larger cannot change a decided verdict; a larger one always may), or
    ``check.quick_fine_detail_always`` (bench/qa.py measures it on every capture to fit the margin)."""
    th = cfg.thresholds
    little = out.abs_margins.get("rejected" + LITTLE_DETAIL)
    if little is None or r is None or not _reg_ok(r, th):
        return False
    every = out.abs_margins.get("rejected")
    if cfg.check.quick_fine_detail_always or every is None or np.max(little) > np.max(every):
        return True
    lo, hi = _margin_span(out, "rejected", r.stats["rejected_frac"])
    return sum(lo > t for t in (th.warn_rejected_frac, th.fail_rejected_frac)) != sum(
        hi > t for t in (th.warn_rejected_frac, th.fail_rejected_frac))


def rejected_tag_for(out: CaptureQA, share: float, cfg: QAConfig) -> str | None:
    """The tag the quick check grades the rejected fraction under: ``rejected (little fine detail)``
    where main T's ``fine_detail_share`` is at most ``check.quick_fine_detail_max`` and that tag
    has a margin (``check.quick_margins``); else None (``rejected``, the margin of all captures)."""
    tag = "rejected" + LITTLE_DETAIL
    return tag if share <= cfg.check.quick_fine_detail_max and tag in out.abs_margins else None


def expected_parallax(fx_px: float, baseline_m: tuple[float, float], diopters: float) -> np.ndarray:
    """Flow ``(dx, dy)`` of a static point at ``1 / diopters`` metres between two cameras.

    ``F = -f b D``: the second camera sits ``b`` (metres, image axes) from the first, so the
    point's image moves the other way by ``f b / Z`` pixels (``f`` in pixels, ``D = 1 / Z``).
    """
    return -fx_px * np.asarray(baseline_m, np.float64) * max(float(diopters), 0.0)


def _judge_registration(out: CaptureQA, regs: dict[str, Registration], width: int, cfg: QAConfig,
                        expected: dict[str, np.ndarray] | None = None, rejected_tag: str | None = None,
                        fx_t: float = 0.0, focus_d: float = 0.0) -> None:
    """large_shift, no_overlap, occluded, rejected and low_psnr from the pairings' registrations.

    ``rejected_tag``: the tag the rejected fraction is graded under (the quick check's margin for a
    capture with little fine detail, ``fine_detail_share``); None: ``rejected``. ``fx_t``: T's
    focal length in analysis px, ``focus_d``: main T's focus distance (D): T vs T's large_shift
    reads the AF subject's depth from them (``grade_tt_shift``)."""
    th = cfg.thresholds
    for name, r in regs.items():
        a, b = PAIRINGS[name]
        label = f"{b} vs {a.replace('main_W', 'main W crop')}"
        s = r.stats
        lined_up = _lines_up(s, th, consistent=name == "tt")
        if not s.get("shift_used", 1.0):
            # The inlier gate (align.min_inliers): the global shift was not used, the dense flow
            # started from the rig's own alignment. Said always; only a warp that does not line
            # up makes it a verdict (no_overlap below).
            out.add("pass" if lined_up else "warn", "shift_not_used",
                    f"{label}: global shift of {s.get('found_shift_px', 0):.0f} px from {int(s['inliers'])} keypoint "
                    f"inliers (< align.min_inliers {cfg.align.min_inliers}) not used; dense flow from "
                    + (f"the rig's parallax at the focus distance ({s['shift_dx'] + 0.0:+.0f}, "
                       f"{s['shift_dy'] + 0.0:+.0f} px)" if s.get("shift_px", 0.0) > 0 else "zero shift")
                    + f", PSNR after warping {s['psnr_db']:.1f} dB")
        if s["inliers"] < th.fail_min_inliers and not lined_up:
            # Few keypoints agree and the dense warp does not line up either: no overlap. (Few
            # keypoints with a warp that lines up is W's blur or flat texture, e.g. a landscape's
            # sky and grass: no verdict; it once warned landscapes at 30-33 dB.)
            out.add("fail", "no_overlap",
                    f"{label}: {int(s['inliers'])} keypoint inliers (< {th.fail_min_inliers}), PSNR after "
                    f"warping {s['psnr_db']:.1f} dB, flow inconsistent on {s.get('occluded_frac', np.nan):.2f} "
                    f"of the view: no reliable overlap")
            continue
        if not _shares_structure(s, th):
            out.add("fail", "no_overlap",
                    f"{label}: no shift lines the two views up (best band-passed correlation "
                    f"{s['structure_ncc']:.2f} < {th.fail_no_overlap_structure_ncc}; {int(s['inliers'])} keypoint "
                    f"inliers agree on a repeating texture at most): no reliable overlap")
            continue
        if name == "wr":
            continue  # wr composes wt and tt; a bump shows in tt (T vs T), which registers far better
        # The AF subject's displacement, not the dominant keypoint cluster's (a near foreground
        # seen from the reference phone's 7 cm baseline can legitimately move a third of the
        # frame), less the parallax the rig gives the focus plane (a near portrait's subject moves
        # 0.15-0.3 of the width): what is left is what the rig did.
        if "subject_dx" in s:
            d = np.array([s["subject_dx"], s["subject_dy"]])
        else:
            d = np.array([s["shift_dx"], s["shift_dy"]])
        e = expected.get(name, np.zeros(2)) if expected else np.zeros(2)
        dep = float(np.hypot(*(d - e)))
        b = np.asarray(cfg.rig.ref_baseline_m, np.float64)
        out.row[f"{name}_expected_dx"], out.row[f"{name}_expected_dy"] = float(e[0]), float(e[1])
        if name == "tt" and np.hypot(*b) > 0 and fx_t > 0:
            peak = tt_structure_shift(out.row, s, cfg)
            if peak is not None:  # the refused vote's views line up there, not where the flow stayed
                out.row["tt_subject_departure_dx"] = float(d[0] - e[0])
                out.row["tt_subject_departure_dy"] = float(d[1] - e[1])
                d = peak
                out.row["tt_departure_from_structure"] = 1
            # Across the mount's baseline a departure is the rig; along it, a depth unless no real
            # subject could lie there (grade_tt_shift). Graded here as a lone capture; qa check and
            # the quick check grade it again with the session's offset.
            out.row["tt_departure_dx"], out.row["tt_departure_dy"] = float(d[0] - e[0]), float(d[1] - e[1])
            out.row["tt_fx_px"], out.row["tt_focus_d"] = float(fx_t), float(focus_d)
            out.row["tt_moved_px"], out.row["tt_expected_px"] = float(np.hypot(*d)), float(np.hypot(*e))
            grade_tt_shift(out, cfg)
            continue
        out.row[f"{name}_shift_departure_px"] = dep
        frac = dep / width
        _grade(out, "large_shift", frac, th.warn_shift_frac, th.fail_shift_frac,
               f"{label}: the AF subject is {dep:.0f} px = {frac:.2f} of the width"
               f"{' across the baseline' if name == 'tt' else ''} from where the rig's parallax at the focus "
               f"distance puts it (moved {np.hypot(*d):.0f} px, expected {np.hypot(*e):.0f}; rig bumped?)")
    r = regs.get("wr")
    if _reg_ok(r, th):
        s = r.stats
        _grade(out, "occluded", s["occluded_frac"], th.warn_occluded_frac, None,
               f"ref_T vs main W crop: occluded fraction {s['occluded_frac']:.2f}")
        _grade(out, "rejected", s["rejected_frac"], th.warn_rejected_frac, th.fail_rejected_frac,
               f"ref_T vs main W crop: rejected fraction {s['rejected_frac']:.2f}", tag=rejected_tag)
        _grade(out, "low_psnr", s["psnr_db"], th.warn_psnr_db, th.fail_psnr_db,
               f"ref_T warped onto the main W crop: PSNR {s['psnr_db']:.1f} dB", below=True)


def tt_structure_shift(row: dict, stats: dict, cfg: QAConfig) -> np.ndarray | None:
    """The shift T vs T's ``large_shift`` reads instead of the AF subject's, or None.

    Where the inlier gate refuses T vs T's keypoint vote (``tt_shift_used`` 0), the dense flow
    starts from the rig's parallax at the focus distance and stays near it: a bumped reference
    phone then reads no departure. The structure search on the refused vote (``tt_vote``) found
    where the two views line up best; where that peak beat the rig's parallax (``tt_structure_peak``)
    and correlates at least ``check.tt_shift_from_structure_min_ncc``, the views did move there.
    The correlation alone does not tell a bump from a shaken shot (the demo's motion-blurred portrait
    read 0.76); what keeps a shaken shot from failing is that its peak sits near the parallax, so
    its departure across the baseline stays small: make demo's bump of the reference phone
    (-0.50 of the width, 10 inliers < 12) was found at -0.51 of the width correlating 0.73, and
    only warned. It is the whole view's shift, mostly the scene at its own depth, and the vote was
    refused: only its part across the mount's baseline counts (``tt_shift_departure``, unanchored).
    """
    if (stats.get("shift_used", 1.0) or "tt_structure_peak_dx" not in row
            or not stats.get("structure_ncc", -1.0) >= cfg.check.tt_shift_from_structure_min_ncc):
        return None
    return np.array([row["tt_structure_peak_dx"], row["tt_structure_peak_dy"]], np.float64)


TT_SHIFT_TAG = "large_shift (T vs T)"  # T vs T's large_shift figure (graded again with the session's offset)
_TT_LABEL = "ref_T vs main_T: "  # its reason's start


def tt_shift_departure(row: dict, cfg: QAConfig, offset_px: tuple[float, float] = (0.0, 0.0),
                       session: bool = True) -> tuple[float, float, bool]:
    """T vs T's departure from the rig: ``(px, implied depth D, along counted)``.

    ``v`` = the AF subject's shift less the rig's parallax at the focus distance less the
    session's offset ``offset_px`` (the two Ts' relative rotation). Across the baseline ``b``,
    ``|v . n|`` is the rig. Along it, ``v . u`` is a depth: the subject at
    ``D = focus - v.u / (f |b|)`` (``expected_parallax``: ``F = -f b D``). Where ``D`` lies outside
    ``[-m, 1 / rig.t_min_focus_m + m]`` no real subject explains it (beyond infinity, or nearer
    than T focuses) and the whole departure ``|v|`` counts; else only the part across.
    ``m``: ``rig.tt_depth_margin_d``, plus ``tan(rig.tt_rotation_max_deg) / |b|`` without the
    session's offset (``session=False``: the rotation is unknown, up to that bound). The part along
    counts only where T vs T's global shift was used (``tt_shift_used``: enough keypoints agree).
    """
    b = np.asarray(cfg.rig.ref_baseline_m, np.float64)
    nb = float(np.hypot(*b))
    u = b / nb
    n = np.array([-u[1], u[0]])
    v = np.array([row["tt_departure_dx"] - offset_px[0], row["tt_departure_dy"] - offset_px[1]])
    across, along = float(abs(v @ n)), float(v @ u)
    implied = float(row["tt_focus_d"] - along / (row["tt_fx_px"] * nb))
    m = cfg.rig.tt_depth_margin_d
    if not session:
        m += math.tan(math.radians(cfg.rig.tt_rotation_max_deg)) / nb
    # Only where T vs T's keypoints anchored the registration (its global shift used): from zero
    # shift the dense flow need not follow the subject along the baseline (make demo's motion-blurred
    # portrait, 11 inliers: +71 px where the rig's parallax says -76, "beyond infinity").
    anchored = bool(row.get("tt_shift_used", 1.0))
    # The static scene's translation (tt_departure_from_static_scene) is the background's, at its
    # own depth, not the AF subject's: its part across the baseline alone is the rig.
    anchored = anchored and not row.get("tt_departure_from_static_scene")
    outside = anchored and (implied < -m or implied > 1.0 / cfg.rig.t_min_focus_m + m)
    return (float(np.hypot(across, along)) if outside else across), implied, outside


def tt_departure_from_static_scene(out: CaptureQA, second: Registration, cfg: QAConfig) -> None:
    """T vs T's ``large_shift`` from the static scene where ``second_motion`` found two motions.

    ``large_shift`` reads the AF subject's shift. Where a mover is the AF subject and moved between
    the two instants (a late frame), that shift is the mover's: a late frame on a moving scene
    read 0.24-0.29 of the width across the baseline (lab-1808 c00015 failed at 0.29 at both
    sizes, lab-1805 c00003 and c00015 warned at 1280x960). With two registrations, at most one of
    them follows a mover; across the mount's baseline a static scene has only the rig's rotation
    term, which a bump moves for the whole scene, mover included. So the rig's departure is the
    smaller of the two across the baseline: the AF subject's, or the second translation's less the
    rig's parallax (``row["tt_departure_from_static_scene"]`` = 1 where that one). Graded again as
    a lone capture; qa check and the quick check grade it with the session's offset after.
    """
    row = out.row
    # A departure read off the structure search's peak is the whole view's shift already, not a
    # subject's that a mover could have carried: a second translation (a mover, a texture period)
    # must not replace it.
    if (not cfg.check.tt_shift_from_static_scene or "tt_departure_dx" not in row
            or row.get("tt_departure_from_structure")):
        return
    b = np.asarray(cfg.rig.ref_baseline_m, np.float64)
    n = np.array([-b[1], b[0]]) / float(np.hypot(*b))
    d1 = np.array([row["tt_departure_dx"], row["tt_departure_dy"]])
    d2 = np.array([second.shift.dx - row["tt_expected_dx"], second.shift.dy - row["tt_expected_dy"]])
    if abs(d2 @ n) >= abs(d1 @ n):
        return
    row["tt_subject_departure_dx"], row["tt_subject_departure_dy"] = float(d1[0]), float(d1[1])
    row["tt_departure_dx"], row["tt_departure_dy"] = float(d2[0]), float(d2[1])
    row["tt_moved_px"] = float(np.hypot(second.shift.dx, second.shift.dy))
    row["tt_departure_from_static_scene"] = 1
    grade_tt_shift(out, cfg)


def tt_offset_bound_px(row: dict, cfg: QAConfig) -> float:
    """The most the two Ts' relative rotation (``rig.tt_rotation_max_deg``) shifts T vs T, px."""
    return float(row["tt_fx_px"] * math.tan(math.radians(cfg.rig.tt_rotation_max_deg)))


def grade_tt_shift(out: CaptureQA, cfg: QAConfig, offset_px: tuple[float, float] | None = None,
                   offset_margin_px: float = 0.0) -> None:
    """``large_shift`` on T vs T (``tt_shift_departure``), graded again with the session's offset.

    ``offset_px``: the session's median departure (qa check: all its captures; the quick check:
    those seen so far, known to +-``offset_margin_px``), clipped to ``tt_offset_bound_px``; None:
    a lone capture (offset 0, unknown up to that bound: the quick check's spread covers it).
    In the quick check the figure's spread is taken over the offsets within the uncertainty (a
    3x3 box), each widened by the quick margin: the along-baseline rule switches with the offset.
    """
    th = cfg.thresholds
    row = out.row
    if "tt_departure_dx" not in row:
        return
    out.reasons = [r for r in out.reasons if not (r.code == "large_shift" and r.message.startswith(_TT_LABEL))]
    out.graded_reasons = [r for r in out.graded_reasons
                          if not (r.code == "large_shift" and r.message.startswith(_TT_LABEL))]
    out.spread = [sp for sp in out.spread if sp[0] != TT_SHIFT_TAG]
    out.graded = [g for g in out.graded if g[0] != TT_SHIFT_TAG]
    bound = tt_offset_bound_px(row, cfg)
    session = offset_px is not None
    off = np.clip(np.asarray(offset_px if session else (0.0, 0.0), np.float64), -bound, bound)
    u_off = offset_margin_px if session else bound
    width = float(row["analysis_width"])
    dep, implied, outside = tt_shift_departure(row, cfg, (float(off[0]), float(off[1])), session)
    row["tt_shift_departure_px"] = dep
    row["tt_implied_depth_d"] = implied
    row["tt_along_counted"] = int(outside)
    if session:
        row["session_tt_offset_dx"], row["session_tt_offset_dy"] = float(off[0]), float(off[1])
    frac = dep / width
    where = ("" if not outside else f"; along the baseline it would put the subject at {implied:.2f} D, "
             f"{'beyond infinity' if implied < 0 else f'nearer than T focuses ({cfg.rig.t_min_focus_m:g} m)'}: "
             "no depth, the rig")
    what = ("the static scene (the AF subject moved between the two instants)"
            if row.get("tt_departure_from_static_scene") else
            f"the shift the structure search lines the two views up at (correlation "
            f"{row.get('tt_structure_ncc', np.nan):.2f}; the keypoints' vote, {int(row.get('tt_inliers', 0))} "
            "inliers, refused by the inlier gate)"
            if row.get("tt_departure_from_structure") else "the AF subject")
    _grade(out, "large_shift", frac, th.warn_shift_frac, th.fail_shift_frac,
           f"{_TT_LABEL}{what} is {dep:.0f} px = {frac:.2f} of the width "
           f"{'from' if outside else 'across the baseline from'} where the rig's parallax at the focus distance "
           f"puts it (moved {row.get('tt_moved_px', np.nan):.0f} px, expected {row.get('tt_expected_px', np.nan):.0f}, "
           f"less the session's offset ({off[0]:.0f}, {off[1]:.0f}) px{where}; rig bumped?)", tag=TT_SHIFT_TAG)
    if out.margin and u_off > 0 and out.spread and out.spread[-1][0] == TT_SHIFT_TAG:
        m = out.abs_margins.get(TT_SHIFT_TAG, out.abs_margins.get("large_shift", 0.0))
        m = max(m) if isinstance(m, (tuple, list)) else float(m)
        # Clipped as qa check clips its offset: an unknown one (median_margin's inf) is the bound, not NaN.
        box = [np.clip(off + np.array([sx, sy]) * min(u_off, 2.0 * bound), -bound, bound)
               for sx in (-1, 0, 1) for sy in (-1, 0, 1)]
        figs = [tt_shift_departure(row, cfg, (float(o[0]), float(o[1])), session)[0] / width for o in box]
        ranks = [sum(v > lv for lv in (th.warn_shift_frac, th.fail_shift_frac)) for v in (min(figs) - m, max(figs) + m)]
        key, r0, r1 = out.spread[-1]
        out.spread[-1] = (key, min(r0, *ranks), max(r1, *ranks))


def quick_tt_regrade(out: CaptureQA, seen: list[dict], cfg: QAConfig) -> None:
    """The quick check's second look at T vs T's ``large_shift``: less the median ``tt_departure``
    of the session's captures ``seen`` so far (``session_tt_offset``, from
    ``check.quick_min_captures_for_offset`` of them), uncertain by ``median_margin`` (at least
    ``rig.tt_offset_scatter_frac`` of the width); then ``moving_undecided_off_the_rig``.

    While fewer than ``rig.min_captures_for_offset`` are seen, qa check may grade the session's
    captures alone (no offset: a session of that few captures), so the spread covers that grade too.
    """
    toff = session_tt_offset(seen, cfg.check.quick_min_captures_for_offset)
    if toff is None or not np.isfinite(out.row.get("analysis_width", np.nan)):
        return
    v = np.asarray([(r["tt_departure_dx"], r["tt_departure_dy"]) for r in seen
                    if np.isfinite(r.get("tt_departure_dx", np.nan)) and np.isfinite(r.get("tt_departure_dy", np.nan))],
                   np.float64)
    floor = cfg.rig.tt_offset_scatter_frac * float(out.row["analysis_width"])
    u = max(median_margin(list(v[:, k]), sigma_floor=floor) for k in (0, 1))
    lone = None
    if len(v) < cfg.rig.min_captures_for_offset:  # check.run_check: no session offset for so few
        grade_tt_shift(out, cfg)
        lone = next((sp for sp in out.spread if sp[0] == TT_SHIFT_TAG), None)
    grade_tt_shift(out, cfg, toff, u)
    if lone is not None:
        out.spread = [(k, min(r0, lone[1]), max(r1, lone[2])) if k == TT_SHIFT_TAG else (k, r0, r1)
                      for k, r0, r1 in out.spread]
    moving_undecided_off_the_rig(out)


def session_tt_offset(rows: list[dict], min_captures: int) -> tuple[float, float] | None:
    """The session's T-vs-T offset: the median of its captures' ``tt_departure`` (px; the two Ts'
    relative rotation: most captures are neither bumped nor of a mover); None with fewer than
    ``min_captures``."""
    d = [(r["tt_departure_dx"], r["tt_departure_dy"]) for r in rows
         if np.isfinite(r.get("tt_departure_dx", np.nan)) and np.isfinite(r.get("tt_departure_dy", np.nan))]
    if len(d) < max(1, min_captures):
        return None
    m = np.median(np.asarray(d, np.float64), axis=0)
    return float(m[0]), float(m[1])


def _measure_subject_focus(out: CaptureQA, regs: dict[str, Registration], afs, srcs, opt: float, fx_t: float,
                           diopters: float, cfg: QAConfig, quick: bool = False, row_figures: bool = True) -> None:
    """Is the AF subject in focus in each T? Two figures, from the AF ROI.

    - ``<T>_roi_blur_ratio``: the T's sharpness over the W crop's in the AF ROI, at W's optical
      resolution (W's depth of field is deep: its subject is sharp; ``band_sharpness_ratio``).
    - ``subject_depth_departure_d``: the depth-flow relation. The AF subject's parallax in ``wt``
      (W crop -> main T) along the phone's W-T baseline ``b`` gives its distance,
      ``D = -F.u / (f |b|)``; minus main T's focus distance from ``capture.json``: a focus on the
      wrong plane departs by its diopters. ``af_hidden_plane_departure_d``: the same for the plane
      a near occluder at the AF point hides (``hidden_plane_departure``), for ``grade_depth``.

    ``row_figures`` False: the first (graded nowhere) is left out.
    """
    th = cfg.thresholds
    for name, slot in (("wt", "main_T"), ("wr", "ref_T")) if row_figures else ():
        r, af = regs.get(name), afs.get(name)
        if r is None or af is None or srcs.get("main_W") is None or not _reg_ok(r, th):
            continue
        box = clip_roi(af, r.valid.shape)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        m = np.zeros(r.valid.shape, bool)
        m[y0:y1, x0:x1] = r.valid[y0:y1, x0:x1] & (r.occlusion[y0:y1, x0:x1] < 0.5)
        out.row[f"{slot}_roi_blur_ratio"] = band_sharpness_ratio(to_luma(r.warped_ref), to_luma(srcs["main_W"]), m,
                                                                 opt)
    # The depth-flow relation on W crop -> main T (one phone, wt_baseline_m): W's deep depth of
    # field keeps every plane sharp in the crop, so DIS follows a blurred near foreground there;
    # across the 7 cm mount (tt) it did not (a foreground 1.3 D away read 0.3 D, issue 18's
    # defocus pass).
    b = np.asarray(cfg.rig.wt_baseline_m, np.float64)
    r = regs.get("wt")
    box = clip_roi(afs["wt"], r.flow_fwd.shape) if r is not None and afs.get("wt") is not None else None
    if box is not None and _reg_ok(r, th) and np.hypot(*b) > 0 and fx_t > 0:
        # The AF point is the ROI's centre: the median flow of its central third, not the ROI's
        # largest flow cluster (a near foreground reaching into the ROI can outnumber the subject).
        x0, y0, x1, y1 = box
        cx0, cx1 = x0 + (x1 - x0) // 3, x1 - (x1 - x0) // 3
        cy0, cy1 = y0 + (y1 - y0) // 3, y1 - (y1 - y0) // 3
        centre = r.flow_fwd[cy0:max(cy1, cy0 + 1), cx0:max(cx1, cx0 + 1)].reshape(-1, 2)
        # The parallax is read off texture: a clipped pixel (>= 250 in a channel, in the W crop or
        # in main T warped onto it) has none, and DIS fills it from its surroundings (an overexposed
        # W crop, 0.66 clipped, put the AF subject at 2.87 D, main T focused at 0.36 D: lab-1802
        # c00033 at 480x360). As motion_blur leaves clipped pixels out, so does the depth-flow
        # relation; where they cover the AF point, its depth is not measured.
        ys, xs = slice(cy0, max(cy1, cy0 + 1)), slice(cx0, max(cx1, cx0 + 1))
        clip_c = (channel_max(srcs["main_W"][ys, xs]) >= 250) | (channel_max(r.warped_ref[ys, xs]) >= 250)
        clip_c = cv2.dilate(clip_c.astype(np.uint8), np.ones((5, 5), np.uint8)).ravel() > 0
        out.row["af_centre_clipped_share"] = float(clip_c.mean())
        if clip_c.mean() > th.depth_max_clipped_share:
            out.row["subject_depth_not_measured"] = 1
            return
        f_c = np.median(centre[~clip_c], axis=0)
        out.row["subject_centre_dx"], out.row["subject_centre_dy"] = float(f_c[0]), float(f_c[1])
        u = b / np.hypot(*b)
        fb = fx_t * np.hypot(*b)
        d_flow = -(f_c[0] * u[0] + f_c[1] * u[1]) / fb
        out.row["subject_depth_flow_d"] = float(d_flow)
        out.row["main_T_focus_d"] = float(diopters)
        out.row["subject_depth_departure_d"] = float(d_flow - diopters)
        # The plane a near occluder at the AF point hides (grade_depth): each pixel's departure
        # from its parallax; the occluder is the AF point's plane connected to the ROI's centre,
        # the hidden plane what lies behind it within one AF ROI of its edge.
        # On DIS's own grid at most (the flow is upsampled from it: finer adds nothing; 14 ms -> 3
        # ms of CPU at a 12 MP capture's 1024 px analysis).
        k = max(1, int(r.flow_fwd.shape[1] // 512))
        fl = r.flow_fwd[::k, ::k]
        dep_px = (-(fl[..., 0] * u[0] + fl[..., 1] * u[1]) / fb - diopters).astype(np.float32)
        ok = r.valid[::k, ::k] & (r.occlusion[::k, ::k] < 0.5)
        hidden = hidden_plane_departure(dep_px, ok, (cx0 // k, cy0 // k, max(cx1 // k, cx0 // k + 1),
                                        max(cy1 // k, cy0 // k + 1)), float(d_flow - diopters), th.focus_behind_tol_d,
                                        max(2, round(th.focus_hidden_ring_roi * (y1 - y0) / k)),
                                        min_area_roi=th.focus_hidden_min_area_roi,
                                        step_band_roi=th.focus_hidden_step_band_roi,
                                        roi=(x0 // k, y0 // k, max(x1 // k, x0 // k + 1), max(y1 // k, y0 // k + 1))
                                        if th.focus_framed_plane_is_subject else None,
                                        nearest_plane=th.focus_hidden_nearest_plane)
        if hidden is not None:
            out.row["af_hidden_plane_departure_d"] = hidden
        roi = afs.get("wt") or afs.get("tt")
        out.row["af_roi_wt"] = ";".join(str(round(v)) for v in roi) if roi else ""
        # A lone capture (no session offset yet): qa check counts only a departure beyond the
        # offset's uncertainty; the quick check grades the raw figure with that as its margin.
        grade_depth(out, 0.0, cfg, session=False, lone_uncertain_d=0.0 if quick else cfg.rig.depth_offset_d)


def hidden_plane_departure(dep: np.ndarray, ok: np.ndarray, centre: tuple[int, int, int, int], dep_c: float,
                           tol: float, ring_px: int, min_px: int = 16, min_area_roi: float = 0.0,
                           step_band_roi: tuple[float, float] | None = None,
                           roi: tuple[int, int, int, int] | None = None, nearest_plane: bool = True
                           ) -> float | None:
    """The departure (D) of the plane a near occluder at the AF point hides; None: none found.

    The AF point's plane is every pixel within ``tol`` of its departure ``dep_c`` connected to
    the AF ROI's central third ``centre`` (x0, y0, x1, y1): a near foreground there, whatever its
    size. What it hides shows at its edge: the trusted pixels (``ok``) within ``ring_px`` of it
    and more than ``tol`` behind it (lower departure); their median is the hidden plane. A
    foreground's edge borders the subject it covers; a subject in front of another plane (the
    walker before the mover it hides) borders that plane, not the background further back.
    ``dep``: each pixel's departure from the focus distance (its parallax's depth less the focus
    distance, D, on the pairing's grid).

    The plane must be a real foreground, an edge with the view behind it (issue 18's ninth pass):
    the trusted pixels behind it are taken by connected region (8-connected), and only a region
    that reaches the ring and covers at least ``min_area_roi`` of the AF ROI's area (9 times the
    central third's) counts; across the boundary between those regions and the AF point's plane,
    the median departure of the plane's pixels ``step_band_roi`` (a, b) AF ROI heights inside it
    less that of the regions' pixels as far outside it must be at least ``tol`` (the tolerance
    that tells planes apart). A view that lies almost wholly on the AF point's plane leaves a few
    specks behind it where the flow is noisy, or a slope that crosses ``tol`` gradually; on a
    coarse grid those specks are trusted where on a finer one they are not, and the two checks
    would disagree whether there is a hidden plane (lab-1801 c00001 at 1280x960: 43 specks on the
    quick check's grid, none on qa check's). The band starts away from the boundary because the
    flow smooths a step over a few of its cells. ``min_area_roi`` 0 and ``step_band_roi`` None:
    every trusted pixel behind the plane counts (the eighth pass's rule).

    ``roi`` (x0, y0, x1, y1), the whole AF ROI: a plane that lies wholly inside the view (it touches
    no edge of the grid), fills the ROI (fewer than ``min_px`` trusted pixels in it lie behind the
    plane) and has its centroid inside it is the subject the ROI frames, not an occluder: None. The
    ROI is put on the subject; a near foreground at the AF point reaches in from the view's edge
    (a portrait's foreground, even where it fills the ROI: lab-1816 c00005), or leaves the subject
    it hides showing within the ROI. A moving subject focused behind (lab-1816 c00023: the mover
    fills the ROI, inside the view, the background at the focus distance beyond its edges) was read
    as a near occluder and its wrong focus excused (``focus_framed_plane_is_subject``).
    """
    same = (np.abs(dep - dep_c) <= tol).astype(np.uint8)
    _, lab = cv2.connectedComponents(same, connectivity=4)
    x0, y0, x1, y1 = centre
    ids = np.unique(lab[y0:y1, x0:x1])
    ids = ids[ids > 0]
    if not len(ids):
        return None
    plane = np.isin(lab, ids)
    behind_all = ok & (dep < dep_c - tol)
    if roi is not None:
        rx0, ry0, rx1, ry1 = roi
        inside = not (plane[0].any() or plane[-1].any() or plane[:, 0].any() or plane[:, -1].any())
        if inside and int(behind_all[ry0:ry1, rx0:rx1].sum()) < min_px:
            m = cv2.moments(plane.view(np.uint8), binaryImage=True)  # the plane's centroid (0.4 ms at 512x384)
            if rx0 <= m["m10"] / m["m00"] < rx1 and ry0 <= m["m01"] / m["m00"] < ry1:
                return None
    dist = cv2.distanceTransform((~plane).astype(np.uint8), cv2.DIST_L2, 3)
    ring = (dist > 0) & (dist <= ring_px)
    if min_area_roi <= 0 and step_band_roi is None:
        behind = ring & behind_all
    else:
        roi_area = 9.0 * max(1, x1 - x0) * max(1, y1 - y0)
        _, comp_lab, stats, _ = cv2.connectedComponentsWithStats(behind_all.astype(np.uint8), connectivity=8)
        touching = np.unique(comp_lab[ring & behind_all])
        touching = touching[touching > 0]
        big = touching[stats[touching, cv2.CC_STAT_AREA] >= min_area_roi * roi_area]
        if not len(big):
            return None
        regions = np.isin(comp_lab, big)
        behind = ring & regions
        if step_band_roi is not None:
            roi_h = 3.0 * max(1, y1 - y0)
            a, b = step_band_roi[0] * roi_h, step_band_roi[1] * roi_h
            to_regions = cv2.distanceTransform((~regions).astype(np.uint8), cv2.DIST_L2, 3)
            inner = plane & (to_regions > a) & (to_regions <= b)  # the occluder's own edge is often untrusted
            outer = regions & (dist > a) & (dist <= b)
            if int(inner.sum()) < min_px or int(outer.sum()) < min_px:
                return None
            if float(np.median(dep[inner]) - np.median(dep[outer])) < tol:
                return None
    if int(behind.sum()) < min_px:
        return None
    if not nearest_plane:
        return float(np.median(dep[behind]))
    # The plane the occluder hides is the first one behind it: where its edge borders two planes
    # (a walker before the mover it hides, the background beyond the mover), the median of the
    # ring mixes them (lab-1819 c00008: 11133 mover pixels at -0.03 D, 32429 background pixels at
    # -0.18 D -> -0.16 D, just beyond focus_behind_tol_d, so the lens's focus on the mover was not
    # excused). The nearest plane with at least a plane's share of the ring is taken instead.
    return nearest_plane_departure(dep[behind], tol,
                                   max(min_px, round(min_area_roi * 9.0 * max(1, x1 - x0) * max(1, y1 - y0))))


#: ``nearest_plane_departure``'s histogram: bins ``tol / NEAREST_PLANE_BINS`` wide, a plane's window
#: ``2 * NEAREST_PLANE_HALF + 1`` bins (``tol / 2``). Coarser (``tol / 3`` bins, windows of 3) merged
#: lab-1819 c00008's mover (-0.04 D) into the background 0.13 D behind it: no peak of its own.
NEAREST_PLANE_BINS, NEAREST_PLANE_HALF = 10, 2


def nearest_plane_departure(values: np.ndarray, tol: float, min_px: int) -> float:
    """The departure (D) of the nearest plane among ``values`` (departures, larger = nearer).

    The values are counted in bins ``tol / NEAREST_PLANE_BINS`` wide; a plane is a window of
    ``2 * NEAREST_PLANE_HALF + 1`` bins (``tol / 2``) holding at least ``min_px`` of them whose count
    is a local maximum over the windows one bin either side; the nearest such window's median is
    returned. DIS smooths a step between planes into a thin spread of values between them, which
    no window holds enough of; where no window qualifies (or fewer than ``min_px`` values), the
    median of all.
    """
    v = np.asarray(values, np.float64)
    if v.size < max(1, min_px):
        return float(np.median(v))
    step = tol / NEAREST_PLANE_BINS
    lo = float(v.min())
    idx = np.floor((v - lo) / step).astype(np.int64)
    h = NEAREST_PLANE_HALF
    counts = np.bincount(idx, minlength=2 * h + 1)  # "same" below keeps this length
    window = np.convolve(counts, np.ones(2 * h + 1, np.int64), mode="same")
    padded = np.concatenate([[-1], window, [-1]])
    peak = (window >= padded[:-2]) & (window >= padded[2:]) & (window >= min_px)
    if not peak.any():
        return float(np.median(v))
    k = int(np.nonzero(peak)[0][-1])  # the nearest (largest departure) plane
    sel = (idx >= k - h) & (idx <= k + h)
    return float(np.median(v[sel]))


def grade_depth(out: CaptureQA, offset_d: float, cfg: QAConfig, session: bool = True,
                offset_margin_d: float = 0.0, lone_uncertain_d: float = 0.0) -> None:
    """``defocused`` from ``subject_depth_departure_d`` less the rig's own offset ``offset_d``.

    The reference phone's small rotation on the mount adds a constant to every capture's parallax
    (a few tenths of a degree: ~0.1-0.2 D); ``hzsr qa check`` removes it with the session's median
    departure (most shots are focused on their subject) and grades again, and so does the quick
    check with the captures of the session it has seen. Without such a median (``session=False``)
    the figure is graded as it is, and the quick check counts ``rig.depth_offset_d`` of uncertainty;
    with a median of the captures seen so far, ``offset_margin_d``: how far that median may lie
    from the whole session's. ``lone_uncertain_d``: without a session offset, how far the
    offset may be (``rig.depth_offset_d``); the warn and fail levels are raised by it (``qa check``
    of a lone capture: the W-T modules' rotation alone reads 0.24-0.40 D on the labelled sessions).
    In the quick check the figure's spread is taken over every offset within that uncertainty,
    the near-occluder rule evaluated at each (``_offset_candidates``): the rule switches with the
    offset, so a margin added to one offset's figure would miss it.
    """
    th = cfg.thresholds
    row = out.row
    if "subject_depth_departure_d" not in row:
        return
    out.reasons = [r for r in out.reasons if not (r.code == "defocused" and "parallax" in r.message)]
    out.spread = [sp for sp in out.spread if sp[0] != "defocused (depth)"]  # graded again below
    out.graded = [g for g in out.graded if g[0] != "defocused (depth)"]
    dep, excused = _calibrated_departure(row, offset_d, th)
    roi = row.get("af_roi_wt") or ""
    where = f" (AF ROI [{roi.replace(';', ', ')}])" if roi else ""
    what = (f"the AF subject's parallax puts it at {row['subject_depth_flow_d'] - offset_d:.2f} D, main T focused "
            f"at {row['main_T_focus_d']:.2f} D: the subject{where} is out of focus in T")
    row["af_occluder_excused"] = int(excused)
    if excused:
        what = (f"the AF ROI's centre{where} shows a plane in front of the focus distance "
                f"({row['main_T_focus_d']:.2f} D); by their parallax the plane it hides lies "
                f"{dep:+.2f} D from the focus distance: a near occluder, the subject behind it in focus")
    row["subject_depth_departure_calibrated_d"] = dep
    if lone_uncertain_d > 0:  # the levels moved out by it: the figure stays the quick check's
        what += f" (no session offset: levels raised by {lone_uncertain_d:.2f} D)"
    warn, fail = th.warn_depth_departure_d + lone_uncertain_d, th.fail_depth_departure_d + lone_uncertain_d
    offset_u = offset_margin_d if session else cfg.rig.depth_offset_d
    _grade(out, "defocused", abs(dep), warn, fail, f"{what}; |difference| (D)", abs_margin=offset_u,
           tag="defocused (depth)")
    last = out.spread[-1][0] if out.spread else None
    if out.margin and np.isfinite(offset_u) and offset_u > 0 and last == "defocused (depth)":
        # The quick check: the offset is known to +-offset_u only, and the near-occluder rule
        # switches with it (a plane at the focus distance for one offset, not for another: lab-1804
        # c00000, raw 1.42 D, excused in qa check by the session's 0.38 D, fail in the quick check
        # at offset 0). The figure's extremes over every offset within it, each widened by the
        # quick margin: |departure| is piecewise linear in the offset, so they lie at the ends, its
        # kinks and where the rule switches (both sides), all of which are evaluated.
        m = out.abs_margins.get("defocused (depth)", 0.0)
        m = max(m) if isinstance(m, (tuple, list)) else float(m)
        offs = _offset_candidates(row, offset_d - offset_u, offset_d + offset_u, th.focus_behind_tol_d)
        figs = np.abs([_calibrated_departure(row, float(o), th)[0] for o in offs])
        lo, hi = float(figs.min()) - m, float(figs.max()) + m
        ranks = [sum(v > lv for lv in (warn, fail)) for v in (lo, hi)]
        key, r0, r1 = out.spread[-1]
        out.spread[-1] = (key, min(r0, *ranks), max(r1, *ranks))


def _offset_candidates(row: dict, lo: float, hi: float, tol: float) -> np.ndarray:
    """The offsets in [lo, hi] where ``_calibrated_departure``'s |figure| may take its extremes: the
    ends; where a plane's departure is zero (the AF point's, the hidden plane's); where the rule's
    conditions switch (a departure at +-``tol``), a hair either side."""
    planes = [float(row["subject_depth_departure_d"])]
    if np.isfinite(row.get("af_hidden_plane_departure_d", np.nan)):
        planes.append(float(row["af_hidden_plane_departure_d"]))
    planes_ = np.asarray(planes)
    switch = np.concatenate([planes_ - tol, planes_ + tol])
    eps = 1e-9
    c = np.concatenate([[lo, hi], planes_, switch - eps, switch + eps])
    return c[(c >= lo) & (c <= hi)]


def _calibrated_departure(row: dict, offset_d: float, th) -> tuple[float, bool]:
    """The AF point's departure from the focus distance less the rig's offset ``offset_d``, and
    whether the near-occluder rule excused it.

    Where the AF point's plane is more than ``focus_behind_tol_d`` nearer than the focus distance
    and the plane it hides (``af_hidden_plane_departure_d``, ``hidden_plane_departure``) lies within
    ``focus_behind_tol_d`` of it, the ROI's centre shows a near occluder and the lens focused on
    the subject behind it: the departure is the hidden plane's. A focus in front of the AF point
    (the foreground, wrong_depth's portraits), or behind the plane the occluder hides (a far
    background), is not excused."""
    dep = row["subject_depth_departure_d"] - offset_d
    hidden = row.get("af_hidden_plane_departure_d", np.nan)
    if not (np.isfinite(hidden) and dep > th.focus_behind_tol_d):
        return dep, False
    if abs(hidden - offset_d) <= th.focus_behind_tol_d:
        return float(hidden - offset_d), True
    return dep, False


def _fine_af_roi(fine: dict[str, np.ndarray], r: Registration, roi: list[float]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """main T's AF ROI and the reference T warped onto it, at qa check's scale, from a coarser ``tt``.

    ``fine``: both Ts as ``qa check`` decodes them; ``r``: main T -> ref T registered on a coarser
    grid (the quick check's); ``roi``: ``[x, y, w, h]`` in ``fine``'s pixels. The flow, its
    occlusion map and validity are carried to the fine pixels of the ROI alone (bilinear, pixel
    centres kept, vectors scaled), the reference is warped there: qa check's own crop, warped by
    the quick flow. Returns (main T luma, warped ref T luma, mask, main T luma through the warp's
    bilinear weights: ``matched_interpolation``) of the ROI, or None if the ROI leaves the frame.
    """
    t_fine, ref_fine = fine["main_T"], fine["ref_T"]
    hf, wf = t_fine.shape[:2]
    box = clip_roi(roi, (hf, wf))
    if box is None:
        return None
    x0, y0, x1, y1 = box
    hc, wc = r.flow_fwd.shape[:2]
    sx, sy = wf / wc, hf / hc
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    mx, my = (gx + 0.5) / sx - 0.5, (gy + 0.5) / sy - 0.5  # fine pixel centres on the coarse grid
    flow = cv2.remap(r.flow_fwd, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    occ = cv2.remap(r.occlusion, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    tx, ty = gx + flow[..., 0] * sx, gy + flow[..., 1] * sy
    cx, cy = gx + r.shift.dx * sx, gy + r.shift.dy * sy  # the global shift's target, as register_pair
    inside = ((tx >= -0.5) & (tx <= wf - 0.5) & (ty >= -0.5) & (ty <= hf - 0.5)
              & (cx >= -0.5) & (cx <= wf - 0.5) & (cy >= -0.5) & (cy <= hf - 0.5))
    warped = cv2.remap(ref_fine, tx, ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    t_y = to_luma(t_fine)
    return t_y[y0:y1, x0:x1], to_luma(warped), inside & (occ < 0.5), matched_interpolation(t_y, tx, ty, (x0, y0))


def _judge_quality(out: CaptureQA, frames, quality, regs, srcs, opt, roi_of, cfg: QAConfig,
                   fine: dict[str, np.ndarray] | None = None, row_figures: bool = True) -> None:
    th = cfg.thresholds
    row = out.row
    # Focus: the phones' AF metadata, then sharpness in main T's AF ROI in both Ts.
    if "main_T" in frames and "ref_T" in frames:
        fm, fr = frames["main_T"].focus_distance_diopters, frames["ref_T"].focus_distance_diopters
        row["focus_mismatch_diopters"] = abs(fm - fr)
        _grade(out, "focus_mismatch", abs(fm - fr), th.warn_focus_mismatch_d, th.fail_focus_mismatch_d,
               f"AF metadata: main T focused at {fm:.2f} D, reference T at {fr:.2f} D; |difference|",
               tag="focus_mismatch (metadata)")
    blurrier = None
    fine_pair = None  # the quick check's AF ROI of both Ts at qa check's scale (refines motion_blur)
    tt_ok = _reg_ok(regs.get("tt"), th, consistent=True)
    if "main_T" in quality and "ref_T" in quality and tt_ok:
        # The same scene region in both Ts: main T's AF ROI, and where tt's flow takes it in ref T.
        r = regs["tt"]
        pair = None
        if fine is not None:  # the quick check: the ROI at qa check's scale, warped by its own flow
            s = fine["main_T"].shape[0] / srcs["main_T"].shape[0]
            pair = _fine_af_roi(fine, r, [v * s for v in roi_of("main_T")])
        else:
            t_y = to_luma(srcs["main_T"])
            box = clip_roi(roi_of("main_T"), t_y.shape)
            if box is not None:
                x0, y0, x1, y1 = box
                pair = (t_y[y0:y1, x0:x1], to_luma(r.warped_ref[y0:y1, x0:x1]),
                        r.valid[y0:y1, x0:x1] & (r.occlusion[y0:y1, x0:x1] < 0.5))
        if pair is not None:
            if fine is not None:
                fine_pair = pair
            t_roi, ref_roi, m = pair[:3]
            sm, sr = sharpness(t_roi, m), sharpness(ref_roi, m)
            ratio = min(sm, sr) / max(sm, sr, 1e-12)
            row["focus_sharpness_ratio"] = ratio
            if ratio < th.warn_sharpness_ratio:
                blurrier = "ref_T" if sr < sm else "main_T"
            # Sharpness alone fails a capture only when the AF metadata cannot vouch for the focus
            # (absent, or itself mismatched); where both phones report the same plane, a sharpness
            # gap is more often noise, shake or parallax in the ROI: a warning.
            meta_ok = "focus_mismatch_diopters" in row and row["focus_mismatch_diopters"] <= th.warn_focus_mismatch_d
            _grade(out, "focus_mismatch", ratio, th.warn_sharpness_ratio, None if meta_ok else th.fail_sharpness_ratio,
                   f"AF ROI sharpness: {blurrier or 'one'} T has {ratio:.2f} of the other's", below=True,
                   tag="focus_mismatch (sharpness)")
    if tt_ok:
        # Camera shake, T against T: both Ts have the same optics, so at T's own resolution a
        # shaken T loses gradient energy along its smear only (a line blur of 1-2 % of the width is
        # 5-10 T px but 1-3 px at the W crop's optical resolution, where the W comparison looks).
        # Clipped pixels (either T) carry no gradient whatever the blur: left out, or an
        # overexposed T reads as smeared along the edges of its clipped areas.
        r = regs["tt"]
        clipped = (channel_max(srcs["main_T"]) >= 250) | (channel_max(r.warped_ref) >= 250)
        clipped = cv2.dilate(clipped.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        m = r.valid & (r.occlusion < 0.5) & ~clipped
        # The reference was warped (bilinear): at a fractional offset that smooths it along the
        # flow, and where the flow is smooth (landscapes) the smoothing is one direction over the
        # whole frame: main T goes through the same weights (`landscape-demo07`, untouched, read
        # 0.877 against the fail level 0.881 before; issue 18's eighth pass).
        h, w = r.flow_fwd.shape[:2]
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        t_y = matched_interpolation(to_luma(srcs["main_T"]), gx + r.flow_fwd[..., 0], gy + r.flow_fwd[..., 1])
        ref_y = to_luma(r.warped_ref)
        dirs = directional_share_ratios(t_y, ref_y, m, n_dirs=8)
        if np.isfinite(dirs).all() and dirs.max() > 0:
            anis = float(dirs.min() / dirs.max())
            shaken = "main_T" if sharpness(t_y, m) < sharpness(ref_y, m) else "ref_T"  # the blurrier one
            angle = 180.0 * int(np.argmin(dirs) if shaken == "main_T" else np.argmax(dirs)) / len(dirs)
            row["tt_blur_anisotropy"] = anis
            row["tt_blur_angle_deg"] = angle
            _grade(out, "motion_blur", anis, th.warn_tt_blur_anisotropy, th.fail_tt_blur_anisotropy,
                   f"{shaken} is smeared along {angle:.0f} deg against the other T (directional sharpness "
                   f"min/max {anis:.2f}: shake or motion)", below=True, tag="motion_blur (T vs T)")
            if fine_pair is not None and cfg.check.quick_refine_tt_blur:
                # The quick check: a smear of a few px at qa check's scale is under one px on its
                # grid (a shaken portrait: 0.76 here, 0.55 in qa check). Shake smears the whole
                # frame alike, so the same figure on the AF ROI at qa check's scale (already
                # warped for the focus ratio: no extra flow) speaks for it where the coarse one
                # is undecided.
                fanis, corr = refined_tt_anisotropy(*fine_pair, cfg)
                row["tt_fine_roi_coarse_corr"] = corr
                if fanis is not None and np.isfinite(fanis):  # None: the ROIs differ, the coarse figure stays
                    row["tt_blur_anisotropy_fine_roi"] = fanis
                    refine_grade(out, "motion_blur (T vs T)", fanis, lambda v: _grade(
                        out, "motion_blur", v, th.warn_tt_blur_anisotropy, th.fail_tt_blur_anisotropy,
                        f"{shaken} is smeared against the other T in the AF ROI at qa check's scale "
                        f"(directional sharpness min/max {v:.2f}: shake or motion)", below=True,
                        tag="motion_blur (T vs T) refined"))
    # Camera shake: a T's sharpness against the W crop, by direction, at W's optical resolution.
    for name, slot in (("wt", "main_T"), ("wr", "ref_T")):
        r = regs.get(name)
        if not _reg_ok(r, th):
            continue
        judge = "tt_blur_anisotropy" not in row  # reported; judged only where T vs T could not be
        if not (judge or row_figures):
            continue  # the quick check's verdict reads none of it
        m = r.valid & (r.occlusion < 0.5)
        if r.defocus is not None:
            m &= r.defocus < 0.5  # out-of-focus planes are blurred on purpose (depth of field)
        t_y, w_y = to_luma(r.warped_ref), to_luma(srcs["main_W"])
        if row_figures:  # the T's band sharpness over the W crop's: graded nowhere
            row[f"{slot}_blur_ratio"] = band_sharpness_ratio(t_y, w_y, m, opt)
        dirs = directional_sharpness_ratios(t_y, w_y, m, opt)
        if not np.isfinite(dirs).all():
            continue
        anis = float(dirs.min() / max(dirs.max(), 1e-9))
        row[f"{slot}_blur_anisotropy"] = anis
        if not judge:
            continue
        fail = th.fail_blur_anisotropy if blurrier == slot else None
        _grade(out, "motion_blur", anis, th.warn_blur_anisotropy, fail,
               f"{slot} is smeared along {180 * int(np.argmin(dirs)) / len(dirs):.0f} deg (directional sharpness "
               f"min/max {anis:.2f} against the W crop: shake or motion)", below=True)
    # Exposure and colour.
    grade_exposure(out, quality, th)
    if "main_T" in quality and "ref_T" in quality:
        b = brightness_log_ratio(quality["main_T"], quality["ref_T"])
        c = colour_delta(quality["main_T"], quality["ref_T"])
        row["brightness_log_ratio"], row["colour_delta"] = b, c
        _grade(out, "brightness_mismatch", abs(b), th.warn_brightness_ratio, th.fail_brightness_ratio,
               f"ref_T/main_T mean luma: |log ratio| {abs(b):.2f}")
        _grade(out, "colour_mismatch", c, th.warn_color_delta, None,
               f"ref_T vs main_T white balance: max |log channel ratio| {c:.2f}")
    for name, slot in (("wt", "main_T"), ("wr", "ref_T")):
        r = regs.get(name)
        if r is not None and "defocus_frac" in r.stats:
            row[f"{slot}_defocus_frac"] = r.stats["defocus_frac"]
            _grade(out, "defocused", r.stats["defocus_frac"], th.warn_defocus_frac, None,
                   f"{slot}: fraction of the view off the focal plane {r.stats['defocus_frac']:.2f}",
                   tag="defocused (fraction)")


def grade_exposure(out: CaptureQA, quality: dict[str, dict], th) -> None:
    """``overexposed`` and ``underexposed`` from each frame's clipped fraction and mean luma.

    A bright scene clips in both phones alike; an exposure fault makes one phone brighter. A frame
    fails above ``fail_clipped_frac`` when it is also the brighter one by more than
    ``warn_brightness_ratio``, or above twice ``fail_clipped_frac`` regardless. The reference T is
    called brighter only where it frames the main phone's scene: once the registrations have
    failed ``no_overlap`` or ``large_shift`` (``_judge_registration``, graded before this) a knocked
    or bumped reference phone looks at another part of the scene (a sky), and its being brighter
    says nothing about an exposure (blind 1815/1816: a knocked and a bumped phone's reference, 0.29
    and 0.32 clipped, failed ``overexposed``, a defect of the main phone's auto-exposure).

    Args:
        out: the capture's result; reasons are added to it.
        quality: per slot, ``frame_quality``'s figures (``clipped_frac``, ``brightness``).
        th: ``cfg.thresholds``.
    """
    framed_apart = any(r.level is Verdict.FAIL and r.code in ("no_overlap", "large_shift") for r in out.reasons)
    other = {"main_W": "ref_T", "main_T": "ref_T", "ref_T": "main_T"}
    for slot, q in quality.items():
        o = quality.get(other[slot])
        brighter = o is not None and brightness_log_ratio(o, q) > th.warn_brightness_ratio
        if slot == "ref_T" and framed_apart:
            brighter = False  # another part of the scene, not a brighter exposure of the same one
        # A scene that clips in both phones alike still gives a consistent pair: it warns only
        # above fail_clipped_frac (clean bright scenes warned 1 in 6 at the old level).
        fail = th.fail_clipped_frac if brighter else 2 * th.fail_clipped_frac
        warn = th.warn_clipped_frac if brighter else th.fail_clipped_frac
        _grade(out, "overexposed", q["clipped_frac"], warn, fail,
               f"{slot}: clipped fraction {q['clipped_frac']:.2f}" + (" (and brighter than the other phone)"
                                                                       if brighter else ""))
        _grade(out, "underexposed", q["brightness"], th.warn_dark_mean, None,
               f"{slot}: mean luma {q['brightness']:.3f}", below=True)


def _collect_images(out: CaptureQA, srcs, regs: dict[str, Registration], cfg: QAConfig) -> None:
    n = cfg.check.map_long_side
    for slot, img in srcs.items():
        if img is not None:
            out.images[f"img_{'main_W_crop' if slot == 'main_W' else slot}"] = _thumb(img, n)
    for name, r in regs.items():
        for k, m in r.maps().items():
            out.images[f"map_{name}_{k}"] = _thumb((np.clip(m, 0, 1) * 255).astype(np.uint8), n)
        out.images[f"img_{name}_warped"] = _thumb(r.warped_ref, n)
    if "map_moving" in out.images:
        h, w = out.images.get("img_main_T", out.images["map_moving"]).shape[:2]
        out.images["map_moving"] = cv2.resize(out.images["map_moving"], (w, h), interpolation=cv2.INTER_NEAREST)

def median_margin(values: list[float], z: float = 2.0, sigma_floor: float = 0.0) -> float:
    """How far the median of ``values`` (a sample of the session) may lie from the whole session's.

    ``z`` standard errors of the median: ``1.2533 sigma / sqrt(n)``, sigma from the median absolute
    deviation (``1.4826 MAD``), robust to the few defective captures among them, and at least
    ``sigma_floor`` (a handful of values can agree by chance). Two values that disagree (one of
    them defective) give a sigma, and a margin, of their own difference's size.
    """
    v = np.asarray(values, np.float64)
    if len(v) < 2:
        return float("inf")
    sigma = max(1.4826 * float(np.median(np.abs(v - np.median(v)))), sigma_floor)
    return z * 1.2533 * sigma / math.sqrt(len(v))


UNDECIDED = "undecided"  # the quick check's word where its coarser figures sit too near a threshold
#: Per session folder, the depth departures the quick check has seen in this process (the capture
#: line runs it once per shot): their median is the mount's offset, as qa check takes it (no file).
#: Each entry is kept with its capture's identity (``_capture_identity``) and read only while that
#: still holds, so a capture discarded, retaken or a session folder made again under the same path
#: in the same process (a notebook, a test run) never lends its figures to the new one.
_SESSION_DEPTHS: dict[str, dict[str, tuple[tuple[int, int], float]]] = {}
#: Likewise the W-crop pairings' figures of the captures seen, for M_defocus's focus offsets.
_SESSION_FOCUS: dict[str, dict[str, tuple[tuple[int, int], dict]]] = {}


def _capture_identity(capture_dir: Path) -> tuple[int, int] | None:
    """``capture.json``'s inode and modification time: a capture written again differs in the
    second (the first too, on most file systems); None where it is gone."""
    try:
        st = (capture_dir / "capture.json").stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def _session_memory(store: dict[str, dict[str, tuple[tuple[int, int], Any]]], capture_dir: Path, value: Any
                    ) -> dict[str, Any]:
    """Remember ``value`` for ``capture_dir`` and return what this process remembers of its session's
    captures that still are what they were (stale entries dropped), by capture folder name."""
    seen = store.setdefault(str(capture_dir.parent), {})
    ident = _capture_identity(capture_dir)
    if ident is not None:
        seen[capture_dir.name] = (ident, value)
    for name, (was, _) in list(seen.items()):
        if name != capture_dir.name and _capture_identity(capture_dir.parent / name) != was:
            del seen[name]
    return {name: v for name, (_, v) in seen.items()}


#: Per session folder, the record ``qa check`` left for the latest other session of the same main
#: phone (``rig_offset.carried_record``), read once per session; None: none.
_SESSION_CARRIED: dict[str, dict | None] = {}


def _carried(capture_dir: str | Path, cfg: QAConfig) -> dict | None:
    """This capture's session's carried record (``rig_offset``); None: none, or
    ``check.quick_carry_rig_offset`` off."""
    if not cfg.check.quick_carry_rig_offset:
        return None
    session = Path(capture_dir).resolve().parent.parent
    key = str(session)
    if key not in _SESSION_CARRIED:
        _SESSION_CARRIED[key] = rig_offset.carried_record(session, rig_offset.main_device(capture_dir))
    return _SESSION_CARRIED[key]


def carried_depth_offset(rec: dict | None, cfg: QAConfig) -> tuple[float, float] | None:
    """The carried depth offset and its half-width: the earlier session's margin (at least
    ``rig.depth_scatter_d``) plus ``rig.depth_offset_drift_d``; None without a record."""
    if rec is None:
        return None
    return float(rec["offset_d"]), max(float(rec["margin_d"]), cfg.rig.depth_scatter_d) + cfg.rig.depth_offset_drift_d


def carried_focus_offsets(rec: dict | None, width: float, cfg: QAConfig
                          ) -> dict[str, tuple[tuple[float, float], float]]:
    """Per W-crop pairing, the carried focus offset in this analysis's px (the record keeps shares
    of the width) and its half-width (the earlier session's margin, at least
    ``check.quick_focus_offset_scatter_px``); a pairing whose margin exceeds
    ``check.quick_carry_focus_max_margin_px`` is left out (the earlier session's figures of it
    scattered: a reference phone knocked off the scene leaves W crop vs reference T meaningless)."""
    out: dict[str, tuple[tuple[float, float], float]] = {}
    foc = rec.get("focus_offsets_w") if rec is not None else None
    if not isinstance(foc, dict) or not (np.isfinite(width) and width > 0):
        return out  # none, or a foreign summary's (another folder's files are input too)
    for name, v in foc.items():
        try:
            dx, dy, m = (float(x) * width for x in v)
        except (TypeError, ValueError):
            continue
        if np.isfinite(m) and m <= cfg.check.quick_carry_focus_max_margin_px:
            out[name] = ((dx, dy), max(m, cfg.check.quick_focus_offset_scatter_px))
    return out


def quick_check(capture_dir: str | Path, cfg: QAConfig | None = None) -> tuple[str, list[str]]:
    """Low-resolution QA of one capture, for the crew's per-capture line: (verdict, reasons).

    Decodes the JPEGs with DCT scaling to about ``check.quick_long_side`` and runs the same
    measurements, thresholds and verdict function (``hzsr.core.verdict.verdict_of``) as
    ``hzsr qa check`` (``check.quick_*``: qa check's DIS preset, fewer keypoints); no files
    written. Both Ts are decoded at qa check's scale: the AF-ROI sharpness ratio is measured on
    qa check's own ROI pixels, warped by the quick flow (``check.quick_fine_af_roi``), and
    ``M_defocus`` and ``moving_object`` count the quick flow in qa check's flow-grid px; where
    T vs T's ``motion_blur`` figure is undecided, it is measured again on that AF ROI at qa
    check's scale (``check.quick_refine_tt_blur``, ``refine_grade``). The rejected fraction of a
    capture whose main T has little texture the quick W crop cannot resolve
    (``fine_detail_share``) has a margin of its own (``rejected (little fine detail)``). Where a
    figure lies within its margin (``check.quick_margins``) of a threshold and the verdict would
    change across it, the answer is ``undecided`` (``qa check`` decides), never a verdict that ``qa check`` may
    contradict.
    ``defocused``'s depth check needs the mount's offset: from the session's second capture on
    (``check.quick_min_captures_for_offset``), the median of what this process has seen of the
    session, uncertain by ``median_margin`` (at least ``rig.depth_scatter_d`` of scatter); and from
    the first capture on, the offset ``qa check`` took for the latest other session in the same
    sessions folder shot with the same main phone (``rig_offset``: the W-T modules' rotation is the
    phone's), uncertain by that session's margin plus ``rig.depth_offset_drift_d``; with both, the
    offset lies where the two intervals meet (``rig_offset.combine``).
    """
    cfg = cfg or QAConfig()
    q = analyse_capture(capture_dir, cfg, quick=True, thumbs=False, row_figures=False)
    # M_defocus from the focus distance's plane, as qa check measures it (check.run_check): with
    # the offsets of the session's captures seen so far, this capture again where they say so.
    cap = Path(capture_dir).resolve()
    rows = _session_memory(_SESSION_FOCUS, cap, {k: v for k, v in q.row.items()
                                                 if k.startswith(("wt_", "wr_", "tt_departure"))})
    offsets = focus_offsets_of(list(rows.values()), cfg.check.quick_min_captures_for_offset)
    rec = _carried(capture_dir, cfg)
    carried = carried_focus_offsets(rec, float(q.row.get("analysis_width", np.nan)), cfg)
    if len(rows) < cfg.check.quick_focus_settled_captures:  # a few captures: the phone's own offset first
        offsets.update({k: c for k, (c, _) in carried.items()})
    switch = focus_plane_differs(q.row, offsets, cfg)
    other = other_focus_switch(q.row, list(rows.values()), offsets, switch, cfg, carried)
    alt = q if other is not None and not other else None  # the analysis without a switch, kept
    if switch:
        q = analyse_capture(capture_dir, cfg, quick=True, thumbs=False, focus_offsets=switch, row_figures=False)
    if other:
        alt = analyse_capture(capture_dir, cfg, quick=True, thumbs=False, focus_offsets=other, row_figures=False)
    dep = q.row.get("subject_depth_departure_d")
    off = None
    if dep is not None and np.isfinite(dep):
        seen = _session_memory(_SESSION_DEPTHS, cap, float(dep))
        own = ((float(np.median(list(seen.values()))),
                median_margin(list(seen.values()), sigma_floor=cfg.rig.depth_scatter_d))
               if len(seen) >= cfg.check.quick_min_captures_for_offset else None)  # the session's offset so far
        off = rig_offset.combine(own, carried_depth_offset(rec, cfg))
        if off is not None:
            for a in (q, alt) if alt is not None else (q,):
                grade_depth(a, off[0], cfg, offset_margin_d=off[1])
    # large_shift in T vs T less the two Ts' offset: the median of the captures seen so far (as
    # qa check takes the session's), uncertain by median_margin (at least rig.tt_offset_scatter_frac).
    for a in (q, alt) if alt is not None else (q,):
        quick_tt_regrade(a, list(rows.values()), cfg)
    reasons = [f"{r.code}: {r.message}" for r in q.reasons if r.level is not Verdict.PASS]
    decided = q.decided()
    if decided is None:
        return UNDECIDED, reasons + [f"undecided: {', '.join(q.undecided_by())} within the quick check's margin "
                                     "of a threshold: `hzsr qa check` decides"]
    if alt is not None and alt.decided() != decided:
        return UNDECIDED, reasons + ["undecided: defocused (focus plane) within the doubt about the session's focus "
                                     "offset (from which plane qa check measures M_defocus): `hzsr qa check` decides"]
    # Each pairing's inlier gate: where qa check's count (more keypoints, a finer grid) may lie on
    # the other side of it, the capture analysed as if it did (quick_gate_counts), graded as above.
    # Only for a verdict decided so far: an undecided one stays so whatever the gate does. The
    # pairings near their gate are moved across together, those counted above it down and those
    # below it up (qa check's counts all differ from the quick ones at once): at most two more
    # analyses a capture, one in most (at 12 MP the W crop's counts lie near the gate on most
    # captures: 12-37 in qa check, 16-59 quick).
    sides: dict[bool, dict[str, int]] = {False: {}, True: {}}  # True: moved up
    for name in ("tt", "wt", "wr"):
        for n in quick_gate_counts(q.row, cfg, name):
            sides[n > q.row[f"{name}_inliers"]][name] = n
    for moved in (m for m in sides.values() if m):
        a = analyse_capture(capture_dir, cfg, quick=True, thumbs=False, focus_offsets=switch or None,
                            row_figures=False, gate_inliers=moved)
        if off is not None:
            grade_depth(a, off[0], cfg, offset_margin_d=off[1])
        quick_tt_regrade(a, list(rows.values()), cfg)
        if a.decided() != decided:
            counted = ", ".join(f"{_PAIRING_WORDS[k]}'s {int(q.row[f'{k}_inliers'])} as {v}" for k, v in moved.items())
            exact = _with_check_counts(capture_dir, q, alt, switch, off, list(rows.values()), cfg)
            if exact is not None:
                return exact.decided().value, [f"{r.code}: {r.message}" for r in exact.reasons
                                               if r.level is not Verdict.PASS]
            return UNDECIDED, reasons + [
                f"undecided: keypoint inliers within the quick check's margin of the inlier gate (align.min_inliers "
                f"{cfg.align.min_inliers}): counted as qa check may count them ({counted}), the quick verdict would "
                f"be {_word(a.decided())}, not {decided.value}: `hzsr qa check` decides"]
    return decided.value, reasons


_PAIRING_WORDS = {"tt": "T vs T", "wt": "W crop vs main T", "wr": "W crop vs reference T"}


def _with_check_counts(capture_dir: str | Path, q: CaptureQA, alt: CaptureQA | None,
                       switch: dict[str, tuple[float, float]], off: tuple[float, float] | None,
                       seen: list[dict], cfg: QAConfig) -> CaptureQA | None:
    """The quick analysis again with ``qa check``'s inlier counts, where it can have them; None
    where it cannot, or where that analysis leaves the verdict undecided.

    ``quick_check`` calls it where ``qa check``'s count may lie across an inlier gate and the
    verdict would change there. Where the quick analysis registers ``qa check``'s own pixels
    (``quick_pixels_as_check``: frames that neither check reduces, the labelled set's 480x360),
    its keypoint votes with ``qa check``'s number of corners (``analyse_capture(check_keypoints=True)``)
    are ``qa check``'s: the same images, corners and seeded RANSAC, so the same shifts and counts in
    all three pairings (W crop vs reference T's hint composes the other two). The gate is then no
    longer in doubt, and the verdict is that analysis's, graded as the first (the session's offsets)
    with the quick margins. Not where the focus plane is in doubt too (``alt``, a second analysis):
    that doubt would need the same again.
    """
    if not (cfg.check.quick_check_counts and q.row.get("quick_pixels_as_check")) or (alt is not None and alt is not q):
        return None
    c = analyse_capture(capture_dir, cfg, quick=True, thumbs=False, focus_offsets=switch or None,
                        row_figures=False, check_keypoints=True)
    if off is not None:
        grade_depth(c, off[0], cfg, offset_margin_d=off[1])
    quick_tt_regrade(c, seen, cfg)
    return c if c.decided() is not None else None


def _word(v: Verdict | None) -> str:
    return v.value if v is not None else UNDECIDED


def quick_tt_gate_counts(row: dict, cfg: QAConfig) -> list[int]:
    """``quick_gate_counts`` of T vs T."""
    return quick_gate_counts(row, cfg, "tt")


def quick_gate_counts(row: dict, cfg: QAConfig, pairing: str = "tt") -> list[int]:
    """The inlier counts of ``pairing`` (``tt``, ``wt``, ``wr``), across the inlier gate from the
    quick check's, that ``qa check`` may count (``[]``: none): the quick check keeps fewer keypoints
    on a coarser grid, so a count near ``align.min_inliers`` (or ``thresholds.fail_min_inliers``)
    may fall on the other side of it in ``qa check``, which then registers the pairing from
    another start, or calls it no overlap.

    ``qa check``'s count lies within ``[n * lo - s, n * hi + s]`` of the quick one ``n``
    (``check.quick_tt_inlier_ratio``, ``quick_wt_inlier_ratio``, ``quick_wr_inlier_ratio``: (lo,
    hi); ``check.quick_tt_inlier_slack`` s; fitted on the calibration seeds); each end of that
    range on the other side of a gate is returned. Where T vs T reads smeared
    (``tt_blur_anisotropy`` under ``thresholds.warn_tt_blur_anisotropy``), its ``lo`` is
    ``check.quick_tt_inlier_ratio_smeared``: a smear of a few quick-grid px is tens of px on qa
    check's, whose corners then stop matching (1280x960 shaken Ts: 172 quick inliers, 11 in qa
    check; 140 and 6).
    """
    n = row.get(f"{pairing}_inliers")
    if n is None or not np.isfinite(n):
        return []
    lo_r, hi_r = {"tt": cfg.check.quick_tt_inlier_ratio, "wt": cfg.check.quick_wt_inlier_ratio,
                  "wr": cfg.check.quick_wr_inlier_ratio}[pairing]
    if pairing == "tt" and row.get("tt_blur_anisotropy", 1.0) < cfg.thresholds.warn_tt_blur_anisotropy:
        lo_r = min(lo_r, cfg.check.quick_tt_inlier_ratio_smeared)
    slack = cfg.check.quick_tt_inlier_slack
    lo, hi = max(0, math.floor(n * lo_r - slack)), math.ceil(n * hi_r + slack)
    gates = {cfg.align.min_inliers, cfg.thresholds.fail_min_inliers}
    out = []
    if any(lo < g <= n for g in gates):
        out.append(lo)
    if any(n < g <= hi for g in gates):
        out.append(hi)
    return out


def other_focus_switch(row: dict, seen: list[dict], offsets: dict[str, tuple[float, float]],
                       switch: dict[str, tuple[float, float]], cfg: QAConfig,
                       carried: dict[str, tuple[tuple[float, float], float]] | None = None
                       ) -> dict[str, tuple[float, float]] | None:
    """Where the quick check's choice of ``M_defocus``'s plane (``focus_plane_differs`` with the
    median offsets of the captures ``seen`` so far) might be another with the session's offset,
    the other choice: the switch to analyse the capture with as well ({}: none); None: no doubt.

    ``qa check`` takes each pairing's offset from the whole session; the quick check has a few
    captures, and two shots of one scene agree with each other however far their scene departs
    from the session's (make demo's two portraits: 75 px where the session's 16 captures say 0;
    the quick check did not switch, qa check did and warned on a fraction of 1.00, issue 18's
    ninth pass). The plausible offsets: until ``check.quick_focus_settled_captures`` captures,
    the seen captures' median, the nominal rig's (0, 0), and the box they span (corners, edges'
    middles, centre); then the median within ``median_margin`` of it each way (at least
    ``check.quick_focus_offset_scatter_px``). Until then, a pairing's offset ``carried`` from an
    earlier session of the same phone (``carried_focus_offsets``: centre, half-width) replaces
    them: that offset within its half-width each way.
    """
    other: dict[str, tuple[float, float]] = {}
    doubt = False
    for name in ("wt", "wr"):
        d = [(r[f"{name}_subject_dx"] - r[f"{name}_focus_expected_dx"],
              r[f"{name}_subject_dy"] - r[f"{name}_focus_expected_dy"]) for r in seen
             if all(np.isfinite(r.get(f"{name}_{k}", np.nan)) for k in
                    ("subject_dx", "subject_dy", "focus_expected_dx", "focus_expected_dy"))]
        if not d:
            continue
        v = np.asarray(d, np.float64)
        if len(v) < cfg.check.quick_focus_settled_captures and carried and name in carried:
            (cx, cy), u = carried[name]
            cands = [(cx + sx * u, cy + sy * u) for sx in (-1, 0, 1) for sy in (-1, 0, 1)]
        elif len(v) < cfg.check.quick_focus_settled_captures or name not in offsets:
            # The seen captures' median, the nominal rig's offset, and the box they span (the
            # session's may share one coordinate with the captures seen and the other with the
            # nominal). Each seen capture's own offset instead: one odd first shot (an occluder
            # portrait) put the third capture in doubt on the labelled set at both sizes.
            pts = np.vstack([np.median(v, axis=0, keepdims=True), [[0.0, 0.0]]])
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            cands = [tuple(p) for p in pts] + [(x, y) for x in (lo[0], (lo[0] + hi[0]) / 2, hi[0])
                                               for y in (lo[1], (lo[1] + hi[1]) / 2, hi[1])]
        else:
            m = np.asarray(offsets[name], np.float64)
            u = [median_margin(list(v[:, k]), sigma_floor=cfg.check.quick_focus_offset_scatter_px) for k in (0, 1)]
            cands = [(m[0] + sx * u[0], m[1] + sy * u[1]) for sx in (-1, 0, 1) for sy in (-1, 0, 1)]
        on = name in switch
        flips = [c for c in cands if (name in focus_plane_differs(row, {name: c}, cfg)) != on]
        if flips:
            doubt = True
            if not on:  # the other choice switches, from the nearest offset that does
                ref = np.asarray(offsets.get(name, (0.0, 0.0)))
                other[name] = min(flips, key=lambda c: float(np.hypot(*(np.asarray(c) - ref))))
        elif on:
            other[name] = switch[name]
    return other if doubt else None

