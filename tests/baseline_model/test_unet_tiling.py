import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hzsr.baseline_model.config import UNetConfig
from hzsr.baseline_model.tiling import n_tiles, run_tiled, tile_cores
from hzsr.baseline_model.unet import FusionUNet, count_parameters
from hzsr.core.errors import ConfigError
from hzsr.core.schema import parse_or_raise


def _random_unet(widths=(4, 6, 8, 8, 8), seed=0) -> FusionUNet:
    """PyTorch's default init, with a strong head so the output depends on every level."""
    torch.manual_seed(seed)
    m = FusionUNet(UNetConfig(widths=list(widths))).eval()
    torch.nn.init.normal_(m.head.weight, 0, 0.3)
    return m


def test_unet_shapes_and_widths():
    m = FusionUNet(UNetConfig(widths=[4, 8, 8, 16, 16]))
    y = m(torch.rand(2, 3, 48, 64))
    assert y.shape == (2, 1, 48, 64)
    assert m.size_multiple == 16
    assert m.enc[4][0][0].out_channels == 16
    assert count_parameters(m) < count_parameters(FusionUNet(UNetConfig(widths=[8, 16, 16, 32, 32])))


def test_unet_starts_near_identity_on_y_src():
    m = FusionUNet()
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(m(x), x[:, :1], atol=0.05)


def test_unet_config_needs_five_levels():
    with pytest.raises(ConfigError, match="widths"):
        parse_or_raise(UNetConfig, {"widths": [8, 16, 32]}, file="t.yaml", error=ConfigError)


def test_tiles_cover_the_image_once():
    cov = np.zeros((100, 130), int)
    for y0, y1, x0, x1 in tile_cores(100, 130, 32):
        cov[y0:y1, x0:x1] += 1
    assert (cov == 1).all()
    assert n_tiles(100, 130, 32) == len(list(tile_cores(100, 130, 32))) == 4 * 5


def _whole(m, x):
    h, w = x.shape[1:]
    t = F.pad(torch.from_numpy(x)[None], (0, -w % 16, 0, -h % 16), mode="reflect")
    with torch.inference_mode():
        return m(t)[0, 0, :h, :w].numpy()


def _tiled(m, x, tile, halo, windows=None, workers=1):
    out = np.full(x.shape[1:], np.nan, np.float32)

    def mk(y0, y1, x0, x1):
        if windows is not None:
            windows.append((y1 - y0, x1 - x0))
        return x[:, y0:y1, x0:x1]

    def cons(y0, y1, x0, x1, core, win):
        out[y0:y1, x0:x1] = core

    run_tiled(m, x.shape[1], x.shape[2], mk, cons, tile=tile, halo=halo, workers=workers)
    return out


def test_tiles_in_flight_give_the_sequential_result_bit_for_bit():
    """Tiles run by parallel workers (``workers=2``, as ONNX Runtime's tiles in flight) write the
    same cores as one after another: every core computed once, from its own window."""
    m = _random_unet()
    x = np.random.default_rng(1).random((3, 150, 210), dtype=np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-tile arithmetic as in a worker (one intra-op thread)
    try:
        seq = _tiled(m, x, tile=48, halo=16)
        par = _tiled(m, x, tile=48, halo=16, workers=2)
    finally:
        torch.set_num_threads(threads)
    assert not np.isnan(par).any()
    assert np.array_equal(par, seq)


def test_tiled_matches_whole_image_and_windows_stay_bounded():
    m = _random_unet()
    rng = np.random.default_rng(0)
    x = rng.random((3, 150, 210), dtype=np.float32)
    whole = _whole(m, x)
    windows = []
    tiled = _tiled(m, x, tile=48, halo=32, windows=windows)
    assert not np.isnan(tiled).any()
    # Seams are invisible: away from the image border (where the tiles reflect the image and the
    # whole-image run zero-pads), under one 8-bit level everywhere.
    err = np.abs(tiled - whole)[16:-16, 16:-16]
    assert err.max() < 1 / 255
    # Memory is bounded by the tile, not the image: no window exceeds tile + 2 halo.
    assert max(max(w) for w in windows) <= 48 + 2 * 32
    # Without a halo the seams are visible: the halo is what makes tiling exact enough.
    no_halo = _tiled(m, x, tile=48, halo=0)
    assert np.abs(no_halo - whole)[16:-16, 16:-16].max() > 3 / 255
