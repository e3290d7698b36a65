"""CPU time of ONE UNet tile (832x832: the 768 core plus 32-pixel halos) per runtime, one thread.

Speed only: how much each way of running the shipped UNet costs per tile, in interleaved rounds
(median), including int8 ways that ``hzsr/baseline_model/runtime.py`` does not offer (it offers
``openvino-int8``, the ``ov_int8_nncf`` row, as an option, not the default):

- ``ort_f32``: ONNX Runtime, float32, NCHWc off (the ``onnxruntime`` runtime);
- ``ort_int8``: ONNX Runtime on the graph quantized by ``onnxruntime.quantization.quantize_static``
  (QDQ, uint8 activations, per-channel int8 weights);
- ``ov_f32``, ``ov_bf16``: OpenVINO with one dynamic-shape model (the ``openvino`` and
  ``openvino-bf16`` runtimes);
- ``ov_int8_dynamic``, ``ov_int8_static``: OpenVINO on the same QDQ graph, dynamic shapes or
  reshaped to the tile's shape; ``ov_static_compile_s`` is what compiling and warming up one more
  static shape costs (an image has 3-4 tile shapes);
- ``ov_int8_nncf``: the shipped checkpoint's own int8 graph (``weights/shipped.int8.xml``, NNCF,
  calibrated on training captures: ``hzsr/baseline_model/quantize.py``), as the ``openvino-int8``
  runtime runs it (dynamic shapes);
- ``ov_int8_LABEL``: another checkpoint's int8 graph (``--int8-ckpt LABEL=CKPT``, e.g. a scratch copy
  quantized with another recipe), the same way.

``cpu_vs_ort_f32`` and ``cpu_vs_ov_f32`` are medians of the per-round ratios (paired).

The calibration inputs of the QDQ graph are synthetic (smooth luminance, a noisy copy as the reference,
a sparse occlusion mask; seed 0): they fix the quantization ranges, which do not change the speed.
What int8 does to the output is measured by ``bench/infer_quality.py``.

Usage: ``python bench/unet_runtimes.py [--rounds 5] [--int8-ckpt LABEL=CKPT ...]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HZSR_TORCH_THREADS", "1")
from hzsr.baseline_model.threads import apply  # noqa: E402

apply()

import cv2  # noqa: E402
import onnxruntime as ort  # noqa: E402
import openvino as ov  # noqa: E402
from _timing import interleaved  # noqa: E402

from hzsr.baseline_model.checkpoint import load_model, shipped_checkpoint_path  # noqa: E402
from hzsr.baseline_model.config import pipeline_config_of  # noqa: E402
from hzsr.baseline_model.runtime import int8_graph, onnx_bytes  # noqa: E402

SIDE = 832


def _inputs(n: int, side: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y = cv2.GaussianBlur(rng.random((side, side)).astype(np.float32), (0, 0), 3)
        y = (y - y.min()) / (y.max() - y.min())
        ref = np.clip(y + 0.02 * rng.standard_normal((side, side)).astype(np.float32), 0, 1)
        occ = (rng.random((side, side)) > 0.9).astype(np.float32)
        out.append(np.stack([y, ref, occ])[None])
    return out


def _quantize(fp32: Path, out: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([{"x": x} for x in _inputs(4, 256, 0)])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    pre = out.with_name("pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--int8-ckpt", action="append", default=[], metavar="LABEL=CKPT",
                    help="also time CKPT's int8 graph (hzsr model quantize --ckpt CKPT) as row ov_int8_LABEL")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hzsr-unet-rt-"))
    fp32, int8 = tmp / "fp32.onnx", tmp / "int8.onnx"
    fp32.write_bytes(onnx_bytes(load_model(None).model.eval()))
    _quantize(fp32, int8)
    x = _inputs(1, SIDE, 1)[0]

    def ort_run(path: Path, disabled: list[str]):
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.enable_mem_pattern = False
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        return lambda: s.run(None, {"x": x})

    core = ov.Core()

    def ov_run(path: Path, precision: str, static: bool):
        m = core.read_model(str(path))
        return ov_compiled(m, precision, static)

    def ov_compiled(m, precision: str, static: bool):
        if static:
            m.reshape({"x": list(x.shape)})
        req = core.compile_model(m, "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False,
                                            "INFERENCE_PRECISION_HINT": precision}).create_infer_request()
        return lambda: req.infer({0: x})

    runs = {"ort_f32": ort_run(fp32, ["NchwcTransformer"]), "ort_int8": ort_run(int8, []),
            "ov_f32": ov_run(fp32, "f32", False), "ov_bf16": ov_run(fp32, "bf16", False),
            "ov_int8_dynamic": ov_run(int8, "f32", False), "ov_int8_static": ov_run(int8, "f32", True)}
    def cfg_of(path) -> object:  # the pipeline settings the checkpoint's int8 graph must be calibrated under
        lc = load_model(path)
        return pipeline_config_of(lc.pipeline, str(lc.path))

    shipped = int8_graph(shipped_checkpoint_path(), cfg_of(None))
    if shipped is not None:
        runs["ov_int8_nncf"] = ov_compiled(core.read_model(shipped.xml.decode(), ov.Tensor(np.frombuffer(
            shipped.weights, np.uint8))), "f32", False)
    for spec in a.int8_ckpt:
        label, _, path = spec.partition("=")
        g = int8_graph(path, cfg_of(path)) if path else None
        if g is None:
            sys.exit(f"--int8-ckpt {spec}: no current int8 graph made from {path or '(no CKPT)'} (LABEL=CKPT)")
        runs[f"ov_int8_{label}"] = ov_compiled(core.read_model(g.xml.decode(), ov.Tensor(np.frombuffer(
            g.weights, np.uint8))), "f32", False)
    for f in runs.values():
        f()  # first call per shape: plans and caches, not the steady state
    load0 = os.getloadavg()[0]
    cpu = interleaved(runs, a.rounds, clock=time.process_time)
    c = time.process_time()
    ov_run(int8, "f32", True)()
    static_compile = time.process_time() - c
    med = {k: statistics.median(v) for k, v in cpu.items()}
    print(json.dumps({"benchmark": "unet_tile_runtimes", "tile": [SIDE, SIDE], "rounds": a.rounds,
                      "load_avg_1m_before": load0, "load_avg_1m_after": os.getloadavg()[0],
                      "cpu_s_per_tile_median": {k: round(v, 4) for k, v in med.items()},
                      "cpu_vs_ort_f32": {k: round(statistics.median(b / o for b, o in zip(cpu[k], cpu["ort_f32"],
                                                                                          strict=True)), 3)
                                         for k in cpu},
                      # Paired against OpenVINO float32 (what openvino-bf16 runs on a CPU without bf16).
                      "cpu_vs_ov_f32": {k: round(statistics.median(b / o for b, o in zip(cpu[k], cpu["ov_f32"],
                                                                                         strict=True)), 3)
                                        for k in cpu},
                      "ov_static_compile_s": round(static_compile, 3)}, indent=1))


if __name__ == "__main__":
    main()
