"""Training configuration: YAML validated into dataclasses, with ``--set key.sub=value`` overrides.

Every default lives here; a field's comment is its documentation. An unknown or mistyped key, in
the file or in an override, is a one-line ``ConfigError`` naming it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hzsr.core.config import load_yaml
from hzsr.core.errors import ConfigError
from hzsr.core.schema import Problem, parse_or_raise, to_plain
from hzsr.qa.config import QAConfig


def _problems(cfg: Any, *rules: tuple[str, Callable[[Any], bool], str]) -> list[Problem]:
    """A ``Problem(field, message)`` for each rule ``(field, holds, message)`` the value breaks."""
    return [Problem(name, message) for name, holds, message in rules if not holds(getattr(cfg, name))]


def _in(name: str, lo: float, hi: float, *, lo_open: bool = False) -> tuple[str, Callable[[Any], bool], str]:
    """A rule: ``name`` within ``lo .. hi`` (``lo`` excluded with ``lo_open``); the range is in the message."""
    def fmt(v: float) -> str:
        return f"{v:,}".replace(",", "_") if isinstance(v, int) and abs(v) >= 10**5 else f"{v:g}"

    span = f"> {fmt(lo)} and <= {fmt(hi)}" if lo_open else f"in {fmt(lo)} .. {fmt(hi)}"
    return name, (lambda v: (lo < v if lo_open else lo <= v) and v <= hi), f"must be {span}"


def _ranged(cfg: Any, *rules: tuple[str, Callable[[Any], bool], str]) -> list[Problem]:
    """``_problems`` whose message also shows the value given: ``must be in 1 .. 100_000_000, got -5``."""
    return [Problem(p.field, f"{p.message}, got {getattr(cfg, p.field)!r}") for p in _problems(cfg, *rules)]


#: Upper bounds that keep a typo from taking the machine down (``threads: 100000`` once left it unable to fork).
MAX_THREADS = 256
MAX_WORKERS = 64
MAX_STEPS = 10**8


def _tile_side(v: int) -> bool:
    """A side the UNet's 5 levels halve evenly (patches and tiles): a multiple of 16."""
    return v >= 16 and v % 16 == 0


@dataclass
class UNetConfig:
    """Shape of the fusion UNet (``unet.FusionUNet``); the paper does not publish its widths."""

    widths: list[int] = field(default_factory=lambda: [8, 12, 16, 24, 32])  # channels per level, 5 levels
    in_channels: int = 3  # Y_src, warped Y_ref, M_occ
    # What the network outputs before it has learnt anything (its residual is added to it):
    # "source" = Y_src; "reference" = Y_src + (1 - M_occ) (~Y_ref - Y_src), the reference wherever
    # it is not occluded, so an untrained network already matches the no-network blend; "gate" =
    # the same with a learnt per-pixel gate in (0, 1) on the reference's share (unet.FusionUNet).
    residual_on: str = "source"
    # Where level 0 runs: "full" = at the image's resolution on the 3 inputs (the original network);
    # "unshuffle" = at half resolution on the inputs' 2x2 space-to-depth (12 channels), the head
    # emitting the 4 sub-pixels of each 2x2 block (depth-to-space back to full resolution), so
    # every level runs at a quarter of the pixels; the base B stays at full resolution
    # (unet.FusionUNet; issue 19's 12 MP time, docs/model.md).
    stem: str = "full"
    # With stem: unshuffle, a full-resolution tail of this many channels (0 = none): the head then
    # emits that many features per sub-pixel, unfolded to full resolution, and one 3x3 conv over
    # them and the full-resolution inputs (with LeakyReLU) and a last 3x3 conv over its output and
    # the inputs give the residual; nonlinear capacity at full resolution for a few channels' cost.
    tail: int = 0

    def check(self) -> list[Problem]:
        out = []
        if self.residual_on not in ("source", "reference", "gate"):
            out.append(Problem("residual_on", f"must be source, reference or gate; got {self.residual_on!r}"))
        if self.stem not in ("full", "unshuffle"):
            out.append(Problem("stem", f"must be full or unshuffle; got {self.stem!r}"))
        if not 0 <= self.tail <= 64:
            out.append(Problem("tail", f"must be in 0 .. 64, got {self.tail}"))
        elif self.tail and self.stem != "unshuffle":
            out.append(Problem("tail", "a full-resolution tail needs stem: unshuffle"))
        if len(self.widths) != 5:
            out.append(Problem("widths", f"the HZSR UNet has 5 levels; got {len(self.widths)} widths"))
        if any(not 1 <= w <= 1024 for w in self.widths):
            out.append(Problem("widths", f"every width must be in 1 .. 1024, got {self.widths}"))
        if self.in_channels != 3:
            out.append(Problem("in_channels", "the fusion UNet takes exactly 3 channels"))
        return out


