"""``hzsr model quantize``: the fusion UNet of a checkpoint as an int8 OpenVINO graph, calibrated on training captures.

Post-training quantization with NNCF (``nncf.quantize``, OpenVINO backend): the checkpoint's ONNX
graph (``runtime.checkpoint_graph``) gets int8 weights (per output channel) and int8 activations
whose ranges are the minima and maxima the UNet sees on the calibration inputs: the exact input
windows ``tiling.run_tiled`` feeds it (Y_src, warped and colour-matched Y_ref, M_occ) when the
pipeline fuses each capture of the given sessions. The weights are not retrained or changed
beyond their int8 rounding; the checkpoint is not touched.

What stays in float32 (``float_ops``), as measured on the held-out pool (``docs/benchmarks.md``):

- the elementwise arithmetic outside the convolutions: the input re-expression
  (``Y_src - 1/2``, ``~Y_ref - Y_src``), the no-network base ``Y_src + (1 - M_occ)(~Y_ref - Y_src)``
  and the final sum ``base + head``. NNCF quantizes their inputs by default, which rounds the
  output itself to steps of about one 8-bit level, for no speed (they are not convolutions):
  0.05-0.07 dB on average with them quantized;
- the first convolution, whose input holds the reference's extra detail (``~Y_ref - Y_src``, a
  few levels) beside ``Y_src - 1/2`` (a range of 1): one int8 scale for both rounds the detail;
- the head, which sees those inputs again and writes the residual.

Weights are symmetric, activations asymmetric (NNCF's ``MIXED`` preset: the LeakyReLU outputs are
mostly positive, so a zero point spends the 256 levels on the range that occurs).

Calibration data must come from the training pool: a simulated capture of the held-out texture
pool (scene tag ``textures-eval``, ``bench/_data.py``'s EVAL_SEEDS) is refused, so the int8 graph
is never fitted to the data it is judged on.

The graph is written beside the checkpoint (``runtime.int8_paths``: ``CKPT.int8.xml``, ``.bin``,
``.json``); the sidecar records the checkpoint's sha256, the pipeline settings the inputs were
gathered under (``runtime.pipeline_digest``) and ``RECIPE_VERSION``, so the graph of a retrained
checkpoint, of changed pipeline settings or of an older recipe is stale and never run
(``runtime.int8_check``); ``make int8`` re-makes the shipped one. Running it needs OpenVINO only;
making it needs ``nncf``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hzsr.core.errors import ConfigError
from hzsr.core.fileio import atomic_write_bytes

#: Convolutions left in float32 (friendly names in the graph ``torch.onnx.export`` writes).
FLOAT_CONVS = ("/enc.0/enc.0.0/enc.0.0.0/Conv/WithoutBiases", "/head/Conv/WithoutBiases")
#: The level-0 decoder's first convolution: the candidate that also stays float (``--float-conv``, issue 19).
DEC0_CONV = "/dec.0/dec.0.0/dec.0.0.0/Conv/WithoutBiases"
#: Bump when the recipe (what stays float, the preset, how inputs are gathered) or the sidecar's
#: meaning changes: a graph of another recipe version is stale (``runtime.int8_check``).
#: 2: the sidecar records the pipeline settings the graph was calibrated under (``pipeline_sha256``).
RECIPE_VERSION = 2


def float_ops(model: Any, extra_convs: tuple[str, ...] = ()) -> list[str]:
    """Names of the ops of the OpenVINO ``model`` that stay in float32: ``FLOAT_CONVS``, ``extra_convs`` and the
    elementwise arithmetic that is not a convolution's bias (see the module's docstring).

    Raises:
        ValueError: a name of ``FLOAT_CONVS`` or ``extra_convs`` is not in the graph (the export's naming changed,
            or a mistyped ``--float-conv``).
    """
    names = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    convs = list(dict.fromkeys((*FLOAT_CONVS, *extra_convs)))
    missing = [n for n in convs if n not in names]
    if missing:
        raise ValueError(f"the UNet's graph has no {missing[0]}: update quantize.FLOAT_CONVS or --float-conv")
    out = convs
    for name, op in names.items():
        if op.get_type_name() in ("Add", "Subtract", "Multiply") and not any(
                v.get_node().get_type_name() == "Convolution" for v in op.input_values()):
            out.append(name)
    return out


def _captures(sessions: list[Path]) -> list[Path]:
    out = []
    for s in sessions:
        root = Path(s) / "captures"
        if not root.is_dir():
            raise ConfigError("not a session folder (no captures/)", file=s, field="SESSION")
        out += sorted(p for p in root.iterdir() if (p / "capture.json").is_file())
    if not out:
        raise ConfigError("no captures with capture.json in the given sessions", field="SESSION")
    return out


def calibration_inputs(sessions: list[Path], graph: Any, limit: int | None = None,
                       cfg: Any = None) -> list[np.ndarray]:
    """The UNet's input windows (``1 x 3 x H x W`` float32) when the pipeline fuses the sessions' captures.

    ``graph``: the checkpoint's ``runtime.CheckpointGraph`` (its pipeline config and float graph, run by
    OpenVINO in float32 to fuse each capture). At most ``limit`` captures (default: all).

    Raises:
        ConfigError: a capture of the held-out texture pool (``textures-eval``), or unreadable input.
    """
    from hzsr.baseline_model.config import pipeline_config_of
    from hzsr.baseline_model.infer import read_meta, read_rgb
    from hzsr.baseline_model.pipeline import HZSRPipeline
    from hzsr.baseline_model.runtime import _NumpyRunner, graph_runner

    f32 = graph_runner(graph.onnx, graph.size_multiple, "openvino", 1)
    tiles: list[np.ndarray] = []

    class _Recorder(_NumpyRunner):
        size_multiple = graph.size_multiple

        def run(self, x: np.ndarray) -> np.ndarray:
            tiles.append(np.array(x, np.float32, copy=True))
            return f32.run(x)

    if limit is not None and limit < 1:
        raise ConfigError(f"must be at least 1, got {limit}", field="--limit")
    if cfg is None:
        cfg = pipeline_config_of(graph.pipeline, "checkpoint")
    pipe = HZSRPipeline(None, cfg, "cpu", "openvino", runner=_Recorder())
    caps = _captures(sessions)[:limit]
    metas = [read_meta(cap / "capture.json") for cap in caps]
    for cap, meta in zip(caps, metas, strict=True):  # every capture checked before the first is fused
        if "textures-eval" in (meta.get("scene_tags") or []):
            raise ConfigError("a held-out (textures-eval) capture: calibrate on training captures only",
                              file=cap / "capture.json", field="scene_tags")
    for cap, meta in zip(caps, metas, strict=True):
        al = pipe.align(read_rgb(cap / "main_W.jpg", "main_W.jpg"), read_rgb(cap / "ref_T.jpg", "ref_T.jpg"), meta)
        pipe.fuse(al)
    return tiles


def quantize_checkpoint(ckpt: str | Path, sessions: list[Path], *, limit: int | None = None,
                        float_convs: tuple[str, ...] = ()) -> dict[str, Any]:
    """Quantize checkpoint ``ckpt``'s UNet on the captures of ``sessions``; write ``CKPT.int8.*``; return the sidecar.

    ``float_convs``: convolutions kept in float32 besides ``FLOAT_CONVS`` (e.g. ``DEC0_CONV``); the sidecar's
    ``float_ops`` lists every op that stayed float.

    Raises:
        ConfigError: NNCF is not installed, a name of ``float_convs`` is not in the graph, or bad calibration
            input (``calibration_inputs``).
        ModelError: the checkpoint is unreadable or refused (``checkpoint.load_model``).
    """
    try:
        import nncf
    except ImportError:
        raise ConfigError("NNCF is not installed: pip install nncf (see constraints.txt)",
                          field="hzsr model quantize", unreadable=True) from None

    import openvino as ov

    from hzsr.baseline_model.config import pipeline_config_of
    from hzsr.baseline_model.runtime import _ov_core, checkpoint_graph, int8_paths, pipeline_digest, pipeline_settings

    ckpt = Path(ckpt)
    data = ckpt.read_bytes()
    graph = checkpoint_graph(ckpt)
    cfg = pipeline_config_of(graph.pipeline, str(ckpt))  # what the tiles are fused with, and what the sidecar hashes
    tiles = calibration_inputs(sessions, graph, limit, cfg)
    model = _ov_core().read_model(graph.onnx)
    try:
        keep = float_ops(model, tuple(float_convs))
    except ValueError as e:
        raise ConfigError(str(e), field="--float-conv") from None
    q = nncf.quantize(model, nncf.Dataset(tiles), subset_size=len(tiles),
                      preset=nncf.QuantizationPreset.MIXED, ignored_scope=nncf.IgnoredScope(names=keep))
    xml_p, bin_p, side_p = int8_paths(ckpt)
    with tempfile.TemporaryDirectory() as tmp:
        ov.save_model(q, str(Path(tmp) / "m.xml"), compress_to_fp16=False)
        xml, weights = (Path(tmp) / "m.xml").read_bytes(), (Path(tmp) / "m.bin").read_bytes()
    side = {"checkpoint": ckpt.name, "checkpoint_sha256": hashlib.sha256(data).hexdigest(),
            "xml_sha256": hashlib.sha256(xml).hexdigest(), "bin_sha256": hashlib.sha256(weights).hexdigest(),
            "recipe_version": RECIPE_VERSION, "float_ops": keep, "preset": "mixed",
            # The UNet's inputs, and so the activation ranges, depend on these: inference under
            # other settings finds the graph stale (runtime.int8_check).
            "pipeline_sha256": pipeline_digest(cfg), "pipeline": pipeline_settings(cfg),
            "nncf": nncf.__version__, "openvino": ov.__version__,
            "calibration": {"sessions": [Path(s).name for s in sessions], "captures": len(_captures(sessions)[:limit]),
                            "tiles": len(tiles)}}
    # The sidecar last: it names the other two's hashes, so a torn write is never taken for a graph.
    atomic_write_bytes(xml_p, xml)
    atomic_write_bytes(bin_p, weights)
    atomic_write_bytes(side_p, (json.dumps(side, indent=1) + "\n").encode())
    return {**side, "files": [str(xml_p), str(bin_p), str(side_p)]}
