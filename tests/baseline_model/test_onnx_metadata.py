"""The exported ONNX file describes its input and output, and says which checkpoint it came from."""

from __future__ import annotations

import json

import pytest

from hzsr.core.fileio import sha256_file


def test_onnx_inputs_and_outputs_are_described(tiny_run, tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from hzsr.baseline_model.export import INPUT_DOC, OUTPUT_DOC, export_onnx

    out = tmp_path / "m.onnx"
    export_onnx(tiny_run / "model.pt", out, check=False)
    m = onnx.load(str(out))
    assert {v.name: v.doc_string for v in m.graph.input} == {"x": INPUT_DOC}
    assert {v.name: v.doc_string for v in m.graph.output} == {"y": OUTPUT_DOC}
    meta = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert meta["hzsr.input.x"] == INPUT_DOC and meta["hzsr.output.y"] == OUTPUT_DOC
    assert meta["hzsr.checkpoint_sha256"] == sha256_file(tiny_run / "model.pt")
    assert json.loads(meta["hzsr.unet"])["widths"] == [4, 4, 8, 8, 8]
    assert json.loads(meta["hzsr.pipeline"])["flow_backend"] == "dis"