def pipeline_qa_defaults() -> QAConfig:
    """qa's parameters with the blending-map constants the pipeline uses (not published; docs/model.md).

    qa flags pixels for a curator, so it is strict; blending must only drop the reference where
    it is really wrong, or the fusion's gain is thrown away. ``defocus_gamma`` and
    ``defocus_sigma_f`` are in **T pixels squared** here (the pipeline passes flows in T pixels):
    T's defocus blur is ``|dp| * A_T / b`` for a parallax difference ``dp`` over baseline ``b``,
    and it passes one W pixel (``k`` T pixels) at ``|dp| > k b / A_T = 5 * 7 cm / 4.5 mm = 78`` T px on
    the simulator's rig, at any resolution; the pipeline falls back to W from two W pixels: gamma = 156^2.
    """
    cfg = QAConfig()
    m = cfg.maps
    m.occlusion_scale = 0.05  # M_occ = 1 at 20 flow-grid px of forward-backward error (0.5 at 10)
    m.uncertainty_s_max = 40.0  # flow-grid px: only gross flow disorder (DIS has no real uncertainty)
    m.reject_eps0 = 0.2  # qa's 4e-3 rejects real texture the W crop cannot show (grass, gravel)
    m.defocus_gamma = 24000.0  # T px^2: a blur of 2 W pixels, (2 * 78)^2 (see above)
    m.defocus_sigma_f = 6000.0  # T px^2
    return cfg


#: ``PipelineConfig.flow_fusion`` values (``flow_fusion.py``): which hypotheses join DIS's flow.
FLOW_FUSION_MODES = ("auto", "none", "modes", "modes_pruned2", "modes_pruned2_matched")


