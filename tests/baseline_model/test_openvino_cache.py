"""OpenVINO's compiled-model cache (``runtime._compiled_model``, issue 19): a hit runs the same
network, and an entry that is stale, torn, edited or under the wrong key is rebuilt, never run.

Compiling the UNet cost 0.3 s of every 12 MP run; the compiled model is cached by graph, config,
OpenVINO build and CPU, and checked (sidecar size and sha256, import, a probe output) before use.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("torch")

from hzsr.baseline_model import runtime  # noqa: E402


@pytest.fixture(scope="module")
def graphs(tiny_run):
    """Two different networks' ONNX graphs (the tiny run's checkpoints at two steps), and a tile."""
    import torch

    from hzsr.baseline_model.checkpoint import load_model

    model = load_model(tiny_run / "model.pt").model
    other = load_model(tiny_run / "model.pt").model
    with torch.no_grad():
        other.head.bias += 0.25  # another network: the same shapes, another output
    m = model.size_multiple
    g1, g2 = runtime.onnx_bytes(model, m), runtime.onnx_bytes(other, m)
    assert g1 != g2
    rng = np.random.default_rng(3)
    x = rng.random((1, 3, 96, 128), dtype=np.float32)
    return {"graph": g1, "other": g2, "multiple": m, "x": x}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HZSR_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "openvino"


def _runner(graph: bytes, g: dict, threads: int = 1, name: str = "openvino"):
    return runtime.graph_runner(graph, g["multiple"], name, threads)


def _entry(cache_dir):
    (side,) = cache_dir.glob("*.json")
    return side.with_suffix(".blob"), side


@pytest.mark.parametrize("name", ["openvino", "openvino-bf16"])
def test_hit_runs_the_same_network_as_a_compile(graphs, cache, name):
    first = _runner(graphs["graph"], graphs, name=name)
    assert first.cache == "miss"
    blob, side = _entry(cache)
    info = json.loads(side.read_text())
    assert info["blob_sha256"] == hashlib.sha256(blob.read_bytes()).hexdigest()
    second = _runner(graphs["graph"], graphs, name=name)
    assert second.cache == "hit"
    x = graphs["x"]
    assert np.array_equal(first(x), second(x))  # bit for bit: the same compiled kernels
    # What it computes in survives the cache; on an AVX-512 BF16 CPU the bf16 runtime says bf16
    # (OpenVINO prints the hint as <Type: 'bfloat16'>: test_precision_names_of_openvino_hints).
    assert second.precision == first.precision
    import openvino

    bf16_cpu = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert first.precision == ("bf16" if name == "openvino-bf16" and bf16_cpu else "f32")


def test_key_covers_graph_config_openvino_and_cpu(graphs, monkeypatch):
    cfg = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}
    key = runtime._blob_key(graphs["graph"], None, cfg, "2026.4.1")
    assert key == runtime._blob_key(graphs["graph"], None, dict(reversed(list(cfg.items()))), "2026.4.1")
    others = {runtime._blob_key(graphs["other"], None, cfg, "2026.4.1"),
              runtime._blob_key(graphs["graph"], b"weights", cfg, "2026.4.1"),
              runtime._blob_key(graphs["graph"], None, {**cfg, "NUM_STREAMS": 2}, "2026.4.1"),
              runtime._blob_key(graphs["graph"], None, {**cfg, "INFERENCE_PRECISION_HINT": "bf16"}, "2026.4.1"),
              runtime._blob_key(graphs["graph"], None, cfg, "2026.5.0")}
    monkeypatch.setattr(runtime, "_cpu_identity", lambda: "x86_64\nanother CPU\nfpu sse2\ncores 2 2")
    others.add(runtime._blob_key(graphs["graph"], None, cfg, "2026.4.1"))
    assert key not in others and len(others) == 6


def test_each_graph_and_thread_count_has_its_own_entry(graphs, cache):
    assert _runner(graphs["graph"], graphs).cache == "miss"
    assert _runner(graphs["other"], graphs).cache == "miss"
    assert _runner(graphs["graph"], graphs, threads=2).cache == "miss"
    assert len(list(cache.glob("*.blob"))) == 3
    assert [_runner(g, graphs, t).cache for g, t in ((graphs["graph"], 1), (graphs["other"], 1),
                                                     (graphs["graph"], 2))] == ["hit"] * 3


def _expected(graphs, graph: bytes) -> np.ndarray:
    """The network's output compiled by OpenVINO directly, no cache involved."""
    core = runtime._ov_core()
    cfg = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32",
           "ENABLE_CPU_PINNING": False}
    compiled = core.compile_model(core.read_model(graph), "CPU", cfg)
    return next(iter(compiled.create_infer_request().infer({0: graphs["x"]}).values())).copy()


