"""``hzsr model export``: the fusion UNet as ONNX, checked against torch with onnxruntime.

The graph takes ``x: N x 3 x H x W`` float32 (Y_src, warped Y_ref, M_occ) and returns
``y: N x 1 x H x W``, with H and W dynamic (multiples of 16, as the UNet needs); alignment,
blending and tiling stay on the host, as on a phone where the UNet runs on the GPU or NPU.
It uses the TorchScript-based exporter (``dynamo=False``), which needs only ``onnx``.

The file describes itself (``onnx_metadata``): each input and output has a ``doc_string`` (its
channels, range and shape rules), and the model's ``metadata_props`` (what onnxruntime's
``get_modelmeta().custom_metadata_map`` returns) hold the same descriptions plus the UNet's
config, the pipeline config the checkpoint was trained for, and the checkpoint's sha256.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hzsr.baseline_model.checkpoint import load_model
from hzsr.core.errors import ModelError

TOLERANCE = 1e-4
INPUT_DOC = ("x: float32 N x 3 x H x W, H and W multiples of 16; channel 0 Y_src (the source W's luminance on "
             "the T grid, in [0, 1]), 1 the reference T's luminance warped onto it and colour-matched ([0, 1]), "
             "2 M_occ (1 where the reference cannot be trusted, [0, 1])")
OUTPUT_DOC = "y: float32 N x 1 x H x W, the fused luminance in [0, 1] on the source's grid; chroma stays the source's"


def onnx_metadata(lc: Any) -> dict[str, str]:
    """``metadata_props`` of an exported checkpoint (all values strings, as ONNX requires)."""
    import json

    from hzsr.core.fileio import sha256_file

    return {"hzsr.format": "hzsr-fusion-unet", "hzsr.input.x": INPUT_DOC, "hzsr.output.y": OUTPUT_DOC,
            "hzsr.unet": json.dumps(lc.raw.get("unet"), sort_keys=True),
            "hzsr.pipeline": json.dumps(lc.pipeline, sort_keys=True, default=str),
            "hzsr.checkpoint_sha256": sha256_file(lc.path), "hzsr.checkpoint_step": str(lc.raw.get("step", ""))}


def _describe(path: Path, lc: Any) -> None:
    """Add the docs and metadata to the exported file in place (before it is renamed into view)."""
    import onnx

    m = onnx.load(str(path))
    docs = {"x": INPUT_DOC, "y": OUTPUT_DOC}
    for v in (*m.graph.input, *m.graph.output):
        if v.name in docs:
            v.doc_string = docs[v.name]
    m.doc_string = "hzsr fusion UNet (docs/model.md): " + INPUT_DOC + "; " + OUTPUT_DOC
    for k, val in onnx_metadata(lc).items():
        p = m.metadata_props.add()
        p.key, p.value = k, val
    onnx.save(m, str(path))


def onnx_matches_torch(model: torch.nn.Module, onnx_path: str | Path, size: tuple[int, int] = (160, 224),
                       seed: int = 0) -> float:
    """Max |onnxruntime - torch| on one random input of ``size`` (H, W): a size unlike the export's."""
    import onnxruntime as ort

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, *size, generator=g)
    with torch.inference_mode():
        ref = model(x).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    return float(np.abs(got - ref).max())


def export_onnx(ckpt: str | Path | None, onnx_path: str | Path, *, check: bool = True,
                opset: int = 17) -> dict[str, Any]:
    """Export a checkpoint's UNet to ``onnx_path`` (written atomically); optionally check it."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ModelError("the onnx package is not installed; pip install 'hzsr[train]'", field="--out") from None
    lc = load_model(ckpt)
    model = lc.model.eval()
    out = Path(onnx_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    x = torch.rand(1, 3, 64, 96)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model, (x,), str(tmp), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}},
                          opset_version=opset, dynamo=False)
    _describe(tmp, lc)
    tmp.replace(out)
    res: dict[str, Any] = {"onnx": str(out), "checkpoint": str(lc.path), "opset": opset, "max_abs_diff": None}
    if check:
        diff = onnx_matches_torch(model, out)
        res.update(max_abs_diff=diff, check_size=[160, 224], tolerance=TOLERANCE)
        if not diff <= TOLERANCE:
            raise ModelError(f"onnxruntime differs from torch by {diff:.2e} (> {TOLERANCE:g})", file=out)
    return res
