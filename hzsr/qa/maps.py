"""The four maps of HZSR's adaptive blending, torch-free (``docs/qa.md`` has the formulas).

All maps are float32 in [0, 1] on the grid of the flows (or images) they are given; 1 means "do
not trust the reference here". Flow conventions as in ``hzsr.qa.align``.
"""

from __future__ import annotations

import cv2
import numpy as np

from hzsr.qa.align import flow_grid_scale, warp
from hzsr.qa.config import MapsConfig, QAConfig


def _maps_cfg(cfg: QAConfig | MapsConfig | None) -> MapsConfig:
    if cfg is None:
        return MapsConfig()
    return cfg.maps if isinstance(cfg, QAConfig) else cfg


def _check_flow(flow: np.ndarray, name: str) -> None:
    if not isinstance(flow, np.ndarray) or flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"{name}: expected an HxWx2 flow, got shape {getattr(flow, 'shape', None)}")


def _given_fb(fb: np.ndarray | None, flow_fwd: np.ndarray, flow_bwd: np.ndarray) -> np.ndarray:
    """``fb`` (a caller's ``fb_error`` of these flows, computed once for several maps), checked
    against the forward flow's grid, or the error computed here."""
    if fb is None:
        return fb_error(flow_fwd, flow_bwd)
    if fb.shape != flow_fwd.shape[:2]:
        raise ValueError(f"fb is {fb.shape[1]}x{fb.shape[0]}, the forward flow's grid "
                         f"{flow_fwd.shape[1]}x{flow_fwd.shape[0]}: pass fb_error of these flows")
    return fb


def fb_error(flow_fwd: np.ndarray, flow_bwd: np.ndarray) -> np.ndarray:
    """Forward-backward round-trip error ``|F_fwd(x) + F_bwd(x + F_fwd(x))|`` in pixels (float32)."""
    _check_flow(flow_fwd, "flow_fwd")
    _check_flow(flow_bwd, "flow_bwd")
    back = warp(flow_bwd.astype(np.float32, copy=False), flow_fwd)
    d = flow_fwd + back
    return np.sqrt(d[..., 0] ** 2 + d[..., 1] ** 2)


def occlusion_map(flow_fwd: np.ndarray, flow_bwd: np.ndarray, scale: float = 1.0, *,
                  fb: np.ndarray | None = None) -> np.ndarray:
    """``M_occ(x) = min(s |W(W(x; F_fwd); F_bwd) - x|, 1)``, forward-backward consistency.

    ``W(x; F) = x + F(x)``, with ``F_bwd`` sampled bilinearly at ``x + F_fwd(x)``. A pixel seen in
    SRC but hidden in REF maps to the occluder, whose backward flow does not bring it back.

    Args:
        flow_fwd: SRC -> REF flow (HxWx2).
        flow_bwd: REF -> SRC flow (HxWx2, REF's grid; same size as ``flow_fwd``).
        scale: ``s``, per pixel of the flows' grid. ``QAConfig.maps.occlusion_scale`` is per
            flow-grid pixel; for flows upsampled by ``1 / g`` pass ``s * g``.
        fb: ``fb_error(flow_fwd, flow_bwd)`` where the caller has it (one pairing's maps share it).
    """
    if flow_fwd.shape != flow_bwd.shape:
        raise ValueError(f"flow_fwd {flow_fwd.shape} and flow_bwd {flow_bwd.shape} differ in shape")
    e = _given_fb(fb, flow_fwd, flow_bwd)
    return np.minimum(scale * e, 1.0).astype(np.float32)


