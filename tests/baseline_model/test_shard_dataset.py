"""``ShardDataset``: finite, map-style, transforms hook, shuffle=True and workers under fork and spawn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hzsr.baseline_model.patches import PatchDataset
from hzsr.baseline_model.shard_dataset import CenterCrop, ShardDataset
from hzsr.dataset.reader import ShardReader


def test_items_are_the_captures_as_tensors(tiny_dataset):
    ds = ShardDataset(tiny_dataset, split="train")
    ids = ShardReader(tiny_dataset).ids("train")
    assert len(ds) == len(ids) > 0
    item = ds[0]
    s = ShardReader(tiny_dataset).read(ids[0])
    assert item["capture_id"] == ids[0]
    for slot in ("main_W", "main_T", "ref_T"):
        assert item[slot].dtype == torch.uint8 and item[slot].shape[0] == 3
        assert np.array_equal(item[slot].permute(1, 2, 0).numpy(), getattr(s, slot))
    assert item["meta"]["frames"]["main_W"]["width"] == s.main_W.shape[1]
    with pytest.raises(IndexError):
        ds[len(ds)]


def _ids_of(batch_ids):
    return sorted(i for b in batch_ids for i in b)


@pytest.mark.parametrize("context", ["fork", pytest.param("spawn", marks=pytest.mark.slow)])
def test_shuffled_loader_with_workers_sees_each_capture_once(tiny_dataset, context):
    ds = ShardDataset(tiny_dataset, transform=CenterCrop(64))
    loader = DataLoader(ds, batch_size=2, shuffle=True, num_workers=2, multiprocessing_context=context,
                        generator=torch.Generator().manual_seed(0))
    seen, orders = [], []
    for _ in range(2):
        got = []
        for batch in loader:
            assert batch["main_W"].shape[1:] == (3, 64, 64) and batch["main_W"].dtype == torch.uint8
            got.append(list(batch["capture_id"]))
        seen.append(_ids_of(got))
        orders.append([i for b in got for i in b])
    assert seen[0] == seen[1] == sorted(ShardReader(tiny_dataset).ids())
    assert orders[0] != orders[1] or len(ds) < 3  # shuffled per epoch


def test_transform_hook_gets_numpy_and_returns_anything(tiny_dataset):
    def shapes(item):
        return {k: v.shape for k, v in item.items() if isinstance(v, np.ndarray)}

    ds = ShardDataset(tiny_dataset, slots=("main_W",), transform=shapes)
    assert list(ds[0]) == ["main_W"] and len(ds[0]["main_W"]) == 3


def test_patch_dataset_has_a_finite_length_and_shuffles(tiny_run):
    paths = sorted((tiny_run / "cache").rglob("*.npy"))
    ds = PatchDataset(paths, 32, seed=0, length=16)
    assert len(ds) == 16
    xs = [x for x, _, _ in DataLoader(ds, batch_size=4, shuffle=True)]
    assert len(xs) == 4 and xs[0].shape == (4, 3, 32, 32)


def test_eval_and_loader_stop_on_a_damaged_shard(tiny_run, tiny_dataset, tmp_path, capsys):
    """A flipped byte in a test capture's frame: `model eval` and ShardDataset stop with one line naming it."""
    import shutil

    import h5py

    from hzsr.cli import main
    from hzsr.core.errors import DatasetError

    ds = tmp_path / "ds"
    shutil.copytree(tiny_dataset, ds)
    r = ShardReader(ds)
    cid = r.ids("test")[0]
    shard = ds / "shards" / r.shard_of(cid)
    with h5py.File(shard, "r") as h5:
        info = h5["captures"][cid]["ref_T"].id.get_chunk_info(0)
    with open(shard, "r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        b = f.read(1)
        f.seek(info.byte_offset + info.size // 2)
        f.write(bytes([b[0] ^ 0x5A]))
    capsys.readouterr()
    assert main(["model", "eval", str(ds), "--ckpt", str(tiny_run / "model.pt"), "--split", "test",
                 "--out", str(tmp_path / "ev"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"hzsr: error: {shard}: {cid}: ref_T: cannot read pixels"), err
    loader = DataLoader(ShardDataset(ds, split="test", transform=CenterCrop(64)), batch_size=1, num_workers=1)
    batches = iter(loader)
    try:
        with pytest.raises(DatasetError, match=f"{cid}: ref_T: cannot read pixels"):
            list(batches)
    finally:
        # Shut the worker down now: left to the garbage collector (the exception's traceback keeps
        # the iterator alive), it was still running when this xdist worker exited, was terminated
        # (SIGTERM) there and left its multiprocessing folder (/tmp/pymp-*, from sending a tensor's
        # shared-memory descriptor) behind: one per `make test`.
        batches._shutdown_workers()
        # A clean exit (0, not -SIGTERM) is the one that runs the worker's exit handlers.
        assert [w.exitcode for w in batches._workers] == [0]


def test_the_training_cache_key_ignores_inference_only_settings():
    """A change to a setting training never reads (the blend's level-2 settings, the denoiser,
    tiling) keeps the cached arrays; one that changes the alignment does not."""
    import dataclasses

    from hzsr.baseline_model.config import INFERENCE_ONLY_FIELDS, PipelineConfig
    from hzsr.baseline_model.data import config_key

    base = PipelineConfig()
    for name, value in (("flow_blur_px", 2.0), ("flow_alpha", 5.0), ("denoise_strength", 0.5), ("tile", 512),
                        ("blend_occlusion_scale", 0.05)):
        assert name in INFERENCE_ONLY_FIELDS
        assert config_key(dataclasses.replace(base, **{name: value})) == config_key(base), name
    assert config_key(dataclasses.replace(base, min_ncc=0.3)) != config_key(base)
    assert config_key(dataclasses.replace(base, use_occ=False)) != config_key(base)


def test_training_can_align_on_the_inference_flow(tiny_dataset):
    """``data.level2_flow``: the cache aligns with the level-2 flow settings (DIS's smoothness and
    blurred lumas), so the network's inputs are the pipeline's own at inference; off (the shipped
    recipe) they are left out of the alignment and of the cache key, as before. A training-only
    setting: the pipeline config (and an int8 graph's digest of it) does not carry it."""
    import dataclasses

    import numpy as np

    from hzsr.baseline_model.checkpoint import load_model
    from hzsr.baseline_model.config import DataConfig, PipelineConfig
    from hzsr.baseline_model.data import config_key, prepare_capture
    from hzsr.baseline_model.pipeline import HZSRPipeline, unet_inputs
    from hzsr.dataset.reader import ShardReader

    assert DataConfig().level2_flow is False and "level2_flow" not in dataclasses.asdict(PipelineConfig())
    base = PipelineConfig()
    assert config_key(base, True) != config_key(base)
    assert config_key(dataclasses.replace(base, flow_blur_px=2.0), True) != config_key(base, True)
    assert config_key(dataclasses.replace(base, flow_alpha=5.0), True) != config_key(base, True)
    # The level from which the smoothness and blur apply changes the flow too (review: it was left out).
    assert config_key(dataclasses.replace(base, blend_maps_level=3), True) != config_key(base, True)
    assert config_key(dataclasses.replace(base, flow_blur_min_level=2), True) != config_key(base, True)
    assert config_key(dataclasses.replace(base, flow_blur_min_level=2)) == config_key(base)  # level2_flow off
    assert config_key(dataclasses.replace(base, denoise_strength=0.5), True) == config_key(base, True)

    r = ShardReader(tiny_dataset)
    cid = next(c for c in r.ids() if r.meta(c)["has_reference"])
    sample = r.read(cid)
    stack_on, _ = prepare_capture(sample, base, level2_flow=True)
    stack_off, _ = prepare_capture(sample, base)
    al = HZSRPipeline(load_model(None).model, base).align(sample.main_W, sample.ref_T, sample.meta)
    assert al.flow_level == 2 and al.flow_blur_px == base.flow_blur_px  # the 5x pair stops at level 2
    h, w = al.src.shape[:2]
    x, _ = unet_inputs(al, 0, h, 0, w)
    np.testing.assert_array_equal(stack_on[:3], x.astype(np.float16))  # inference's inputs, exactly
    assert np.abs(stack_on[1].astype(np.float32) - stack_off[1].astype(np.float32)).max() > 0.01  # another flow
    # Above the pair's level (2), the smoothness does not apply and the blur applies from
    # flow_blur_min_level at its W-pixel fraction, in training as at inference.
    above = dataclasses.replace(base, blend_maps_level=3)
    stack_above, _ = prepare_capture(sample, above, level2_flow=True)
    al3 = HZSRPipeline(load_model(None).model, above).align(sample.main_W, sample.ref_T, sample.meta)
    x3, _ = unet_inputs(al3, 0, h, 0, w)
    np.testing.assert_array_equal(stack_above[:3], x3.astype(np.float16))


def test_training_can_align_on_the_fused_flow(tiny_dataset, monkeypatch):
    """``data.fused_flow`` (issue20epic): the cache aligns with the pipeline's ``flow_fusion`` and keys on
    it; off (the shipped recipe) neither the alignment nor the key sees it."""
    import dataclasses

    import hzsr.baseline_model.align as align_mod
    from hzsr.baseline_model.config import DataConfig, PipelineConfig
    from hzsr.baseline_model.data import config_key, prepare_capture
    from hzsr.dataset.reader import ShardReader

    assert DataConfig().fused_flow is False
    base = PipelineConfig(flow_fusion="modes")
    assert config_key(base) == config_key(PipelineConfig())  # off: the key caches always had
    assert config_key(base, fused_flow=True) != config_key(base)
    assert config_key(base, fused_flow=True) != config_key(dataclasses.replace(base, flow_fusion="none"),
                                                           fused_flow=True)
    seen = []
    real = align_mod.align

    def spy(*a, **k):
        seen.append(k.get("flow_fusion", "none"))
        return real(*a, **k)

    monkeypatch.setattr(align_mod, "align", spy)
    r = ShardReader(tiny_dataset)
    sample = r.read(next(c for c in r.ids() if r.meta(c)["has_reference"]))
    prepare_capture(sample, base, fused_flow=True)
    prepare_capture(sample, base)
    assert seen == ["modes", "none"]