@dataclass
class PipelineConfig:
    """How the pipeline around the UNet runs (alignment, maps, blending, tiling)."""

    flow_backend: str = "dis"  # dense-flow backend, a name in ``align.FLOW_BACKENDS``
    # dis only: refine down to the coarsest pyramid level whose pixel spans at most one W pixel
    # (align.dis_finest_level: 0 where a W pixel spans under 2 grid px, a 2x pair or 12 MP; 2 for
    # the simulator's 5x at 640x480), at most flow_level_max, instead of the preset's level 1.
    # Level 2 keeps the 0.2 dB truth-mask rule only with the blend maps below re-chosen for it
    # (docs/model.md, "Blend maps for the level-2 flow").
    flow_level_by_w_px: bool = True
    flow_level_max: int = 2
    # Where DIS stops at blend_maps_level or coarser (a W pixel spans >= 4 grid px: the simulator's
    # 5x at 640x480; never 12 MP nor Middlebury at ratios 2-5), M_occ and M_flow *in the blend*
    # use the two settings below instead of qa's occlusion_scale and uncertainty_s_max; the M_occ
    # the UNet is fed keeps qa's scale, as trained. The UNet already handles what its M_occ input
    # marks (on the simulator it beats bicubic by ~1 dB on truly occluded pixels), so handing those
    # pixels back to W again cost up to 0.6 dB there; these hand back only gross forward-backward
    # errors. Chosen on calibration sessions 31-36 (never the held-out 21-23), for the shipped
    # weights trained on the level-2 flow: in effect only M_reject and the reference's frame hand
    # pixels back to W there (0.005 / 400 / 1 for the weights trained on the level-1 flow).
    # 0 = qa's value.
    blend_maps_level: int = 2
    blend_occlusion_scale: float = 0.0001  # flow-grid px^-1 (qa: 0.05)
    blend_uncertainty_s_max: float = 10000.0  # flow-grid px (qa: 40)
    # ... and M_defocus in the blend is multiplied by this there (1 = qa's map as it is). The map
    # reads depth from the flow's disparity, so a moving object's motion reads as depth and hands
    # pixels the network had fixed back to W (docs/model.md, "Retrained on the level-2 flow").
    blend_defocus_weight: float = 0.0
    # ... and DIS's variational smoothness weight there (0 = the preset's 20)
    flow_alpha: float = 30.0
    # ... and DIS matches lumas blurred with a Gaussian of this many flow-grid px there (a quarter of
    # the simulator's W pixel): I_src is smooth below a W pixel, the reference is not (its detail,
    # and at night its noise, are matched against blur). The UNet and the maps still see the images
    # as they are. Chosen on calibration sessions 31-36 (docs/model.md, "Blurred lumas for the
    # level-2 flow", issue20n); 0 = off. Inference only unless ``data.level2_flow``: the training
    # cache (data.py) takes none of these level-2 settings, as the shipped weights were trained.
    flow_blur_px: float = 1.0
    # ... and from this DIS level up to blend_maps_level (exclusive) DIS's lumas are blurred by the
    # same quarter of a W pixel (flow_blur_px * k g / 4 grid px, at most flow_blur_px;
    # align.flow_blur_w_fraction): level 1, where a W pixel spans 2-4 grid px (Middlebury at ratios
    # 3-5, and a 2x pair whose T fits the grid, g = 1: 0.5 grid px; the same mismatch, W upsampled
    # against a sharp reference). Level 0 (a W pixel of < 2 grid px: Middlebury at 2x, 12 MP) and
    # level 2 (the simulator at 640x480) keep their flow bit for bit. The lever was picked from a
    # Middlebury warp diagnosis (bench/flow_epe.py, ~11 DIS variants), the amount carried from
    # issue20n's level 2, not tuned; calibration sessions 31-36 run at level 1 only accepted it (no
    # kind losing > 0.05 dB) (issue20p, docs/model.md "The dense flow at level 1"); blend_maps_level
    # (2) = only at level 2, as before.
    flow_blur_min_level: int = 1
    # Other flow hypotheses fused per pixel into DIS's (flow_fusion.py; flow_level_by_w_px and the
    # dis backend only): "modes" (DIS started from each of up to three keypoint-displacement clusters:
    # near layers beyond DIS's reach), "modes_pruned2" (at most two clusters, each tested at its own
    # keypoints first: a repeating texture's next period is dropped before any DIS), "none" (DIS as it
    # is). "modes" was chosen on calibration sessions 31-36 under a rule written before the runs and
    # judged once (issue20epic): Middlebury full - bicubic +1.76 / +1.82 / +2.05 / +2.03 dB at ratios
    # 2-5 (DIS alone +1.55 / +1.60 / +1.93 / +1.99), held-out 21-23 a tie; it stayed off for its 12 MP
    # cost. "modes_pruned2" (issue20modes) is within 0.03 dB of it on calibration, held-out and Middlebury
    # (+1.74 / +1.83 / +2.03 / +2.01) for +0.15 s on bench/infer.py's 12 MP capture (modes +0.45 s; on
    # captures whose modes are real layers it costs what modes costs, +0.13 s median, +0.35 s worst);
    # the default from 2026-12-08 (until blur3's value below) under a rule declared before its runs
    # (bench/results/2026-12-08_modes_default/rule.md): blind seeds 24-26 -0.001 +- 0.010 dB paired
    # against "none" (no kind below -0.03), 12 MP 2.63 against 2.47 s. Inference only (the training
    # cache aligns without it unless data.fused_flow; the shipped weights were trained on DIS's flow).
    # Checkpoints that store an explicit value keep it; one that stores "auto" (or none, as shipped.pt)
    # runs what "auto" runs today. A run with data.fused_flow records the resolved value (train.py).
    # "modes_pruned2_matched" (blur3) is "modes_pruned2" whose pick compares at the source's measured
    # sharpness: Middlebury W blur 3.0 +1.57 -> +1.96 dB (DIS alone +1.85; +1.88 before its estimator
    # was unbiased), calibration 31-33 and held-out 21-23 ties, 12 MP dense flow +0.014 s; the default since
    # 2026-12-08 06:20 UTC under bench/results/2026-12-08_blur3/default_rule.md. "auto" (the default)
    # is "modes_pruned2_matched" where the flow can take it (flow_backend dis with flow_level_by_w_px)
    # and "none" elsewhere (another backend, registered or not, keeps working unchanged); what runs is
    # flow_fusion_used(). docs/model.md, "Fused flow hypotheses", "Cheaper mode search" and "Flow
    # fusion at a soft W".
    flow_fusion: str = "auto"
    colour_match: bool = True  # per-channel mean/variance match of the reference to the source
    use_occ: bool = True  # the four blending maps; a switched-off map counts as 0
    use_defocus: bool = True
    use_flow: bool = True
    use_reject: bool = True
    min_overlap: float = 0.2  # below this fraction of trusted pixels the reference is not used
    min_ncc: float = 0.4  # below this structure correlation the reference "does not overlap" (align.structure_ncc)
    # ... measured after both images are low-passed with a Gaussian of this many W pixels (0 = off):
    # detail finer than W's optics is in the reference only (and its noise, 3-5x more at night),
    # so it can only lower the correlation of a true pair (bench/overlap_gate.py; docs/model.md).
    overlap_blur_w_px: float = 0.5
    tile: int = 768  # UNet tile core, T pixels
    halo: int = 32  # context around each tile core
    denoise_min_sigma: float = 2.0  # output denoiser (denoise.py): on above this reference noise sigma (8-bit luma)
    denoise_strength: float = 1.0  # its bilateral range sigma / measured sigma; 0 switches it off
    focal_ratio: float = 5.0  # assumed fx_T / fx_W when a capture has no intrinsics (the simulator's phone)
    qa: QAConfig = field(default_factory=lambda: pipeline_qa_defaults())  # alignment and map parameters

    def flow_fusion_used(self) -> str:
        """The ``flow_fusion`` value that runs: ``"auto"`` resolved (``"modes_pruned2_matched"`` with the
        DIS level rule, else ``"none"``), any other value as it is."""
        if self.flow_fusion != "auto":
            return self.flow_fusion
        return "modes_pruned2_matched" if self.flow_backend == "dis" and self.flow_level_by_w_px else "none"

    def check(self) -> list[Problem]:
        return (_problems(self, ("tile", _tile_side, "must be a multiple of 16"))
                + _ranged(self, _in("tile", 16, 8192), _in("halo", 0, 1024), _in("min_overlap", 0.0, 1.0),
                          _in("min_ncc", -1.0, 1.0), _in("overlap_blur_w_px", 0.0, 4.0),
                          _in("flow_level_max", 0, 6), _in("focal_ratio", 1.0, 50.0),
                          _in("blend_maps_level", 0, 7), _in("blend_occlusion_scale", 0.0, 100.0),
                          _in("blend_uncertainty_s_max", 0.0, 1e4),
                          _in("blend_defocus_weight", 0.0, 1.0), _in("flow_alpha", 0.0, 1e4),
                          _in("flow_blur_px", 0.0, 16.0), _in("flow_blur_min_level", 0, 7),
                          _in("denoise_min_sigma", 0.0, 255.0), _in("denoise_strength", 0.0, 10.0))
                + _problems(self, ("flow_fusion", lambda v: v in FLOW_FUSION_MODES,
                                   f"must be one of {', '.join(FLOW_FUSION_MODES)}"))
                + ([Problem("flow_fusion", f"{self.flow_fusion!r} needs flow_backend 'dis' and flow_level_by_w_px "
                                           f"true (got {self.flow_backend!r}, {self.flow_level_by_w_px})")]
                   if self.flow_fusion not in ("none", "auto")
                   and (self.flow_backend != "dis" or not self.flow_level_by_w_px)
                   else []))