def reference_coverage(flow_bwd: np.ndarray) -> np.ndarray:
    """How many REF pixels land on each SRC pixel when REF is carried onto SRC by ``F_bwd``.

    Each REF pixel ``y`` is splatted bilinearly at ``y + F_bwd(y)`` on SRC's grid (same size as
    REF's). A SRC pixel whose surface REF sees receives about one pixel's weight; one hidden in REF
    receives none: no REF pixel comes back to it (the "range map" test of occlusion).

    Returns:
        float32 HxW, the splatted weight per SRC pixel.
    """
    _check_flow(flow_bwd, "flow_bwd")
    h, w = flow_bwd.shape[:2]
    tx = flow_bwd[..., 0] + np.arange(w, dtype=np.float32)[None, :]
    ty = flow_bwd[..., 1] + np.arange(h, dtype=np.float32)[:, None]
    ok = np.isfinite(tx) & np.isfinite(ty) & (tx > -1) & (tx < w) & (ty > -1) & (ty < h)
    tx, ty = np.where(ok, tx, -2.0), np.where(ok, ty, -2.0)  # out of reach: zero weight below
    x0, y0 = np.floor(tx), np.floor(ty)
    fx, fy = (tx - x0) * ok, (ty - y0) * ok
    gx, gy = (1 - fx) * ok, (1 - fy) * ok
    # Splat into a grid padded by one pixel on each side, so the four neighbours need no bounds test.
    pw = w + 2
    i00 = ((np.clip(y0, -1, h) + 1) * pw + np.clip(x0, -1, w) + 1).astype(np.int64).ravel()
    idx = np.concatenate([i00, i00 + 1, i00 + pw, i00 + pw + 1])
    wgt = np.concatenate([(gx * gy).ravel(), (fx * gy).ravel(), (gx * fy).ravel(), (fx * fy).ravel()])
    cov = np.bincount(idx, weights=wgt, minlength=(h + 2) * pw + pw + 2)[: (h + 2) * pw].reshape(h + 2, pw)
    return cov[1:h + 1, 1:w + 1].astype(np.float32)


def _unit(direction) -> np.ndarray:
    b = np.asarray(direction, np.float64).reshape(2)
    m = float(np.max(np.abs(b)))
    if np.isfinite(m) and m > 0:  # a direction of any finite length: hypot overflows past ~1.3e308
        b = b / m  # and loses its digits on subnormals
    n = float(np.hypot(b[0], b[1]))
    if not np.isfinite(n) or n == 0:
        raise ValueError(f"baseline: expected a non-zero 2-vector, got {list(b)}")
    return b / n


