"""``flow_fusion``: flow hypotheses beyond DIS's reach, fused per pixel (issue20epic)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hzsr.baseline_model import flow_fusion
from hzsr.baseline_model.align import blurred_lumas, dis_flow_from, dis_flows
from hzsr.baseline_model.config import PipelineConfig
from hzsr.baseline_model.runtime import pipeline_digest

H, W = 384, 512
BACKGROUND = (-3.0, 2.0)  # the flow I_src -> reference of the background, grid px
FAR_BLOCK = (72.0, 0.0)  # ... and of a near block in front of it: beyond what DIS reaches from zero
Y0, Y1, X0, X1 = 110, 290, 130, 300  # the block on the source's grid

def _texture(rng: np.random.Generator, sigma: float) -> np.ndarray:
    t = cv2.GaussianBlur(rng.integers(0, 255, (H, W), dtype=np.uint8).astype(np.float32), (0, 0), sigma)
    return (t - t.mean()) * 4 + 128


def _pair(block: tuple[float, float] = FAR_BLOCK, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source and reference (uint8 RGB grid images) and the true forward flow: a textured background
    moving by ``BACKGROUND`` and a differently textured block in front moving by ``block``."""
    rng = np.random.default_rng(seed)
    back, front = _texture(rng, 2.0), _texture(rng, 1.5)
    bx, by = int(block[0]), int(block[1])
    src = np.roll(back, (-int(BACKGROUND[1]), -int(BACKGROUND[0])), (0, 1)).copy()
    ref = back.copy()
    src[Y0:Y1, X0:X1] = front[Y0:Y1, X0:X1]
    ref[Y0 + by:Y1 + by, X0 + bx:X1 + bx] = front[Y0:Y1, X0:X1]
    flow = np.empty((H, W, 2), np.float32)
    flow[...] = BACKGROUND
    flow[Y0:Y1, X0:X1] = block

    def rgb(y: np.ndarray) -> np.ndarray:
        return np.repeat(np.clip(y + 0.5, 0, 255).astype(np.uint8)[..., None], 3, 2)

    return rgb(src), rgb(ref), flow