#: Fields of ``PipelineConfig`` that only inference reads: the blend's level-2 settings, the output
#: denoiser and the tiling. The training cache (``data.config_key``) leaves them out, so a change
#: to one does not rebuild cached arrays that it cannot change (training aligns without them;
#: with ``DataConfig.level2_flow`` it aligns with ``data.LEVEL2_FLOW_FIELDS`` as well, and keys on them).
INFERENCE_ONLY_FIELDS = ("blend_maps_level", "blend_occlusion_scale", "blend_uncertainty_s_max",
                         "blend_defocus_weight", "flow_alpha", "flow_blur_px", "flow_blur_min_level",
                         "flow_fusion", "denoise_min_sigma",
                         "denoise_strength", "tile", "halo")


def pipeline_payload(plain: dict[str, Any]) -> dict[str, Any]:
    """A pipeline config as stored in checkpoints: qa's ``align`` and ``maps`` only.

    The pipeline uses no other part of ``QAConfig``; leaving qa's verdict thresholds out keeps
    checkpoints readable when qa changes them.
    """
    out = dict(plain)
    if isinstance(out.get("qa"), dict):
        out["qa"] = {k: v for k, v in out["qa"].items() if k in ("align", "maps")}
    return out



def pipeline_config_of(raw_pipeline: dict[str, Any] | None, file: str) -> PipelineConfig:
    """The ``PipelineConfig`` of a checkpoint's ``pipeline`` section (defaults when it has none).

    Here rather than in ``evaluate`` (which imports pandas, 0.7 s under load): ``hzsr model infer``
    needs it and nothing heavy. A bad section is one ``ModelError`` naming ``file`` and the field.
    """
    from hzsr.core.errors import ModelError
    from hzsr.core.schema import parse_dataclass

    if not raw_pipeline:
        return PipelineConfig()
    cfg, problems = parse_dataclass(PipelineConfig, pipeline_payload(raw_pipeline))
    if problems:
        raise ModelError(problems[0].message, file=file, field=f"pipeline.{problems[0].field}")
    return cfg