def _shifted(a: np.ndarray, dx: int, dy: int, fill: float) -> np.ndarray:
    """``out(x) = a(x + (dx, dy))`` for integer offsets; ``fill`` where that falls outside."""
    h, w = a.shape[:2]
    out = np.full_like(a, fill)
    y0, y1, x0, x1 = max(0, -dy), min(h, h - dy), max(0, -dx), min(w, w - dx)
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = a[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
    return out


def refine_flow_along(flow: np.ndarray, guide: np.ndarray, confidence: np.ndarray, direction,
                      radius: int, sigma_luma: float, step: int = 2) -> np.ndarray:
    """Joint bilateral filter of ``flow`` along ``direction``, guided by an image, weighted by trust.

    ``F'(x) = sum_k w_k(x) F(x + k b) / sum_k w_k(x)`` for ``k`` in ``[-radius, radius]`` (every
    ``step``), ``w_k(x) = exp(-(I(x + k b) - I(x))^2 / 2 sigma_luma^2 - k^2 / 2 (radius/2)^2)
    c(x + k b)``. DIS smooths the flow across a depth edge over about a patch; along the
    baseline (the only direction parallax changes), the filter takes each pixel's flow from
    trusted pixels (``c``: e.g. low forward-backward error) of its own surface (similar luma), so the
    step comes back to the image's edge and the strip the reference does not see takes its own
    surface's flow instead of the occluder's.

    Args:
        flow: HxWx2 flow (float32).
        guide: HxW luma on the same grid (any scale; ``sigma_luma`` is in its units).
        confidence: HxW weights in [0, 1].
        direction: 2-vector along which to filter (unit or not).
    """
    _check_flow(flow, "flow")
    b = _unit(direction)
    g = guide.astype(np.float32)
    c = confidence.astype(np.float32)
    f = flow.astype(np.float32)
    num = np.zeros_like(f)
    den = np.zeros(f.shape[:2], np.float32)
    inv_l, inv_s = -0.5 / max(sigma_luma, 1e-6) ** 2, -0.5 / max(radius / 2.0, 1e-6) ** 2
    for k in range(-radius, radius + 1, max(1, step)):
        dx, dy = int(round(k * b[0])), int(round(k * b[1]))
        dg = _shifted(g, dx, dy, np.inf) - g
        wk = np.exp(np.minimum(dg * dg, 1e6) * inv_l + k * k * inv_s).astype(np.float32) * _shifted(c, dx, dy, 0.0)
        num += _shifted(f, dx, dy, 0.0) * wk[..., None]
        den += wk
    out = num / np.maximum(den, 1e-6)[..., None]
    return np.where(den[..., None] > 1e-3, out, f).astype(np.float32)


def fold_map(flow_fwd: np.ndarray, baseline, margin: float) -> np.ndarray:
    """SRC pixels another SRC pixel hides in REF: a z-buffer along the baseline (bool HxW).

    A point at distance ``Z`` moves by ``-f b / Z`` (``b``: REF's position minus SRC's), so along
    ``b`` the nearer surface moves less: with ``s`` the position along ``b`` and ``p = F.b/|b|``,
    SRC pixel ``s`` lands at ``tau(s) = s + p(s)``. It is hidden when a pixel further along ``b``
    lands before it, ``min_{s' > s} tau(s') < tau(s) - margin``: that pixel is nearer and covers
    it (the strip beside an occluder's edge, on the side ``-b``, as wide as the parallax step).
    Computed on lines parallel to ``b`` (the flow is rotated so ``b`` is the row direction).
    """
    _check_flow(flow_fwd, "flow_fwd")
    b = _unit(baseline)
    h, w = flow_fwd.shape[:2]
    p = (flow_fwd[..., 0] * b[0] + flow_fwd[..., 1] * b[1]).astype(np.float32)
    ang = float(np.degrees(np.arctan2(b[1], b[0])))
    if abs(ang) < 1e-6:
        pr, rot = p, None
        n_rows, n_cols = h, w
    else:  # rows along b: rotate by the baseline's angle into a canvas that holds the whole grid
        side = int(np.ceil(np.hypot(h, w))) + 2
        rot = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), ang, 1.0)
        rot[0, 2] += (side - w) / 2.0
        rot[1, 2] += (side - h) / 2.0
        pr = cv2.warpAffine(p, rot, (side, side), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=np.nan)
        n_rows = n_cols = side
    s = np.arange(n_cols, dtype=np.float32)[None, :]
    ok = np.isfinite(pr)
    tau = np.where(ok, s + np.where(ok, pr, 0), np.inf).astype(np.float32)
    ahead = np.minimum.accumulate(tau[:, ::-1], axis=1)[:, ::-1]  # min over s' >= s
    ahead = np.concatenate([ahead[:, 1:], np.full((n_rows, 1), np.inf, np.float32)], axis=1)  # s' > s
    with np.errstate(invalid="ignore"):
        hid = ok & (tau - ahead > margin)
    if rot is None:
        return hid
    back = cv2.warpAffine(hid.astype(np.uint8), cv2.invertAffineTransform(rot), (w, h), flags=cv2.INTER_NEAREST)
    return back > 0


