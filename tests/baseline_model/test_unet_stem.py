"""The pixel-unshuffle stem of the fusion UNet (``unet.stem: unshuffle``, issue 19)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hzsr.baseline_model.checkpoint import load_model, save_checkpoint, unet_payload
from hzsr.baseline_model.config import TrainConfig, UNetConfig
from hzsr.baseline_model.unet import FusionUNet
from hzsr.core.errors import ConfigError
from hzsr.core.schema import parse_or_raise


def _inputs(seed: int = 0, h: int = 64, w: int = 96) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, h, w, generator=g)
    x[:, 2] = (x[:, 2] > 0.7).float()  # M_occ: mostly 0, some 1
    return x


def test_full_stem_is_the_original_network():
    """stem: full (the default) keeps the state_dict's keys and shapes: old checkpoints load unchanged."""
    m = FusionUNet(UNetConfig(residual_on="reference"))
    assert m.cfg.stem == "full" and m.size_multiple == 16
    assert m.enc[0][0][0].in_channels == 3
    assert m.head.in_channels == 8 + 3 and m.head.out_channels == 1


def test_unshuffle_stem_runs_every_level_at_half_resolution():
    m = FusionUNet(UNetConfig(residual_on="reference", stem="unshuffle")).eval()
    assert m.size_multiple == 32
    assert m.enc[0][0][0].in_channels == 12  # 3 inputs x 2x2 sub-pixels
    assert m.head.in_channels == 8 + 12 and m.head.out_channels == 4
    seen = []
    hook = m.enc[0].register_forward_hook(lambda mod, i, o: seen.append(o.shape))
    x = _inputs()
    with torch.no_grad():
        y = m(x)
    hook.remove()
    assert y.shape == (2, 1, 64, 96)
    assert seen == [torch.Size([2, 8, 32, 48])]


def test_unshuffle_head_places_each_sub_pixel():
    """The head's 4 channels are the 4 sub-pixels of each 2x2 block, on the full-resolution base."""
    m = FusionUNet(UNetConfig(residual_on="reference", stem="unshuffle")).eval()
    torch.nn.init.zeros_(m.head.weight)
    # Bias per channel: the residual is then a fixed 2x2 pattern tiled over the image.
    with torch.no_grad():
        m.head.bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = _inputs(1)
    base = x[:, :1] + (1 - x[:, 2:3]) * (x[:, 1:2] - x[:, :1])
    with torch.no_grad():
        r = m(x) - base
    assert torch.allclose(r[0, 0, :2, :2], torch.tensor([[1.0, 2.0], [3.0, 4.0]]), atol=1e-5)
    assert torch.allclose(r, r[:, :, :2, :2].repeat(1, 1, 32, 48), atol=1e-5)


def test_unshuffle_head_can_copy_the_reference_detail_linearly():
    """"Take the reference's detail here" is still one linear step of the head, per sub-pixel."""
    m = FusionUNet(UNetConfig(residual_on="source", stem="unshuffle")).eval()
    torch.nn.init.zeros_(m.head.weight)
    torch.nn.init.zeros_(m.head.bias)
    with torch.no_grad():
        # The head's inputs: 8 features, then the unshuffled z; z's channel 1 (~Y_ref - Y_src)
        # for sub-pixel k is unshuffled channel 1 * 4 + k. Centre tap, weight 1, into output k.
        for k in range(4):
            m.head.weight[k, 8 + 4 + k, 1, 1] = 1.0
    x = _inputs(2)
    with torch.no_grad():
        y = m(x)
    assert torch.allclose(y, x[:, 1:2], atol=1e-5)  # Y_src + (~Y_ref - Y_src)


def test_untrained_unshuffle_is_near_the_blend():
    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(residual_on="reference", stem="unshuffle")).eval()
    x = _inputs(3)
    blend = x[:, :1] + (1 - x[:, 2:3]) * (x[:, 1:2] - x[:, :1])
    with torch.no_grad():
        y = m(x)
    assert (y - blend).abs().max() < 0.1


def test_unshuffle_gate_is_per_pixel():
    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(residual_on="gate", stem="unshuffle")).eval()
    assert m.gate.out_channels == 4
    torch.nn.init.zeros_(m.head.weight)
    torch.nn.init.zeros_(m.gate.weight)
    torch.nn.init.constant_(m.gate.bias, -30.0)  # closed: the source, whatever the reference
    x = _inputs(4)
    with torch.no_grad():
        assert torch.allclose(m(x), x[:, :1], atol=1e-6)