#: Training targets (``DataConfig.target``).
TARGETS = ("main_T", "ideal", "auto")


@dataclass
class DataConfig:
    """Which patches the network sees."""

    split: str = "train"  # the split of splits.csv to train on
    patch: int = 96  # patch side, in T pixels (a multiple of 16)
    patches_per_epoch: int = 2048  # random patches drawn per epoch (over all ranks)
    batch_size: int = 16  # per rank
    workers: int = 0  # DataLoader worker processes per rank (0 = in the main process)
    min_valid: float = 0.6  # a patch needs this fraction of pixels where the loss mask is 1
    cache_dir: str = ""  # where per-capture alignment is cached; "" = <run>/cache
    # What the network learns to output (data.py): "main_T" = the main phone's T registered onto
    # the source (every data set has it, but it is as defocused, occluded and noisy as the
    # reference); "ideal" = the simulator's ideal target (shards packed with `dataset pack --truth`;
    # all in focus, noise-free, seen from W), loss over every pixel it covers; "auto" = ideal when
    # every capture of the split carries it, else main_T.
    target: str = "main_T"
    # Patch sampling by scene kind (the manifest's scene_kind, e.g. night: 2): a patch comes from a
    # capture with probability proportional to its kind's weight, kinds not named weigh 1; {} =
    # every capture alike (the stream is then exactly the unweighted one). Hard kinds (night,
    # moving) are few in the train split: 10 of 66 captures each in the pinned data set.
    kind_weights: dict[str, float] = field(default_factory=dict)
    # The cache (data.py) aligns with the pipeline's level-2 flow settings too (flow_alpha,
    # flow_blur_px), so the network trains on the flow it runs on at inference; False: DIS's preset
    # on raw lumas, as the shipped weights were trained. Here, not in PipelineConfig: it changes
    # nothing at inference (nor an int8 graph's pipeline digest). Measured on calibration 31-36: both
    # seeds lose 0.19-0.31 dB on every kind, so it stays off (docs/model.md, "Training on the
    # inference flow", issue20o).
    level2_flow: bool = False
    # The cache aligns with the pipeline's flow_fusion too (keyed on it), so the network trains on the
    # fused flow it would run on (issue20epic); False: the cache as it always was.
    fused_flow: bool = False

    def check(self) -> list[Problem]:
        bad_target = [] if self.target in TARGETS else [
            Problem("target", f"must be one of {', '.join(TARGETS)}; got {self.target!r}")]
        bad_target += [Problem("kind_weights", f"{k}: must be in 0 .. 100, got {v!r}")
                       for k, v in self.kind_weights.items() if not 0.0 <= v <= 100.0]
        return (bad_target + _problems(self, ("patch", _tile_side, "must be a multiple of 16, >= 16"))
                + _ranged(self, _in("patch", 16, 4096), _in("patches_per_epoch", 1, 10**9),
                          _in("batch_size", 1, 4096), _in("workers", 0, MAX_WORKERS), _in("min_valid", 0.0, 1.0)))


