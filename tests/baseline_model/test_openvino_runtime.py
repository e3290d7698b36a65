"""The OpenVINO runtimes: float32 agrees with torch to float rounding, bfloat16 to its precision,
and two tile threads on one runner give the single-threaded result (and do not deadlock)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hzsr.baseline_model.checkpoint import load_model

pytest.importorskip("openvino")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model():
    return load_model(None).model.eval()


def _inputs(shape: tuple[int, int], seed: int) -> torch.Tensor:
    # Smooth luminances with a detailed reference and a sparse occlusion mask, like the UNet's inputs.
    g = torch.Generator().manual_seed(seed)
    y = torch.nn.functional.avg_pool2d(torch.rand(1, 1, *shape, generator=g), 5, 1, 2)
    ref = (y + 0.05 * torch.randn(1, 1, *shape, generator=g)).clamp(0, 1)
    occ = (torch.rand(1, 1, *shape, generator=g) > 0.9).float()
    return torch.cat([y, ref, occ], dim=1)


def test_openvino_float32_and_bfloat16_against_torch(model, monkeypatch, tmp_path):
    from hzsr.baseline_model.export import TOLERANCE
    from hzsr.baseline_model.runtime import make_runner

    monkeypatch.setenv("HZSR_CACHE", str(tmp_path / "cache"))
    x = _inputs((96, 128), 0)
    with torch.inference_mode():
        ref = make_runner(model, "torch", "cpu")(x)
        f32 = make_runner(model, "openvino", "cpu")(x)
        bf16 = make_runner(model, "openvino-bf16", "cpu")(x)
    assert f32.shape == bf16.shape == ref.shape == (1, 1, 96, 128)
    assert float((f32 - ref).abs().max()) <= TOLERANCE
    # bfloat16 keeps 8 mantissa bits: a relative error of 2^-9 per operation, a few 1e-3 at the end;
    # it must really run in bf16 (else the option would be a float32 run under another name).
    d = float((bf16 - ref).abs().max())
    assert 1e-5 < d <= 2e-2


def test_openvino_two_tile_threads_give_the_sequential_result(model, monkeypatch, tmp_path):
    """Two threads on a FRESH runner (the bindings' first numpy conversion happens in them), two tile
    shapes each, as ``tiling.run_tiled(workers=2)`` does: each result is the one-thread result."""
    from hzsr.baseline_model.runtime import make_runner

    monkeypatch.setenv("HZSR_CACHE", str(tmp_path / "cache"))
    shapes = [(64, 96), (48, 160), (64, 96), (80, 64)]
    xs = [_inputs(s, i) for i, s in enumerate(shapes)]
    with torch.inference_mode():
        seq = [make_runner(model, "openvino", "cpu")(x).numpy() for x in xs]
    torch.set_num_threads(2)  # two tiles in flight
    try:
        runner = make_runner(model, "openvino", "cpu")
    finally:
        torch.set_num_threads(1)
    assert runner.tiles_in_flight == 2
    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(2)

    def work(k: int) -> None:
        start.wait()
        with torch.inference_mode():
            for i in range(k, len(xs), 2):
                got[i] = runner(xs[i]).numpy()

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "tile threads deadlocked"
    for i, s in enumerate(seq):
        assert np.array_equal(got[i], s), i