@pytest.mark.parametrize("damage", ["flipped_byte", "appended", "truncated", "garbage_with_matching_sidecar"])
def test_damaged_entry_is_rebuilt_not_run(graphs, cache, damage):
    _runner(graphs["graph"], graphs)
    blob, side = _entry(cache)
    data = bytearray(blob.read_bytes())
    if damage == "flipped_byte":  # bit rot in the weights: the sidecar's sha256 no longer matches
        data[len(data) // 2] ^= 0xFF
    elif damage == "appended":  # bytes OpenVINO's import would ignore: still not the file that was written
        data += b"\0" * 64
    elif damage == "truncated":  # a torn write
        data = data[: len(data) // 3]
    else:  # a blob OpenVINO cannot import, with a sidecar that agrees with it
        data = bytearray(b"not a compiled model" * 100)
        info = json.loads(side.read_text())
        info.update(blob_bytes=len(data), blob_sha256=hashlib.sha256(bytes(data)).hexdigest())
        side.write_text(json.dumps(info))
    blob.write_bytes(bytes(data))
    r = _runner(graphs["graph"], graphs)
    assert r.cache == "rebuilt"
    assert np.array_equal(r(graphs["x"]), _expected(graphs, graphs["graph"]))
    assert _runner(graphs["graph"], graphs).cache == "hit"  # the entry was written again, whole


def test_entry_under_the_wrong_key_is_rebuilt(graphs, cache):
    """Another network's intact entry copied under this graph's key: OpenVINO would import it
    happily and run the other network; the sidecar names the key it was written for."""
    _runner(graphs["other"], graphs)
    blob, side = _entry(cache)
    _runner(graphs["graph"], graphs)
    (mine,) = [p for p in cache.glob("*.json") if p != side]
    mine.write_text(side.read_text())
    mine.with_suffix(".blob").write_bytes(blob.read_bytes())
    r = _runner(graphs["graph"], graphs)
    assert r.cache == "rebuilt"
    got = r(graphs["x"])
    assert np.array_equal(got, _expected(graphs, graphs["graph"]))
    assert not np.array_equal(got, _expected(graphs, graphs["other"]))


def test_entry_that_now_computes_otherwise_is_rebuilt(graphs, cache):
    """An intact entry whose imported model no longer gives the probe output recorded when it was
    compiled (what an OpenVINO build or CPU the key does not tell apart could do) is not used."""
    _runner(graphs["graph"], graphs)
    _, side = _entry(cache)
    info = json.loads(side.read_text())
    info["probe_sha256"] = hashlib.sha256(b"another output").hexdigest()
    side.write_text(json.dumps(info))
    r = _runner(graphs["graph"], graphs)
    assert r.cache == "rebuilt"
    assert np.array_equal(r(graphs["x"]), _expected(graphs, graphs["graph"]))
    assert json.loads(side.read_text())["probe_sha256"] != info["probe_sha256"]  # rewritten from the compile


def test_no_cpu_identity_means_no_cache(graphs, cache, monkeypatch):
    monkeypatch.setattr(runtime, "_cpu_identity", lambda: None)
    assert [_runner(graphs["graph"], graphs).cache for _ in range(2)] == ["off", "off"]
    assert not cache.exists() or not list(cache.iterdir())


def test_unwritable_cache_only_costs_the_compile(graphs, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("HZSR_CACHE", str(blocker))
    r = _runner(graphs["graph"], graphs)
    assert r.cache == "miss"
    assert np.array_equal(r(graphs["x"]), _expected(graphs, graphs["graph"]))


def test_precision_names_of_openvino_hints():
    """OpenVINO 2026 prints the hint as ``<Type: 'bfloat16'>``: a substring test for "bf16" alone
    called every bf16 model "f32" (what OUT.json's ``runtime_precision`` said on AVX-512 BF16 CPUs)."""
    assert runtime._precision_name("<Type: 'bfloat16'>") == "bf16"
    assert runtime._precision_name("bf16") == "bf16"
    assert runtime._precision_name("<Type: 'float16'>") == "f16"
    assert runtime._precision_name("<Type: 'float32'>") == "f32"