@dataclass
class LossConfig:
    """``L = w_l1 * mean(M |Y_fusion - Y_target|) + w_lowpass * mean(M |LP(Y_fusion) - LP(Y_src)|)
    + w_grad * mean(M' |grad Y_fusion - grad Y_target|)``.

    ``M`` is the alignment-validity mask (1 where the target's and the reference's alignment to
    the source can be trusted), ``LP`` a Gaussian low-pass. The low-pass term ties the output's
    brightness to the source's, so the network cannot take the target's exposure or the
    reference's tone; colour comes from the source's chroma anyway.
    """

    w_l1: float = 1.0
    w_lowpass: float = 0.5
    lowpass_sigma: float = 4.0  # T pixels; about the W-to-T scale, so only what W resolves is tied
    # Detail transfer (train.gradient_l1): L1 of the forward differences of output and target where
    # both pixels are in M; the substitute for the paper's VGG term (whose weights are a download).
    w_grad: float = 0.0

    def check(self) -> list[Problem]:
        return _ranged(self, _in("w_l1", 0.0, 1000.0), _in("w_lowpass", 0.0, 1000.0), _in("w_grad", 0.0, 1000.0),
                       _in("lowpass_sigma", 0.0, 100.0, lo_open=True))


@dataclass
class OptimConfig:
    lr: float = 2e-3  # Adam
    weight_decay: float = 0.0
    steps: int = 1500  # optimizer steps in total
    lr_min_ratio: float = 0.05  # cosine decay to lr * this at the last step
    grad_clip: float = 1.0  # max global grad norm; 0 = off

    def check(self) -> list[Problem]:
        return _ranged(self, _in("lr", 0.0, 1.0, lo_open=True), _in("weight_decay", 0.0, 1.0),
                       _in("steps", 1, MAX_STEPS), _in("lr_min_ratio", 0.0, 1.0), _in("grad_clip", 0.0, 1e6))


@dataclass
class DistillConfig:
    """Distillation into a cheaper network (issue 19): a trained network's output as a second target.

    With ``Y`` the student's output, ``Y_T`` the teacher's on the same input patch (its UNet in eval
    mode, no gradient: exactly what ``hzsr model infer`` would feed the blend from those inputs) and
    ``L_recipe`` the loss of ``LossConfig`` against the data set's target::

        L = L_recipe(Y; Y_tgt, M) + weight * (mean(|Y - Y_T|) + w_grad * gradient_l1(Y, Y_T, 1))

    over every pixel of the patch (the teacher's output exists everywhere; ``w_grad`` is
    ``loss.w_grad``). ``ratio_min``/``ratio_max`` > 0 rebuild the source channel of a share of
    each batch as a W camera of a focal ratio ``r`` drawn uniformly in that range would see the
    target (``train.source_at_ratio``: W's optics blur, downscale by ``r``, read noise, bicubic back
    up); the reference and ``M_occ`` stay. The data sets are all at the simulator's ratio 5, the real
    pairs at 2: on those patches the teacher shows the student what it does at other ratios (and the
    target, which does not depend on the ratio, still applies). Works without a teacher too.
    """

    # The teacher checkpoint: "" = no distillation; "shipped" = the packaged weights; else a path
    # (relative to the working directory). Checked when the config is read (the file must exist)
    # and when training starts (it must load, and fit the patch); a bad one is one ConfigError line.
    teacher: str = ""
    # The teacher file's sha256 (64 hex digits), so a recipe names exactly the weights it distils;
    # "" = not checked.
    teacher_sha256: str = ""
    weight: float = 0.0  # the distillation term's weight in L above (> 0 with a teacher)
    # Focal ratios of the rebuilt sources (0, 0 = off); the simulator's data are at 5, real pairs 2..5.
    ratio_min: float = 0.0
    ratio_max: float = 0.0
    ratio_share: float = 0.5  # the fraction of each batch (rounded down) whose source is rebuilt
    blur_w_px: float = 0.6  # W's optics blur, Gaussian sigma in W pixels (sim/profiles.py's W lens_blur_px)
    noise_dn: float = 1.0  # W's noise after its ISP, sigma in 8-bit luma units per W pixel

    def check(self) -> list[Problem]:
        out = []
        if self.teacher and self.teacher != "shipped" and not Path(self.teacher).is_file():
            out.append(Problem("teacher", f"no such checkpoint file: {self.teacher}"))
        if self.teacher and self.weight <= 0:
            out.append(Problem("weight", f"must be > 0 with a teacher, got {self.weight!r}"))
        if self.weight > 0 and not self.teacher:
            out.append(Problem("teacher", "a distillation weight needs a teacher checkpoint"))
        sha = self.teacher_sha256
        if sha and (len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha)):
            out.append(Problem("teacher_sha256", f"must be 64 lowercase hex digits, got {sha!r}"))
        if self.ratio_min or self.ratio_max:
            if not 1.0 <= self.ratio_min <= self.ratio_max <= 16.0:
                out.append(Problem("ratio_min", f"need 1 <= ratio_min <= ratio_max <= 16, got "
                                                f"{self.ratio_min!r} .. {self.ratio_max!r}"))
        return out + _ranged(self, _in("weight", 0.0, 1000.0), _in("ratio_share", 0.0, 1.0),
                             _in("blur_w_px", 0.0, 8.0), _in("noise_dn", 0.0, 64.0))