def hidden_map(flow_fwd: np.ndarray, flow_bwd: np.ndarray, cfg: QAConfig | MapsConfig | None = None,
               grid_scale: float = 1.0, *, baseline=None, guide: np.ndarray | None = None,
               fb: np.ndarray | None = None) -> np.ndarray:
    """``M_hid(x) = [e_fb(x) > t_fb] * [cov(x) < c_max]``: SRC pixels whose surface REF does not see.

    The occlusion map scored against true occlusion (``docs/qa.md``). Forward-backward
    inconsistency alone (``occlusion_map``) also fires wherever the flow is noisy (low texture,
    repetitive texture, a blurry W crop), which is most of what it flags. A pixel REF hides must
    in addition receive no REF pixel back (``reference_coverage`` below ``c_max``): the
    surface that hides it in REF lands elsewhere on SRC's grid, so the strip behind an occluder
    is left uncovered, whereas flow noise still covers its pixels.

    With the pair's ``baseline`` and SRC's luma ``guide`` (the rig's geometry is known), the map is
    instead ``fold(x) OR [e_fb(x) > t_u] [cov(x) < c_u]``: the z-buffer along the baseline
    (``fold_map``, margin ``hidden_fold_margin_px``) of the flow refined along it
    (``refine_flow_along``: radius ``hidden_refine_radius``, luma ``hidden_refine_sigma_luma``,
    trust ``exp(-(e_fb / hidden_refine_sigma_fb)^2)``), where which side of a depth edge is hidden,
    and how wide, follow from the geometry; or the test above with ``hidden_union_fb_px`` and
    ``hidden_union_max_coverage``; and only where the parallax along the baseline spans at least
    ``hidden_min_step_px`` within a ``hidden_step_window`` square (there is a depth step to hide
    behind).

    Args:
        flow_fwd, flow_bwd: as for ``occlusion_map``, on the flow grid.
        grid_scale: flow-grid pixels per pixel of the flows (``t_fb`` is in flow-grid px).
        baseline: REF's position minus SRC's in the image plane (x right, y down; any length).
        guide: SRC's luma on the flows' grid (0-255), needed with ``baseline``.
        fb: ``fb_error(flow_fwd, flow_bwd)`` where the caller has it.
    """
    if flow_fwd.shape != flow_bwd.shape:
        raise ValueError(f"flow_fwd {flow_fwd.shape} and flow_bwd {flow_bwd.shape} differ in shape")
    c = _maps_cfg(cfg)
    e = _given_fb(fb, flow_fwd, flow_bwd) * grid_scale
    if baseline is not None:
        if guide is None or guide.shape != flow_fwd.shape[:2]:
            raise ValueError(f"hidden_map: a baseline needs SRC's luma on the flow grid {flow_fwd.shape[:2]}, got "
                             f"{None if guide is None else guide.shape}")
        # A strip as wide as the parallax step lies beside a step: where the parallax along the
        # baseline spans less than hidden_min_step_px within the window, nothing can be hidden
        # (flow noise on a flat scene, a landscape's far plane).
        b = _unit(baseline)
        p = (flow_fwd[..., 0] * b[0] + flow_fwd[..., 1] * b[1]).astype(np.float32)
        win = max(1, int(round(c.hidden_step_window / grid_scale)))
        kernel = np.ones((win, win), np.uint8)
        gate = (cv2.dilate(p, kernel) - cv2.erode(p, kernel)) * grid_scale >= c.hidden_min_step_px
        out = np.zeros(flow_fwd.shape[:2], bool)
        if not gate.any():
            return out.astype(np.float32)
        # The filter and the fold only where the gate lets something through (plus two filter
        # radii, so every gated pixel's line is whole): most of a flat or far scene is skipped.
        radius = max(1, int(round(c.hidden_refine_radius / grid_scale)))
        ys, xs = np.nonzero(gate)
        h, w = gate.shape
        y0, y1 = max(0, ys.min() - 2 * radius), min(h, ys.max() + 2 * radius + 1)
        x0, x1 = max(0, xs.min() - 2 * radius), min(w, xs.max() + 2 * radius + 1)
        box = (slice(y0, y1), slice(x0, x1))
        trust = np.exp(-(e[box] / c.hidden_refine_sigma_fb) ** 2)
        refined = refine_flow_along(flow_fwd[box], guide[box], trust, baseline, radius, c.hidden_refine_sigma_luma)
        fold = fold_map(refined, baseline, c.hidden_fold_margin_px / grid_scale)
        # Either cue: the fold finds the strip where the refined flow is right; the consistency
        # and coverage test (stricter constants here) where DIS gave the strip a flow of its own.
        strict = (e[box] > c.hidden_union_fb_px) & (reference_coverage(flow_bwd)[box] < c.hidden_union_max_coverage)
        out[box] = (fold | strict) & gate[box]
        return out.astype(np.float32)
    hid = (e > c.hidden_fb_px) & (reference_coverage(flow_bwd) < c.hidden_max_coverage)
    return hid.astype(np.float32)


