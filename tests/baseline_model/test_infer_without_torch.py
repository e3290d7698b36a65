"""``hzsr model infer`` with an ONNX runtime and a cached graph never imports torch (issue 19, item 2).

Importing torch is 0.5 s of a 12 MP image's 3 s on two idle cores; ``runtime.checkpoint_graph``
caches the checkpoint's ONNX graph by the checkpoint FILE's hash, so a warm run needs no torch. The
checks ``load_model`` makes (issue 20 item 9: non-finite weights refused) must still hold.
"""

import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np

from hzsr.baseline_model.checkpoint import read_checkpoint, save_checkpoint
from hzsr.cli import main

_RUN = """
import json, sys
from hzsr.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules, "pandas": "pandas" in sys.modules}))
"""


def _infer(args, cache):
    env = {**os.environ, "HZSR_CACHE": str(cache)}
    r = subprocess.run([sys.executable, "-c", _RUN, *args], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_warm_infer_does_not_import_torch_and_gives_the_same_image(tiny_run, tiny_session, tmp_path):
    cap = tiny_session / "captures" / "c00002"
    cache = tmp_path / "cache"
    outs = []
    for name in ("cold", "warm"):
        out = tmp_path / f"{name}.png"
        res = _infer(["model", "infer", str(cap / "main_W.jpg"), "--ref", str(cap / "ref_T.jpg"),
                      "--meta", str(cap / "capture.json"), "--ckpt", str(tiny_run / "model.pt"),
                      "--runtime", "openvino-bf16", "--tile", "64", "--threads", "2", "--out", str(out)], cache)
        info = json.loads((tmp_path / f"{name}.png.json").read_text())
        outs.append(cv2.imread(str(out), cv2.IMREAD_UNCHANGED))
        assert res["rc"] == 0 and info["runtime"] == "openvino-bf16" and info["threads"] == 2
        assert info["runtime_precision"] in ("bf16", "f32")  # f32 on a CPU without BF16
        if name == "cold":  # exported now: torch loaded the checkpoint
            assert res["torch"] and info["graph_cached"] is False
        else:
            assert info["graph_cached"] is True
            assert not res["torch"] and not res["pandas"], res
    assert np.array_equal(outs[0], outs[1])  # the cached graph is the same network


def test_cached_graph_keeps_the_checkpoint_checks(tiny_run, tiny_session, tmp_path, monkeypatch, capsys):
    """A checkpoint that ``load_model`` refuses gets no cache entry, also after a good one was cached."""
    from hzsr.baseline_model.runtime import checkpoint_graph

    monkeypatch.setenv("HZSR_CACHE", str(tmp_path / "cache"))
    raw = read_checkpoint(tiny_run / "model.pt")
    payload = {k: v for k, v in raw.items() if k not in ("format", "version")}
    good = save_checkpoint(tmp_path / "good.pt", payload)
    assert checkpoint_graph(good).cached is False
    assert checkpoint_graph(good).cached is True  # the entry
    name = next(k for k, v in raw["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    raw["state_dict"][name].view(-1)[1] = math.nan  # the same file but for one weight
    bad = save_checkpoint(tmp_path / "bad.pt", payload)
    cap = tiny_session / "captures" / "c00002"
    for _ in range(2):  # and again: nothing was cached for it the first time
        capsys.readouterr()
        rc = main(["model", "infer", str(cap / "main_W.jpg"), "--ref", str(cap / "ref_T.jpg"), "--ckpt", str(bad),
                   "--runtime", "openvino-bf16", "--out", str(tmp_path / "o.png")])
        err = capsys.readouterr().err.strip()
        assert rc == 1 and "non-finite" in err and f"state_dict.{name}" in err and err.count("\n") == 0
        assert not (tmp_path / "o.png").exists()
    assert len(list((tmp_path / "cache" / "onnx").glob("ckpt-*.json"))) == 1


def test_openvino_runs_one_stream_per_tile_in_flight(tiny_run):
    """A synchronous OpenVINO ``infer`` locks its stream's graph: one stream per tile thread, or the
    tiles' networks run one at a time (issue 19: 2.2 s of UNet took 2.2 s of wall on two cores)."""
    from hzsr.baseline_model.checkpoint import load_model
    from hzsr.baseline_model.runtime import graph_runner, onnx_bytes

    model = load_model(tiny_run / "model.pt").model
    graph = onnx_bytes(model, model.size_multiple)
    for threads in (1, 2):
        r = graph_runner(graph, model.size_multiple, "openvino-bf16", threads)
        streams = min(threads, os.cpu_count() or 1)  # OpenVINO runs no more streams than cores
        assert r.tiles_in_flight == threads
        assert int(r.compiled.get_property("NUM_STREAMS")) == streams
        assert int(r.compiled.get_property("INFERENCE_NUM_THREADS")) == streams  # one thread per stream