@dataclass
class TrainConfig:
    """``hzsr model train --config train.yaml``."""

    seed: int = 0  # seeds torch, numpy and patch sampling; same config + same data = same run
    unet: UNetConfig = field(default_factory=UNetConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    log_every: int = 10  # steps between CSV log rows
    ckpt_every: int = 250  # steps between checkpoints (and one at the end)
    threads: int = 0  # torch intra-op threads per rank; 0 = the thread policy (threads.py: measured free cores)
    init: str = ""  # fine-tune from this checkpoint ("shipped": the packaged one); "" = random init
    distill: DistillConfig = field(default_factory=DistillConfig)  # a teacher's output as a target too (off)

    def check(self) -> list[Problem]:
        # stem: unshuffle halves the side once more than the 5 levels do: patches a multiple of 32.
        bad_patch = [Problem("data.patch", f"must be a multiple of 32 with unet.stem unshuffle, got {self.data.patch}")
                     ] if self.unet.stem == "unshuffle" and self.data.patch % 32 else []
        # The rebuilt sources' W blur (train.source_at_ratio) pads by reflection: its radius,
        # 3 blur_w_px ratio_max T px, must stay inside the patch.
        dc = self.distill
        if dc.ratio_max > 0 and dc.ratio_share > 0 and math.ceil(3 * dc.blur_w_px * dc.ratio_max) >= self.data.patch:
            bad_patch.append(Problem("distill.ratio_max", f"a W blur of {dc.blur_w_px} W px at ratio {dc.ratio_max} "
                                                          f"reaches past the {self.data.patch}-px patch"))
        return bad_patch + _ranged(self, _in("seed", 0, 2**63 - 1), _in("log_every", 1, MAX_STEPS),
                                   _in("ckpt_every", 1, MAX_STEPS), _in("threads", 0, MAX_THREADS))


def _set_path(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = data
    for k in keys[:-1]:
        nxt = cur.get(k)
        if nxt is None:
            nxt = cur[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{k!r} is not a section", field=f"--set {dotted}")
        cur = nxt
    cur[keys[-1]] = value


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML: ``8``, ``[8,16]``, ``true``)."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"expected key=value, got {item!r}", field="--set")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"cannot parse value {text!r}", field=f"--set {key}") from None
        _set_path(data, key.strip(), value)
    return data


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML train config (``None``: defaults) and apply CLI overrides."""
    data = load_yaml(path) if path is not None else {}
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", file=path)
    apply_overrides(data, overrides)
    return parse_or_raise(TrainConfig, data, file=str(path) if path else "<defaults>", error=ConfigError)


def dump_config(cfg: Any) -> str:
    return yaml.safe_dump(to_plain(cfg), sort_keys=False)


def replace(cfg: Any, **changes: Any) -> Any:
    return dataclasses.replace(cfg, **changes)