def in_focus_flow(flow_fwd: np.ndarray, af_roi, k: int = 3, seed: int = 0) -> np.ndarray:
    """Centre of the largest k-means cluster of the flow vectors inside ``af_roi`` ``[x, y, w, h]``.

    The AF ROI mostly covers the subject autofocus locked on; its largest flow cluster is the
    subject's parallax, and flow magnitude stands in for depth (W and T are nearly fronto-parallel).
    Not always the plane in focus: a near foreground the ROI's centre shows can outnumber the
    subject behind it (``focus_plane_flow`` then takes the focus distance's parallax).
    """
    _check_flow(flow_fwd, "flow_fwd")
    h, w = flow_fwd.shape[:2]
    x, y, rw, rh = (int(round(v)) for v in af_roi)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(w, x + rw), min(h, y + rh)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(f"af_roi {list(af_roi)} does not overlap the {w}x{h} flow")
    vec = flow_fwd[y0:y1, x0:x1].reshape(-1, 2).astype(np.float32)
    vec = vec[np.isfinite(vec).all(1)]
    if len(vec) > 4000:  # k-means on a regular subsample: same centres, bounded cost
        vec = vec[:: len(vec) // 4000 + 1]
    k = max(1, min(k, len(vec)))
    if k == 1:
        return vec.mean(0)
    cv2.setRNGSeed(seed)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 1e-3)
    _, labels, centres = cv2.kmeans(vec, k, None, crit, 3, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k)
    return centres[int(np.argmax(counts))]


def focus_plane_flow(cluster: np.ndarray, expected: np.ndarray | None, tol: float) -> np.ndarray:
    """The flow of the plane in focus: the AF ROI's largest cluster, unless the focus distance says otherwise.

    The depth-flow relation: a static point at ``D`` diopters moves by ``-f b D`` (plus the
    rig's constant offset) between two cameras ``b`` apart, so the lens's focus distance
    (``capture.json``) gives the flow of the plane in focus, ``expected``. When the largest
    cluster lies within ``tol`` of it (the map's own in-focus radius, ``sqrt(gamma)``), the
    cluster is that plane as DIS measured it and is kept; further away it is another plane (a
    near foreground at the ROI's centre, blurred) and ``expected`` is the plane in focus.

    Args:
        cluster: ``in_focus_flow``'s largest cluster, same units as ``expected``.
        expected: the focus distance's parallax with the session's offset, or None (no
            metadata, no offset yet): the cluster.
        tol: how far the cluster may lie from ``expected`` and still be taken.
    """
    c = np.asarray(cluster, np.float32)
    if expected is None:
        return c
    e = np.asarray(expected, np.float32)
    return c if float(np.hypot(*(c - e))) <= tol else e