def test_unshuffle_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(widths=[12, 16, 24, 32, 48], residual_on="reference", stem="unshuffle")).eval()
    torch.nn.init.normal_(m.head.weight, 0, 0.3)
    back = load_model(save_checkpoint(tmp_path / "u.pt", unet_payload(m)))
    assert back.model.cfg.stem == "unshuffle" and back.model.size_multiple == 32
    x = _inputs(5)
    with torch.no_grad():
        assert torch.equal(back.model(x), m(x))


def test_stem_is_checked():
    with pytest.raises(ConfigError, match="stem"):
        parse_or_raise(UNetConfig, {"stem": "shuffle"}, file="t.yaml", error=ConfigError)


def test_unshuffle_needs_patches_a_multiple_of_32():
    with pytest.raises(ConfigError, match="data.patch"):
        parse_or_raise(TrainConfig, {"unet": {"stem": "unshuffle"}, "data": {"patch": 80}}, file="t.yaml",
                       error=ConfigError)
    parse_or_raise(TrainConfig, {"unet": {"stem": "unshuffle"}, "data": {"patch": 96}}, file="t.yaml",
                   error=ConfigError)
    parse_or_raise(TrainConfig, {"data": {"patch": 80}}, file="t.yaml", error=ConfigError)


def test_unshuffle_exports_to_onnx():
    ort = pytest.importorskip("onnxruntime")

    from hzsr.baseline_model.runtime import onnx_bytes

    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(widths=[4, 4, 8, 8, 8], residual_on="reference", stem="unshuffle")).eval()
    torch.nn.init.normal_(m.head.weight, 0, 0.3)
    sess = ort.InferenceSession(onnx_bytes(m, m.size_multiple), providers=["CPUExecutionProvider"])
    x = _inputs(6)
    with torch.no_grad():
        ref = m(x).numpy()
    got = sess.run(None, {"x": x.numpy()})[0]
    assert np.abs(got - ref).max() < 1e-5


def test_unshuffle_tiles_like_the_whole_image():
    """Tiled inference pads to the stem's multiple (32) and matches a whole-image run."""
    from hzsr.baseline_model.tiling import run_tiled

    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(widths=[4, 6, 8, 8, 8], residual_on="reference", stem="unshuffle")).eval()
    torch.nn.init.normal_(m.head.weight, 0, 0.3)
    x = _inputs(7, 96, 160)[:1]
    with torch.no_grad():
        whole = m(x)[0, 0].numpy()
    out = np.zeros((96, 160), np.float32)

    def consume(y0, y1, x0, x1, y, _w):
        out[y0:y1, x0:x1] = y

    run_tiled(m, 96, 160, lambda a, b, c, d: x[0, :, a:b, c:d].numpy(), consume, tile=48, halo=48,
              multiple=m.size_multiple)
    # The halo covers the stem's doubled receptive field well enough away from the image border.
    assert np.abs(out - whole)[8:-8, 8:-8].mean() < 1e-3
    # And a padded odd-size input goes through (sides a multiple of 32 after padding).
    with torch.no_grad():
        assert m(F.pad(x, (0, 32, 0, 32), mode="replicate")).shape == (1, 1, 128, 192)


def test_tail_needs_the_unshuffle_stem():
    with pytest.raises(ConfigError, match="tail"):
        parse_or_raise(UNetConfig, {"tail": 4}, file="t.yaml", error=ConfigError)
    parse_or_raise(UNetConfig, {"tail": 4, "stem": "unshuffle"}, file="t.yaml", error=ConfigError)


def test_tail_runs_at_full_resolution_and_sees_the_inputs():
    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(residual_on="source", stem="unshuffle", tail=4)).eval()
    assert m.unfolded.out_channels == 4 * 4 and m.tail[0].in_channels == 4 + 3
    assert m.head.in_channels == 4 + 3 and m.head.out_channels == 1
    seen = []
    hook = m.tail.register_forward_hook(lambda mod, i, o: seen.append(o.shape))
    torch.nn.init.zeros_(m.head.weight)
    torch.nn.init.zeros_(m.head.bias)
    with torch.no_grad():
        m.head.weight[0, 4 + 1, 1, 1] = 1.0  # the last conv copies ~Y_ref - Y_src: a linear step
    x = _inputs(8)
    with torch.no_grad():
        y = m(x)
    hook.remove()
    assert seen == [torch.Size([2, 4, 64, 96])]
    assert torch.allclose(y, x[:, 1:2], atol=1e-5)
