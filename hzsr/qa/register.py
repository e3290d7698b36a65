"""One pair, registered: global shift, dense flows, warped reference, maps and residual figures.

``register_pair(src, ref)`` is what ``hzsr qa align`` and each of ``hzsr qa check``'s three
pairings run, and what ``hzsr.baseline_model`` reuses. Flows are computed on the flow grid (after
removing the global shift, so DIS only refines a residual), then carried to the input grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from hzsr.qa.align import (
    GlobalShift,
    dense_flow_lowres,
    gate_shift,
    global_translation,
    inframe_mask,
    shift_image,
    shift_inframe_mask,
    to_luma,
    upsample_flow,
    warp,
)
from hzsr.qa.config import QAConfig
from hzsr.qa.maps import (
    defocus_from_plane,
    defocus_plane,
    fb_error,
    flow_uncertainty_map,
    focus_plane_flow,
    hidden_map,
    in_focus_flow,
    occlusion_map,
    reject_map,
)


@dataclass
class Registration:
    """Everything known about how REF maps onto SRC (flow convention of ``hzsr.qa.align``)."""

    shift: GlobalShift  # coarse translation, input-grid pixels
    flow_fwd: np.ndarray  # SRC -> REF, float32 HxWx2, input grid, includes the shift
    flow_bwd: np.ndarray  # REF -> SRC, float32 HxWx2
    warped_ref: np.ndarray  # REF warped onto SRC's grid: warp(ref, flow_fwd)
    valid: np.ndarray  # bool HxW: x + F_fwd(x) lands inside REF
    occlusion: np.ndarray  # M_occ, float32 [0, 1]
    uncertainty: np.ndarray | None  # M_flow, float32 [0, 1]; None where not asked for (``row_figures``)
    reject: np.ndarray | None  # M_reject, float32 [0, 1]; None where not asked for (``rejected``)
    defocus: np.ndarray | None  # M_defocus, float32 [0, 1]; None without an AF ROI
    grid_scale: float  # flow-grid pixels per input pixel
    stats: dict[str, float] = field(default_factory=dict)  # see ``residual_stats``
    # M_occ scored against true occlusion (``maps.hidden_map``): 1 where REF does not see SRC's
    # surface. ``occlusion`` (forward-backward consistency) also flags flow noise; it stays the
    # mask of "do not trust the flow here" that the figures and hzsr.baseline_model use.
    hidden: np.ndarray | None = None
    # The flow (dx, dy), input px, of the plane M_defocus was measured from (maps.defocus_plane);
    # None without an AF ROI. defocus_at_plane measures another camera's focus plane from it.
    defocus_plane: np.ndarray | None = None
    flow_units: float = 1.0  # register_pair's flow_units: M_defocus's constants' grid per this one's

    def maps(self) -> dict[str, np.ndarray]:
        out = {"occlusion": self.occlusion}
        if self.reject is not None:
            out["reject"] = self.reject
        if self.uncertainty is not None:
            out["uncertainty"] = self.uncertainty
        if self.defocus is not None:
            out["defocus"] = self.defocus
        if self.hidden is not None:
            out["hidden"] = self.hidden
        return out


def _unit_luma(img: np.ndarray) -> np.ndarray:
    y = to_luma(img)
    return y.astype(np.float32) / 255.0 if y.dtype == np.uint8 else y.astype(np.float32)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM (Wang et al. 2004; Gaussian window sigma 1.5, C1 = 0.01^2, C2 = 0.03^2) of images in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2

    def g(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    ma, mb = g(a), g(b)
    va = g(a * a) - ma * ma
    vb = g(b * b) - mb * mb
    cov = g(a * b) - ma * mb
    return ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))


def residual_stats(src_y: np.ndarray, warped_y: np.ndarray, mask: np.ndarray,
                   psnr_only: bool = False) -> dict[str, float]:
    """PSNR, SSIM and mean absolute error of the warped reference in ``mask``.

    The reference is first matched to the source in mean and variance over ``mask`` (HZSR's
    colour match), so the figures measure alignment and detail, not exposure; brightness has its
    own figures in ``hzsr.qa.quality``. ``psnr_only``: PSNR alone (the quick check grades nothing
    else of these; SSIM's five Gaussian blurs are most of their cost).
    """
    n = int(mask.sum())
    if n < 16:
        return {"psnr_db": float("nan")} if psnr_only else {"psnr_db": float("nan"), "ssim": float("nan"),
                                                            "mae": float("nan")}
    a, b = src_y[mask], warped_y[mask]
    gain = a.std() / max(b.std(), 1e-6)
    matched = (warped_y - b.mean()) * gain + a.mean()
    d = (src_y - matched)[mask]
    mse = float(np.mean(d * d))
    psnr = 10 * np.log10(1.0 / max(mse, 1e-10))
    if psnr_only:
        return {"psnr_db": float(psnr)}
    ssim = float(ssim_map(src_y, matched.astype(np.float32))[mask].mean())
    return {"psnr_db": float(psnr), "ssim": ssim, "mae": float(np.mean(np.abs(d)))}


def register_pair(src: np.ndarray, ref: np.ndarray, cfg: QAConfig | None = None, *,
                  af_roi=None, optical_scale: float = 1.0,
                  shift: GlobalShift | None = None, baseline=None,
                  flow_units: float = 1.0, focus_flow=None,
                  fallback_shift: tuple[float, float] = (0.0, 0.0), row_figures: bool = True,
                  rejected: bool = True, defocus_map: bool = True) -> Registration:
    """Register REF onto SRC (same size): coarse shift, dense flow both ways, warp, maps, figures.

    Args:
        src: the source grid (the W crop, or main T), HxW or HxWx3, uint8 or float in [0, 1].
        ref: the image to bring onto it, same size.
        af_roi: ``[x, y, w, h]`` in SRC pixels; gives ``M_defocus`` (else None).
        optical_scale: SRC's optical resolution over its grid's (``1 / k`` for a W crop upsampled
            ``k`` times); ``M_reject`` compares at that resolution.
        shift: a known global translation, to skip the keypoint search. Either way, a shift
            with fewer than ``align.min_inliers`` inliers is not used (``gate_shift``): the flow
            starts from ``fallback_shift``, and ``stats["shift_used"]`` is 0.
        baseline: REF's camera position minus SRC's (x right, y down; e.g. the rig's
            ``wt_baseline_m``): ``M_hid`` then follows the geometry (``maps.hidden_map``).
        flow_units: flow-grid px of the grid ``M_defocus``'s constants were set for per px of
            this one (1: this grid). The quick check registers on a coarser grid than ``qa
            check`` and passes qa check's grid width over its own, so the same parallax counts.
        focus_flow: the flow ``(dx, dy)``, SRC px, of the plane at the lens's focus distance
            (the depth-flow relation with the session's offset): ``M_defocus`` is measured from
            it where the AF ROI's largest cluster is another plane (``maps.focus_plane_flow``).
        fallback_shift: where the flow starts when the inlier gate refuses the shift (SRC px;
            default zero: the rig's own alignment); main T vs reference T passes the rig's
            parallax at the focus distance.
        row_figures: also the figures and map no verdict reads (``M_flow`` and its fraction,
            SSIM, MAE, the flow's residual beyond the shift); False: the capture line's quick
            check, which shows a verdict only (``uncertainty`` None, those stats absent).
        rejected: also ``M_reject`` and its fraction (False: ``reject`` None; the quick check
            grades the rejected fraction of the W crop vs reference T pairing only).
        defocus_map: also ``M_defocus`` and its fraction from the AF ROI (False: ``defocus``
            None, the plane and the AF subject's displacement still measured; the quick check
            grades neither for T vs T, and the reference T's map comes from the W crop vs main T
            flow, ``capture_qa._ref_defocus_from_main_t``).
    """
    cfg = cfg or QAConfig()
    if src.shape[:2] != ref.shape[:2]:
        raise ValueError(f"src {src.shape[1]}x{src.shape[0]} and ref {ref.shape[1]}x{ref.shape[0]} differ in size")
    h, w = src.shape[:2]
    found = shift if shift is not None else global_translation(src, ref, cfg, optical_scale=optical_scale)
    g_shift, used = gate_shift(found, cfg, fallback_shift)  # fewer than align.min_inliers: not used
    ref_shifted = shift_image(ref, g_shift.dx, g_shift.dy)
    fwd_r, bwd_r, g = dense_flow_lowres(src, ref_shifted, cfg, optical_scale=optical_scale)
    d = np.array([g_shift.dx, g_shift.dy], np.float32) * g
    # ref_shifted(y) = ref(y + d): add d to the forward flow; the backward flow lives on ref's grid,
    # so move it by d as well (B(y) = B_r(y - d) - d).
    fwd = fwd_r + d
    bwd = shift_image(bwd_r, -float(d[0]), -float(d[1])) - d
    m = cfg.maps
    fb = fb_error(fwd, bwd)  # one round trip for the three maps that read it
    occ_g = occlusion_map(fwd, bwd, m.occlusion_scale, fb=fb)
    unc_g = flow_uncertainty_map(fwd, bwd, m, grid_scale=1.0, fb=fb) if row_figures else None
    hid_g = None
    if m.hidden:
        guide = None
        if baseline is not None:
            # A guide for the flow grid, resized before the luma and first decimated to within 2x of
            # the grid (area-averaged after): at 12 MP the whole image's luma costs more than the map.
            k = max(1, int(min(h / fwd.shape[0], w / fwd.shape[1]) // 2))
            guide = _unit_luma(cv2.resize(src[::k, ::k], (fwd.shape[1], fwd.shape[0]),
                                          interpolation=cv2.INTER_AREA)) * 255.0
        hid_g = hidden_map(fwd, bwd, m, baseline=baseline, guide=guide, fb=fb)
    size = (w, h)
    flow_fwd = upsample_flow(fwd, size)
    flow_bwd = upsample_flow(bwd, size)
    warped = warp(ref, flow_fwd)
    # Where the shifted REF was padded (replicated border), DIS's residual flow is made up: a
    # pixel is valid only if both the dense target and the global-shift target are in frame.
    valid = inframe_mask(flow_fwd) & shift_inframe_mask(flow_fwd.shape, g_shift.dx, g_shift.dy)

    def up(mp):
        return mp if mp.shape == (h, w) else cv2.resize(mp, size, interpolation=cv2.INTER_LINEAR)

    occ, unc = up(occ_g), (up(unc_g) if unc_g is not None else None)
    hid = up(hid_g) if hid_g is not None else None
    defocus = None
    subject = None
    plane = None
    if af_roi is not None:
        roi_g = [v * g for v in af_roi]
        ff = None if focus_flow is None else np.asarray(focus_flow, np.float32) * g
        cluster = in_focus_flow(fwd, roi_g, m.defocus_k)  # k-means once: the map's plane and the subject
        plane = defocus_plane(fwd, roi_g, m, grid_scale=flow_units, focus_flow=ff, cluster=cluster)
        if defocus_map:
            defocus = up(defocus_from_plane(fwd, plane, m, grid_scale=flow_units))  # maps.defocus_map, split
        plane = plane / g
        subject = cluster / g  # the AF subject's displacement, input px
    src_y = _unit_luma(src)
    warped_y = _unit_luma(warped)
    rej = reject_map(src_y, warped_y, m, downscale=min(1.0, optical_scale)) if rejected else None
    if rej is not None:
        rej[~valid] = 1.0
    occ = occ.copy()
    good = valid & (occ < 0.5)
    stats = {
        "shift_dx": g_shift.dx, "shift_dy": g_shift.dy, "shift_px": g_shift.magnitude,
        "inliers": float(g_shift.inliers), "matches": float(g_shift.matches), "shift_used": float(used),
        "found_shift_px": found.magnitude,
        "valid_frac": float(valid.mean()),
        "occluded_frac": float((occ[valid] >= 0.5).mean()) if valid.any() else 1.0,
    }
    if rej is not None:
        stats["rejected_frac"] = float((rej[valid] >= 0.5).mean()) if valid.any() else 1.0
    if unc is not None:
        stats["uncertain_frac"] = float((unc[valid] >= 0.5).mean()) if valid.any() else 1.0
    if hid is not None:
        stats["hidden_frac"] = float((hid[valid] >= 0.5).mean()) if valid.any() else 0.0
    if row_figures:
        res = np.hypot(fwd_r[..., 0], fwd_r[..., 1]) / g  # dense flow beyond the global shift, input px
        stats["flow_residual_median_px"] = float(np.median(res))
        stats["flow_residual_p95_px"] = float(np.percentile(res, 95))
    # PSNR/SSIM where the two should agree: at SRC's optical resolution (two px per W px).
    rs = min(1.0, 2.0 * optical_scale)
    if rs < 1.0:
        small = (max(16, round(w * rs)), max(16, round(h * rs)))
        stats.update(residual_stats(cv2.resize(src_y, small, interpolation=cv2.INTER_AREA),
                                    cv2.resize(warped_y, small, interpolation=cv2.INTER_AREA),
                                    cv2.resize(good.astype(np.uint8), small, interpolation=cv2.INTER_NEAREST) > 0,
                                    psnr_only=not row_figures))
    else:
        stats.update(residual_stats(src_y, warped_y, good, psnr_only=not row_figures))
    if subject is not None:
        stats["subject_dx"], stats["subject_dy"] = float(subject[0]), float(subject[1])
        stats["grid_scale"] = float(g)  # flow-grid px per input px: M_defocus's in-focus radius in px
        stats["subject_shift_px"] = float(np.hypot(*subject))
    if defocus is not None:
        stats["defocus_frac"] = float((defocus[valid] >= 0.5).mean()) if valid.any() else 0.0
    return Registration(g_shift, flow_fwd, flow_bwd, warped, valid, occ, unc, rej, defocus, g, stats, hid,
                        plane, float(flow_units))


def plane_for_other_focus(reg: Registration, expected, cfg: QAConfig | None = None) -> np.ndarray:
    """The plane another camera's focus leaves in ``reg``'s flow (input px): the AF ROI's largest
    cluster (``stats["subject_dx/dy"]``) where it lies within the map's in-focus radius
    ``sqrt(gamma)`` of ``expected`` (that plane as DIS measured it), else ``expected``
    (``maps.focus_plane_flow``, as for ``reg``'s own plane).

    ``expected``: e.g. ``maps.plane_at_other_focus`` of ``reg.defocus_plane``. Where the reference
    phone focused on a near layer the main T's AF ROI mostly shows, main T's plane (the cluster)
    may be that layer already, within the radius of main T's focus distance: moving it by the
    focus difference would then move it off every plane.
    """
    cfg = cfg or QAConfig()
    if "subject_dx" not in reg.stats:
        return np.asarray(expected, np.float32)
    cluster = np.array([reg.stats["subject_dx"], reg.stats["subject_dy"]], np.float32)
    tol = np.sqrt(max(cfg.maps.defocus_gamma, 0.0)) / (reg.grid_scale * reg.flow_units)
    return focus_plane_flow(cluster, np.asarray(expected, np.float32), tol)


def defocus_at_plane(reg: Registration, plane, cfg: QAConfig | None = None) -> np.ndarray:
    """``M_defocus`` of ``reg``'s flow measured from another plane (input px; e.g.
    ``maps.plane_at_other_focus`` of ``reg.defocus_plane``), on the input grid, with ``reg``'s units.

    The reference T's defocus from the W crop vs main T flow (``maps.defocus_ref_from_main_t``):
    depth is a property of the W-crop pixel, and the 1.5 cm pair's flow follows near foregrounds
    that DIS loses across the 8.5 cm to the reference T.
    """
    cfg = cfg or QAConfig()
    return defocus_from_plane(reg.flow_fwd, plane, cfg.maps, grid_scale=reg.grid_scale * reg.flow_units)