def _fused(mode: str, src: np.ndarray, ref: np.ndarray,
           calls: list[tuple[int, int]] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DIS's forward flow and the fused forward and backward flows; ``calls`` collects the size of
    every image pair the fusion ran DIS on."""
    cfg = PipelineConfig().qa
    sy, ry = blurred_lumas(src, ref, 1.0)
    fwd, bwd = dis_flows(sy, ry, cfg, 2, 30.0)

    def dis_from(a: np.ndarray, b: np.ndarray, init: np.ndarray | None) -> np.ndarray:
        if calls is not None:
            calls.append(a.shape[:2])
        return dis_flow_from(a, b, cfg, 2, 30.0, init)

    f, b = flow_fusion.fuse_flows(sy, ry, fwd, bwd, dis_from, mode, 4.0)
    return fwd, f, b


def _block_epe(flow: np.ndarray, truth: np.ndarray) -> float:
    """Mean end-point error inside the block, its border (where the pick's box straddles) left out."""
    m = 12
    return float(np.linalg.norm(flow - truth, axis=2)[Y0 + m:Y1 - m, X0 + m:X1 - m].mean())


def test_dis_flow_from_without_init_is_dis_flows():
    src, ref, _ = _pair()
    sy, ry = blurred_lumas(src, ref, 1.0)
    cfg = PipelineConfig().qa
    assert np.array_equal(dis_flow_from(sy, ry, cfg, 2, 30.0), dis_flows(sy, ry, cfg, 2, 30.0)[0])


def test_none_is_dis_bit_for_bit():
    src, ref, _ = _pair()
    fwd, f, _ = _fused("none", src, ref)
    assert f is fwd


@pytest.mark.parametrize("mode", ["modes", "modes_pruned2"])
def test_modes_recover_a_near_layer_dis_misses(mode: str):
    src, ref, truth = _pair()
    fwd, f, b = _fused(mode, src, ref)
    # The test means something only if DIS alone misses the block by far ...
    assert _block_epe(fwd, truth) > 20.0
    # ... and the keypoint mode brings it within a pixel; the background stays DIS's.
    assert _block_epe(f, truth) < 1.0
    back = np.ones((H, W), bool)
    back[Y0 - 20:Y1 + 20, X0 - 20:X1 + 100] = False
    back[:20] = back[-20:] = False
    back[:, :20] = back[:, -20:] = False
    assert np.linalg.norm(f - fwd, axis=2)[back].mean() < 0.05
    # The backward flow gets the block too: at the block's place in the reference, -FAR_BLOCK.
    bb = b[Y0 + 12:Y1 - 12, X0 + 84:X1 + 60]
    assert float(np.linalg.norm(bb + np.float32(FAR_BLOCK), axis=2).mean()) < 1.0


def test_pick_per_pixel_takes_the_flow_that_matches():
    src, ref, truth = _pair()
    sy, ry = blurred_lumas(src, ref, 1.0)
    wrong = np.zeros_like(truth)
    out = flow_fusion.pick_per_pixel(sy, ry, [wrong, truth])
    inner = np.linalg.norm(out - truth, axis=2)[20:-20, 20:-100]
    assert (inner < 1e-6).mean() > 0.95
    # A global brightness offset of the reference does not change the choice.
    out2 = flow_fusion.pick_per_pixel(sy, np.clip(ry.astype(np.int16) + 25, 0, 255).astype(np.uint8), [wrong, truth])
    assert (np.linalg.norm(out2 - truth, axis=2)[20:-20, 20:-100] < 1e-6).mean() > 0.95


def test_displacement_modes():
    rng = np.random.default_rng(1)
    pa = rng.uniform(0, 400, (60, 2)).astype(np.float32)
    d = np.zeros((60, 2), np.float32)
    d[:40] = (1.0, 0.5)
    d[40:52] = (70.0, -4.0)  # a near layer's 12 matches
    d[52:] = rng.uniform(-100, 100, (8, 2))  # chance matches, scattered
    modes = flow_fusion.displacement_modes(pa, pa + d, np.array([1.0, 0.5]))
    assert len(modes) == 1 and np.allclose(modes[0], (70.0, -4.0))


def test_config_and_digest():
    c = PipelineConfig()
    # The default: "auto", which runs modes_pruned2_matched where the DIS level rule applies (blur3).
    assert c.flow_fusion == "auto" and c.flow_fusion_used() == "modes_pruned2_matched" and c.check() == []
    c.flow_fusion = "epic"
    assert [p.field for p in c.check()] == ["flow_fusion"]
    # The int8 graph's pipeline digest hashes what runs: "auto" as modes_pruned2_matched (the shipped graph's),
    # "none" as before the option existed (graphs made then stay current where it is off).
    import json
    from pathlib import Path

    import hzsr.baseline_model as bm
    side = json.loads((Path(bm.__file__).parent / "weights" / "shipped.int8.json").read_text())
    digests = {m: pipeline_digest(PipelineConfig(flow_fusion=m)) for m in flow_fusion.FUSION_MODES}
    assert digests["auto"] == digests["modes_pruned2_matched"] == side["pipeline_sha256"]
    assert len({digests[m] for m in ("none", "modes", "modes_pruned2", "modes_pruned2_matched")}) == 4
    assert set(flow_fusion.FUSION_MODES) == {"auto", "none", "modes", "modes_pruned2", "modes_pruned2_matched"}


def test_auto_leaves_other_flows_alone():
    """A pipeline whose flow cannot take the fusion (another backend, or DIS without the level rule)
    stays valid under the default and runs its flow as it is; naming a fusion there is an error."""
    from hzsr.baseline_model.align import FLOW_BACKENDS, register_flow_backend

    register_flow_backend("test_zero", lambda a, b, cfg: (np.zeros(a.shape + (2,), np.float32),) * 2)
    try:
        for c in (PipelineConfig(flow_backend="test_zero"), PipelineConfig(flow_level_by_w_px=False)):
            assert c.check() == [] and c.flow_fusion_used() == "none"
            c.flow_fusion = "modes_pruned2"
            assert [p.field for p in c.check()] == ["flow_fusion"]
    finally:
        FLOW_BACKENDS.pop("test_zero", None)


def _periodic_pair(period: int = 48) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noisy grid lumas of a texture repeating every ``period`` px across, shifted by ``BACKGROUND``; DIS's flow."""
    rng = np.random.default_rng(3)
    tile = _texture(rng, 1.5)[:, :period]
    back = np.tile(tile, (1, W // period + 1))[:, :W]
    src = np.roll(back, (-int(BACKGROUND[1]), -int(BACKGROUND[0])), (0, 1))
    # Each image its own noise (W upsampled against a sharp T never match to the grey level): the next
    # period then matches as well as DIS's flow, not better by DIS's sub-pixel error.
    sy = np.clip(src + rng.normal(0, 6, src.shape) + 0.5, 0, 255).astype(np.uint8)
    ry = np.clip(back + rng.normal(0, 6, back.shape) + 0.5, 0, 255).astype(np.uint8)
    cfg = PipelineConfig().qa
    return sy, ry, dis_flows(sy, ry, cfg, 2, 30.0)[0]


def test_a_repeating_texture_s_mode_is_pruned_before_any_dis():
    """Keypoints matched one period off (as a facade's windows match mutually) make a mode that ``modes``
    runs DIS from; ``modes_pruned2`` finds it matches no better than DIS's flow, which does not follow
    it, and runs nothing."""
    period = 48
    sy, ry, fwd = _periodic_pair(period)
    rng = np.random.default_rng(4)
    pa = rng.uniform(40, 340, (30, 2)).astype(np.float32)
    pb = pa + np.float32(BACKGROUND) + np.float32((period, 0))  # the next period's match
    calls: list[int] = []

    def dis_from(a: np.ndarray, b: np.ndarray, init: np.ndarray | None) -> np.ndarray:
        calls.append(1)
        return dis_flow_from(a, b, PipelineConfig().qa, 2, 30.0, init)

    assert len(flow_fusion.displacement_modes(pa, pb, np.median(fwd.reshape(-1, 2), axis=0))) == 1
    assert np.array_equal(flow_fusion._one_direction(sy, ry, fwd, pa, pb, dis_from, prune=True, max_modes=2), fwd)
    assert calls == []
    assert len(flow_fusion._one_direction(sy, ry, fwd, pa, pb, dis_from)) and calls == [1]


def test_mode_beats_dis_on_a_near_layer_only():
    src, ref, _ = _pair()
    sy, ry = blurred_lumas(src, ref, 1.0)
    fwd = dis_flows(sy, ry, PipelineConfig().qa, 2, 30.0)[0]
    s, r = flow_fusion._matched_to(sy, ry)
    rng = np.random.default_rng(5)
    on_block = np.stack([rng.uniform(X0 + 15, X1 - 15, 20), rng.uniform(Y0 + 15, Y1 - 15, 20)], 1)
    assert flow_fusion.mode_beats_dis(s, r, on_block, np.array(FAR_BLOCK), fwd)
    # Off by one period of nothing: a wrong mode on the block does not beat DIS either way it is off.
    assert not flow_fusion.mode_beats_dis(s, r, on_block, np.array(FAR_BLOCK) + (0, 40), fwd)
    assert not flow_fusion.mode_beats_dis(s, r, on_block[:0], np.array(FAR_BLOCK), fwd)


def test_dis_follows_mode():
    """A layer DIS reaches at its keypoints is kept even where the constant mode does not beat DIS there."""
    flow = np.zeros((H, W, 2), np.float32)
    flow[100:200, 100:200] = (20.0, 0.0)
    pts = np.array([[150.0, 150.0], [120.0, 180.0], [300.0, 300.0]])
    assert flow_fusion.dis_follows_mode(pts, np.array([21.0, 1.0]), flow)
    assert not flow_fusion.dis_follows_mode(pts, np.array([40.0, 0.0]), flow)
    assert not flow_fusion.dis_follows_mode(pts[2:], np.array([21.0, 1.0]), flow)
    assert not flow_fusion.dis_follows_mode(pts[:0], np.array([21.0, 1.0]), flow)


def test_modes_pruned2_is_modes_where_nothing_is_pruned():
    """One near layer: one cluster, kept (it beats DIS on the block), so the output is ``modes``' bit for bit."""
    src, ref, _ = _pair()
    _, f, b = _fused("modes", src, ref)
    _, f2, b2 = _fused("modes_pruned2", src, ref)
    assert np.array_equal(f, f2) and np.array_equal(b, b2)


def test_modes_pruned2_looks_for_two_clusters_at_most():
    rng = np.random.default_rng(1)
    pa = rng.uniform(40, 340, (60, 2)).astype(np.float32)
    d = np.zeros((60, 2), np.float32)
    d[:20], d[20:35], d[35:47] = (40.0, 0.0), (0.0, 40.0), (-40.0, 0.0)  # three layers, largest first
    sizes: list[tuple[int, int]] = []

    def dis_from(a: np.ndarray, b: np.ndarray, init: np.ndarray | None) -> np.ndarray:
        sizes.append(a.shape[:2])
        return np.zeros(a.shape[:2] + (2,), np.float32)

    # a flat flow the modes all beat or are followed by: nothing pruned, so the cap is what limits
    flow = np.zeros((H, W, 2), np.float32)
    y = np.repeat(np.arange(256, dtype=np.uint8)[None], H, 0)[:, :W // 2]
    img = np.ascontiguousarray(np.tile(y, (1, 2)))
    flow_fusion._one_direction(img, img, flow, pa, pa + d, dis_from, max_modes=2)
    assert len(sizes) == 2
    sizes.clear()
    flow_fusion._one_direction(img, img, flow, pa, pa + d, dis_from)  # modes: three
    assert len(sizes) == 3


def _calls_through(mode: str, monkeypatch, pa: np.ndarray, pb: np.ndarray, sy: np.ndarray, ry: np.ndarray,
                   fwd: np.ndarray, bwd: np.ndarray) -> int:
    """How many DIS runs ``fuse_flows(mode)`` makes with ``keypoint_matches`` giving ``pa -> pb``."""
    monkeypatch.setattr(flow_fusion, "keypoint_matches", lambda *a, **k: (pa, pb))
    calls: list[int] = []

    def dis_from(a: np.ndarray, b: np.ndarray, init: np.ndarray | None) -> np.ndarray:
        calls.append(1)
        return np.zeros(a.shape[:2] + (2,), np.float32)

    flow_fusion.fuse_flows(sy, ry, fwd, bwd, dis_from, mode, 4.0)
    return len(calls)


def test_modes_pruned2_prunes_and_caps_through_fuse_flows(monkeypatch):
    """The value's own options, not a helper called with them: a repeating texture's next period costs
    modes two DIS runs (one per direction) and modes_pruned2 none; three real layers cost modes three
    a direction and modes_pruned2 two."""
    period = 48
    sy, ry, _ = _periodic_pair(period)
    fwd, bwd = dis_flows(sy, ry, PipelineConfig().qa, 2, 30.0)
    rng = np.random.default_rng(4)
    pa = rng.uniform(40, 340, (30, 2)).astype(np.float32)
    pb = pa + np.float32(BACKGROUND) + np.float32((period, 0))
    assert _calls_through("modes", monkeypatch, pa, pb, sy, ry, fwd, bwd) == 2
    assert _calls_through("modes_pruned2", monkeypatch, pa, pb, sy, ry, fwd, bwd) == 0
    pa = rng.uniform(40, 340, (60, 2)).astype(np.float32)
    d = np.zeros((60, 2), np.float32)
    d[:20], d[20:35], d[35:47] = (40.0, 0.0), (0.0, 40.0), (-40.0, 0.0)
    monkeypatch.setattr(flow_fusion, "mode_is_kept", lambda *a, **k: True)  # the cap alone
    flat = np.zeros((H, W, 2), np.float32)
    assert _calls_through("modes", monkeypatch, pa, pa + d, sy, ry, flat, flat) == 6
    assert _calls_through("modes_pruned2", monkeypatch, pa, pa + d, sy, ry, flat, flat) == 4