def defocus_plane(flow_fwd: np.ndarray, af_roi, cfg: QAConfig | MapsConfig | None = None,
                  grid_scale: float | None = None, focus_flow=None, cluster=None) -> np.ndarray:
    """The flow ``F(x_f)`` ``defocus_map`` measures from (``flow_fwd``'s px): the AF ROI's largest
    cluster (``in_focus_flow``; ``cluster`` if the caller has it already), or ``focus_flow`` where
    that cluster is another plane (``focus_plane_flow``, radius ``sqrt(gamma)`` flow-grid px)."""
    c = _maps_cfg(cfg)
    g = flow_grid_scale(flow_fwd.shape) if grid_scale is None else grid_scale
    f0 = in_focus_flow(flow_fwd, af_roi, c.defocus_k) if cluster is None else np.asarray(cluster, np.float32)
    if focus_flow is not None:
        f0 = focus_plane_flow(f0, focus_flow, np.sqrt(max(c.defocus_gamma, 0.0)) / g)
    return np.asarray(f0, np.float32)


def defocus_from_plane(flow_fwd: np.ndarray, plane, cfg: QAConfig | MapsConfig | None = None,
                       grid_scale: float = 1.0) -> np.ndarray:
    """``sigmoid((|F(x) - plane|^2 - gamma) / sigma_f)``, ``F - plane`` in flow-grid px
    (``grid_scale`` of them per px of ``flow_fwd``). ``defocus_map``'s formula from a given plane."""
    _check_flow(flow_fwd, "flow_fwd")
    c = _maps_cfg(cfg)
    if c.defocus_sigma_f <= 0:
        raise ValueError("maps.defocus_sigma_f must be > 0")
    d = (flow_fwd - np.asarray(plane, np.float32).reshape(1, 1, 2)) * grid_scale
    z = ((d[..., 0] ** 2 + d[..., 1] ** 2) - c.defocus_gamma) / c.defocus_sigma_f
    return (1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))).astype(np.float32)


def plane_at_other_focus(plane, fx_px: float, baseline_m, diopters_from: float, diopters_to: float) -> np.ndarray:
    """Where, in the same flow, the plane at ``diopters_to`` lies, given the plane at ``diopters_from``.

    The depth-flow relation ``F(D) = -f b D + o`` (``b``: the pair's baseline, metres; ``o``: the
    rig's constant offset, which cancels): ``F(D_to) = F(D_from) - f b (D_to - D_from)``. A third
    camera's focus plane (the reference T's) found in the W crop vs main T flow, so its defocus map
    needs no flow to that camera.
    """
    b = np.asarray(baseline_m, np.float64).reshape(2)
    return (np.asarray(plane, np.float64).reshape(2) - fx_px * b * (float(diopters_to) - float(diopters_from))
            ).astype(np.float32)


def defocus_map(flow_fwd: np.ndarray, af_roi, cfg: QAConfig | MapsConfig | None = None,
                grid_scale: float | None = None, focus_flow=None) -> np.ndarray:
    """``M_defocus(x) = sigmoid((|F(x) - F(x_f)|^2 - gamma) / sigma_f)``.

    ``F(x_f)`` is the in-focus flow (``defocus_plane``). T's depth of field is far shallower than
    W's, so pixels whose parallax departs from the subject's are blurred in T.

    Args:
        flow_fwd: SRC (W crop) -> REF (a T frame) flow.
        af_roi: ``[x, y, w, h]`` of the AF ROI in ``flow_fwd``'s pixels.
        grid_scale: flow-grid pixels per pixel of ``flow_fwd`` (gamma and sigma_f are per
            flow-grid px^2); default ``flow_grid_scale(flow_fwd.shape)``, right for full-size flows.
        focus_flow: the flow ``(dx, dy)`` of the focus distance's plane in ``flow_fwd``'s px
            (the depth-flow relation and the session's offset: ``focus_plane_flow``); None: the
            ROI's largest cluster.
    """
    c = _maps_cfg(cfg)
    if c.defocus_sigma_f <= 0:
        raise ValueError("maps.defocus_sigma_f must be > 0")
    g = flow_grid_scale(flow_fwd.shape) if grid_scale is None else grid_scale
    return defocus_from_plane(flow_fwd, defocus_plane(flow_fwd, af_roi, c, g, focus_flow), c, g)


