"""The gated parameterisation of the fusion UNet (``unet.residual_on: gate``)."""

import pytest
import torch

from hzsr.baseline_model.checkpoint import load_model, save_checkpoint, unet_payload
from hzsr.baseline_model.config import UNetConfig
from hzsr.baseline_model.unet import GATE_BIAS0, FusionUNet
from hzsr.core.errors import ConfigError, ModelError
from hzsr.core.schema import parse_or_raise


def _inputs(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, 32, 48, generator=g)
    x[:, 2] = (x[:, 2] > 0.7).float()  # M_occ: mostly 0, some 1
    return x


def test_gate_shares_the_other_weights_and_adds_one_map():
    torch.manual_seed(0)
    ref = FusionUNet(UNetConfig(residual_on="reference")).state_dict()
    torch.manual_seed(0)
    gate = FusionUNet(UNetConfig(residual_on="gate")).state_dict()
    # Same seed, same initial weights everywhere else: a paired comparison of the two.
    assert all(torch.equal(ref[k], gate[k]) for k in ref)
    assert sorted(set(gate) - set(ref)) == ["gate.bias", "gate.weight"]


def test_gate_multiplies_the_reference_share():
    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(residual_on="gate")).eval()
    torch.nn.init.zeros_(m.head.weight)  # no residual: the output is the gated blend alone
    torch.nn.init.zeros_(m.gate.weight)
    x = _inputs()
    blend = x[:, :1] + (1 - x[:, 2:3]) * (x[:, 1:2] - x[:, :1])
    for logit in (GATE_BIAS0, 0.0, -30.0):
        torch.nn.init.constant_(m.gate.bias, logit)
        g = torch.sigmoid(torch.tensor(logit))
        with torch.no_grad():
            y = m(x)
        assert torch.allclose(y, x[:, :1] + g * (blend - x[:, :1]), atol=1e-6)
    # A closed gate is the source, whatever the reference: the network can drop a wrong warp.
    assert torch.allclose(y, x[:, :1], atol=1e-6)


def test_untrained_gate_is_near_the_blend():
    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(residual_on="gate")).eval()
    x = _inputs(1)
    blend = x[:, :1] + (1 - x[:, 2:3]) * (x[:, 1:2] - x[:, :1])
    with torch.no_grad():
        y = m(x)
    # sigmoid(GATE_BIAS0) of the reference's share, and a small residual head
    assert (y - blend).abs().max() < 0.1
    assert (y - blend).abs().mean() < 0.03


def test_gate_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(residual_on="gate")).eval()
    torch.nn.init.normal_(m.gate.weight, 0, 0.3)
    p = save_checkpoint(tmp_path / "g.pt", unet_payload(m))
    back = load_model(p)
    assert back.model.gate is not None
    x = _inputs(2)
    with torch.no_grad():
        assert torch.equal(back.model(x), m(x))


def test_gate_weights_do_not_load_as_reference(tmp_path):
    m = FusionUNet(UNetConfig(residual_on="gate"))
    payload = unet_payload(m)
    payload["unet"]["residual_on"] = "reference"
    p = save_checkpoint(tmp_path / "g.pt", payload)
    with pytest.raises(ModelError, match="state_dict"):
        load_model(p)


def test_residual_on_is_checked():
    with pytest.raises(ConfigError, match="residual_on"):
        parse_or_raise(UNetConfig, {"residual_on": "gated"}, file="t.yaml", error=ConfigError)


def test_gate_exports_to_onnx():
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    from hzsr.baseline_model.runtime import onnx_bytes

    torch.manual_seed(0)
    m = FusionUNet(UNetConfig(widths=[4, 4, 8, 8, 8], residual_on="gate")).eval()
    torch.nn.init.normal_(m.gate.weight, 0, 0.3)  # a gate that varies per pixel
    sess = ort.InferenceSession(onnx_bytes(m, m.size_multiple), providers=["CPUExecutionProvider"])
    x = _inputs(3)
    with torch.no_grad():
        ref = m(x).numpy()
    got = sess.run(None, {"x": x.numpy()})[0]
    assert np.abs(got - ref).max() < 1e-5