def flow_uncertainty_map(flow_fwd: np.ndarray, flow_bwd: np.ndarray, cfg: QAConfig | MapsConfig | None = None,
                         grid_scale: float | None = None, *, fb: np.ndarray | None = None) -> np.ndarray:
    """``M_flow = min(S, s_max) / s_max`` with ``S = sqrt(e_fb^2 + var_x + var_y)``.

    DIS gives no uncertainty, unlike the paper's flow network (which predicts Laplacian
    log-variances). Its stand-in: the forward-backward error ``e_fb`` (where the two flows
    disagree, at least one is wrong) plus the local variance of the flow in a
    ``uncertainty_window`` box (where the flow changes fast, a small error in where the change is
    makes a large one in the flow: motion boundaries, thin structures, aperture problems). Both are
    in flow-grid pixels, like ``S`` in the paper. ``fb``: ``fb_error(flow_fwd, flow_bwd)`` where
    the caller has it.
    """
    c = _maps_cfg(cfg)
    g = flow_grid_scale(flow_fwd.shape) if grid_scale is None else grid_scale
    e = _given_fb(fb, flow_fwd, flow_bwd) * g
    win = max(1, int(round(c.uncertainty_window / g)))
    f = flow_fwd.astype(np.float32) * g
    mean = cv2.blur(f, (win, win))
    var = np.maximum(cv2.blur(f * f, (win, win)) - mean * mean, 0)
    var = var[..., 0] + var[..., 1]  # not .sum(-1): numpy's reduction over a length-2 axis is slow
    s = np.sqrt(e * e + var)
    return (np.minimum(s, c.uncertainty_s_max) / c.uncertainty_s_max).astype(np.float32)


def _as_unit_float(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        raise ValueError(f"expected a luminance (HxW) image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    return img.astype(np.float32, copy=False)


def reject_map(src_y: np.ndarray, warped_ref_y: np.ndarray, cfg: QAConfig | MapsConfig | None = None,
               downscale: float = 1.0) -> np.ndarray:
    """``M_reject = 1 - exp(-|P_delta|^2 / (sigma_src^2 + eps0))``, at W's optical resolution.

    Both images are resampled by ``downscale`` (W's optical resolution over the grid's: about
    ``1 / k`` for a W crop upsampled ``k`` times), where they should agree if aligned. For each
    ``reject_patch`` square patch, ``P_delta = (P_src - mean_src) - (P_ref - mean_ref)``; mean
    removal forgives brightness offsets. Per pixel of the patch (so the patch size does not move
    the scale): ``|P_delta|^2 / n = mean(d^2) - mean(d)^2`` with ``d = src - ref``, and
    ``sigma_src^2 = var(P_src) + noise_floor^2``. A misaligned textured patch gives about
    ``2 var / var``; noise alone stays well under ``eps0``.

    Returns:
        float32 map on the input grid, upsampled bilinearly.
    """
    c = _maps_cfg(cfg)
    a = _as_unit_float(src_y)
    b = _as_unit_float(warped_ref_y)
    if a.shape != b.shape:
        raise ValueError(f"src_y {a.shape} and warped_ref_y {b.shape} differ in shape")
    if not 0 < downscale <= 1:
        raise ValueError(f"downscale must be in (0, 1], got {downscale}")
    h, w = a.shape
    if downscale < 1:
        size = (max(4, round(w * downscale)), max(4, round(h * downscale)))
        a = cv2.resize(a, size, interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, size, interpolation=cv2.INTER_AREA)
    p = (c.reject_patch, c.reject_patch)
    d = a - b
    pd2 = np.maximum(cv2.blur(d * d, p) - cv2.blur(d, p) ** 2, 0)
    var_src = np.maximum(cv2.blur(a * a, p) - cv2.blur(a, p) ** 2, 0)
    m = 1.0 - np.exp(-pd2 / (var_src + c.reject_noise_floor**2 + c.reject_eps0))
    if m.shape != (h, w):
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(m, 0, 1).astype(np.float32)
