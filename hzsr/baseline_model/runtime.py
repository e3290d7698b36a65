"""Where the fusion UNet runs during tiled inference: OpenVINO, ONNX Runtime or torch.

All take and return the same tensors (``N x 3 x H x W`` float32 in, ``N x 1 x H x W`` out). The
default on CPU is the first of ``CPU_PREFERENCE`` that runs here, the order chosen by
``bench/infer.py`` (paired, same capture) and ``bench/infer_quality.py`` (what each does to the
output, on the held-out pool against the ideal target); figures in ``docs/benchmarks.md``:

- ``openvino-int8`` (an option, not the default; where the checkpoint has its int8 graph,
  ``int8_graph``; the shipped one has): the checkpoint's UNet quantized post-training by NNCF
  (``quantize.py``: int8 weights and activations of the convolutions, calibrated on training
  captures; the first convolution, the head and the elementwise arithmetic in float32), as an
  OpenVINO IR beside the checkpoint, run by OpenVINO's CPU plugin. On an AVX2 CPU without VNNI or
  bf16 (this project's 2-core VM) 1.5x less CPU per tile than float32; against the ideal target
  0.020 dB below float32 on average on the calibration pool (seeds 31-36, where the recipe was
  chosen; worst kind moving 0.030) and 0.018 on the held-out pool (0.059 dB on moving scenes);
  the image moves most where the network repaints occluded areas of moving scenes (up to tens of
  8-bit levels there, on about 0.25 % of their pixels), elsewhere by one or two levels in the
  captures checked. Not the default: the default may lose at most 0.05 dB
  on every scene kind (``bench/infer_quality.py``'s rule) on both pools, and held-out moving
  scenes lose 0.059 (``docs/benchmarks.md``, tenth pass). The graph is current only for this
  checkpoint's bytes, the pipeline settings it was calibrated under and this quantize recipe
  (``int8_check``); a stale one is never run.
- ``openvino-bf16``: the UNet's ONNX graph
  compiled by OpenVINO's CPU plugin (oneDNN kernels, activations fused into the convolutions),
  computing in bfloat16 on CPUs with AVX-512 BF16 (elsewhere OpenVINO runs it in float32). About
  2.3x less CPU per tile than ``onnxruntime``; the output moves by at most one 8-bit level (about
  1.5 % of the values of a 12 MP image): mean Y PSNR against the ideal target within 0.002 dB of
  float32 on every scene kind.
- ``openvino``: the same in float32: agrees with the others to float rounding (``export.TOLERANCE``).
- ``onnxruntime`` (the default where OpenVINO is not installed): the UNet exported in memory
  (``torch.onnx.export``, as ``hzsr model export`` does), run by ONNX Runtime's CPU provider, spinning off (the ONNX
  Runtime equivalent of passive waiting); its graph optimiser fuses each convolution with its
  LeakyReLU; its NCHWc layout is off (see ``_OnnxRuntime``).
- ``torch``: eager PyTorch with channels-last weights and inputs (oneDNN's preferred layout,
  2.5x less CPU than NCHW here). The only choice on CUDA.

The CPU runtimes turn the thread policy's N threads (``threads.py``) into N tiles in flight, one
thread each (``tiles_in_flight``; ``tiling.run_tiled(workers=)``). OpenVINO's compiled model is
cached on disk and checked before use (``_compiled_model``), and OpenVINO is imported without its
model converter and usage telemetry (``_import_openvino``).

Not offered: ``torch.compile`` (its first call compiles for tens of seconds, more than a 12 MP
image takes, and ``hzsr model infer`` runs one image per process); ONNX Runtime's int8
(``bench/unet_runtimes.py``): its static QDQ quantization of this UNet saves only 17 % of a
tile's CPU against its float32, as 3-32 channel convolutions keep its int8 kernels from their
width. OpenVINO's int8 graph keeps one dynamic-shape model: static shapes saved 3 % more per
tile, less than compiling the 3-4 tile shapes of an image costs.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import json
import os
import queue
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hzsr.core.fileio import atomic_write_bytes

if TYPE_CHECKING:
    import openvino
    import torch

#: Runtimes known to ``hzsr model infer --runtime``.
RUNTIMES = ("openvino", "openvino-bf16", "openvino-int8", "onnxruntime", "torch")
#: OpenVINO's inference precision per runtime name (``INFERENCE_PRECISION_HINT``); the int8 graph's
#: quantized convolutions run in int8 whatever the hint, the rest (resampling, concatenation, the
#: convolutions left in float) in float32.
_OV_PRECISION = {"openvino": "f32", "openvino-bf16": "bf16", "openvino-int8": "f32"}
#: Suffix of the quantized graph beside a checkpoint (``int8_graph``): ``shipped.pt`` ->
#: ``shipped.int8.xml`` + ``.bin`` (OpenVINO IR) + ``.json`` (what it was made from).
INT8_SUFFIX = ".int8"
#: Version of the cached graph of a checkpoint file (``checkpoint_graph``): bump it when the
#: export (opset, dynamic axes, input/output names) or the sidecar's fields change.
GRAPH_VERSION = 1
#: Version of the compiled-model cache's entries (``_compiled_model``): bump it when the key's
#: fields, the probe or the sidecar's fields change.
BLOB_VERSION = 1


def _torch_runner(model: torch.nn.Module) -> torch.nn.Module:
    """The torch runtime: channels-last inputs to a channels-last model (a torch module)."""
    import torch

    class _ChannelsLast(torch.nn.Module):
        def __init__(self, model: torch.nn.Module):
            super().__init__()
            self.m = model.to(memory_format=torch.channels_last)
            self.size_multiple = getattr(model, "size_multiple", 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.m(x.contiguous(memory_format=torch.channels_last))

    return _ChannelsLast(model)


def _cache_dir() -> Path:
    if os.environ.get("HZSR_CACHE"):
        return Path(os.environ["HZSR_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hzsr"


def _torch_version() -> str:
    """The installed torch's version, read from its metadata (importing torch costs 0.5-3 s)."""
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return "none"


def onnx_bytes(model: torch.nn.Module, multiple: int = 16) -> bytes:
    """The model as ONNX, from a cache keyed by its weights and the torch version (else exported).

    Exporting costs 1-3 s (mostly importing ``torch.onnx``), more than the runtime saves on one
    12 MP image, so each distinct network is exported once into ``$HZSR_CACHE`` (default
    ``~/.cache/hzsr``) /onnx/<sha256>.onnx, written atomically. An unwritable cache only costs the
    export again.
    """
    import torch

    h = hashlib.sha256(f"{torch.__version__} opset17 {type(model).__name__}".encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    path = _cache_dir() / "onnx" / f"{h.hexdigest()}.onnx"
    try:
        return path.read_bytes()
    except OSError:
        pass
    buf = io.BytesIO()
    x = torch.rand(1, 3, 2 * multiple, 2 * multiple)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model.eval(), (x,), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}},
                          opset_version=17, dynamo=False)
    data = buf.getvalue()
    try:
        atomic_write_bytes(path, data)
    except OSError:
        pass
    return data


@dataclass(frozen=True)
class CheckpointGraph:
    """What inference needs of a checkpoint when an ONNX runtime runs its UNet: no torch involved."""

    onnx: bytes  # the UNet as ONNX (``onnx_bytes``)
    size_multiple: int  # the UNet's input size multiple
    pipeline: dict[str, Any]  # the checkpoint's ``pipeline`` section (``config.pipeline_config_of``)
    sha256: str  # the cache key (see ``checkpoint_graph``)
    cached: bool  # True: read from the cache, torch not imported; False: exported now
    model: Any = None  # the loaded UNet when it was exported now (a torch module), else None


def checkpoint_graph(path: str | Path) -> CheckpointGraph:
    """The UNet of the checkpoint FILE ``path`` as ONNX, plus its pipeline section, without torch when cached.

    Importing torch takes 0.5 s of a 12 MP image's 3 s on idle cores (and 3 s under load), and
    an ONNX runtime (OpenVINO, ONNX Runtime) does not need it once the graph exists. So the cache
    (``$HZSR_CACHE/onnx/ckpt-<key>.onnx`` + ``.json``) is keyed by the sha256 of the checkpoint
    file's bytes, ``GRAPH_VERSION`` and the installed torch's version (as ``onnx_bytes``' key;
    read from its metadata); the JSON sidecar holds the few non-weight things inference reads (the
    pipeline section, the size multiple) and is written last, so a complete pair is the entry.

    The checks of ``checkpoint.load_model`` still hold for every file: an entry is written only
    after ``load_model`` accepted those exact bytes (format, version, the UNet's shape, weights that
    fit, and no non-finite weight: issue 20 item 9, a diverged run's checkpoint is refused, not
    inferred to a black image), and only if the file still hashes the same afterwards. A changed,
    corrupted or refused file has another hash, so it misses the cache and goes through
    ``load_model`` again (and is refused there). An unwritable cache only costs the export again.

    Raises:
        ModelError: the checkpoint is unreadable or refused (``checkpoint.load_model``).
    """
    from hzsr.core.errors import ModelError

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        data = None
    if data is not None:
        h = hashlib.sha256(f"hzsr-graph {GRAPH_VERSION} torch {_torch_version()} opset17\n".encode())
        h.update(data)
        key = h.hexdigest()
        base = _cache_dir() / "onnx" / f"ckpt-{key}"
        try:
            side = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
            onnx = base.with_suffix(".onnx").read_bytes()
            if side.get("sha256") == key and len(onnx) == side.get("onnx_bytes"):
                return CheckpointGraph(onnx, int(side["size_multiple"]), side.get("pipeline") or {}, key, True)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no entry (or a broken one): export again
    from hzsr.baseline_model.checkpoint import load_model

    lc = load_model(path)  # every check; raises ModelError naming the file
    multiple = int(getattr(lc.model, "size_multiple", 16))
    onnx = onnx_bytes(lc.model, multiple)
    if data is None:
        raise ModelError("checkpoint not readable", file=path, unreadable=True)
    try:
        if hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest():  # not rewritten meanwhile
            atomic_write_bytes(base.with_suffix(".onnx"), onnx)
            side = {"sha256": key, "graph_version": GRAPH_VERSION, "checkpoint": str(path),
                    "size_multiple": multiple, "pipeline": lc.pipeline, "onnx_bytes": len(onnx),
                    "checked": "checkpoint.load_model: format, version, unet shape, weights fit, all finite"}
            atomic_write_bytes(base.with_suffix(".json"), json.dumps(side, indent=1).encode())
    except OSError:
        pass
    return CheckpointGraph(onnx, multiple, lc.pipeline, key, False, lc.model)


@dataclass(frozen=True)
class Int8Graph:
    """The UNet of one checkpoint quantized to int8 (``quantize.py``): an OpenVINO IR, no torch needed."""

    xml: bytes  # the IR's graph
    weights: bytes  # the IR's .bin
    path: Path  # the .xml file
    info: dict[str, Any]  # its sidecar: the checkpoint's sha256, calibration, NNCF version


def int8_paths(ckpt: str | Path) -> tuple[Path, Path, Path]:
    """The quantized graph's files beside checkpoint ``ckpt``: ``.int8.xml``, ``.int8.bin``, ``.int8.json``."""
    base = Path(ckpt).with_suffix(INT8_SUFFIX)
    return base.with_suffix(INT8_SUFFIX + ".xml"), base.with_suffix(INT8_SUFFIX + ".bin"), \
        base.with_suffix(INT8_SUFFIX + ".json")


#: Fields of ``PipelineConfig`` left out of an int8 graph's pipeline digest (``pipeline_digest``): the
#: tiling, which ``hzsr model infer --tile/--halo`` may change per run without changing what the
#: UNet sees inside a window.
_DIGEST_SKIP = ("tile", "halo")
#: ... and fields left out while at the value that changes nothing (an option added after a graph was
#: made must not make it stale where it is off): ``flow_fusion`` "none" is DIS's flow as it always was.
_DIGEST_SKIP_AT = {"flow_fusion": "none"}


def pipeline_settings(cfg: Any) -> dict[str, Any]:
    """The pipeline settings an int8 graph's calibration depends on, as plain data.

    The ``PipelineConfig`` as checkpoints store it (``config.pipeline_payload``: of qa's settings only
    ``align`` and ``maps``, the ones the pipeline reads; qa's verdict thresholds and checks change
    nothing the UNet sees) without the tiling (``_DIGEST_SKIP``) and without the settings of the maps
    only ``qa check`` makes (``_qa_check_only_map``).
    """
    import dataclasses

    from hzsr.baseline_model.config import pipeline_payload

    raw = pipeline_payload(dataclasses.asdict(cfg))
    raw["flow_fusion"] = cfg.flow_fusion_used()  # what runs: "auto" hashes as what it resolves to
    plain = {k: v for k, v in raw.items()
             if k not in _DIGEST_SKIP and not (k in _DIGEST_SKIP_AT and v == _DIGEST_SKIP_AT[k])}
    maps = plain.get("qa", {}).get("maps")
    if isinstance(maps, dict):  # qa check's own maps (M_hid, the reference's M_defocus from main T)
        plain["qa"]["maps"] = {k: v for k, v in maps.items() if not _qa_check_only_map(k)}
    return plain


def _qa_check_only_map(field: str) -> bool:
    """Whether ``qa.maps.FIELD`` sets a map only ``qa check`` makes: ``M_hid`` (``hidden*``) and the
    reference's ``M_defocus`` through main T (inference has no main T); the pipeline's maps
    (``align.align``: occlusion, defocus, flow uncertainty, reject) never read them."""
    return field.startswith("hidden") or field == "defocus_ref_from_main_t"


def pipeline_digest(cfg: Any) -> str:
    """sha256 of the pipeline settings (a ``PipelineConfig``) an int8 graph was calibrated under.

    The graph's activation ranges are the UNet's inputs under these settings (the flow, M_occ, the
    colour match: issue20n's ``flow_blur_px`` changed them with the checkpoint unchanged), so a graph
    calibrated under other settings is stale (``int8_check``). Hashed: ``pipeline_settings``.
    """
    return hashlib.sha256(json.dumps(pipeline_settings(cfg), sort_keys=True, default=str).encode()).hexdigest()


def int8_check(ckpt: str | Path, pipeline: Any, ckpt_bytes: bytes | None = None) -> tuple[Int8Graph | None, str]:
    """The int8 graph beside checkpoint ``ckpt`` and ``""`` if it is current, else None and why not.

    Current means made by this recipe (``quantize.RECIPE_VERSION``: what stays float, how the
    inputs are gathered) from exactly these checkpoint bytes, calibrated under the pipeline settings
    ``pipeline`` (the ``PipelineConfig`` inference runs with: ``pipeline_digest``), and its two IR
    files the ones the sidecar names. A checkpoint retrained or replaced since (issue 20 may retrain
    the shipped one), a pipeline change that moves the UNet's inputs, or a recipe change makes it
    stale: it is then never run (``hzsr model quantize`` makes a new one). The reason is one line:
    ``"missing"`` (no sidecar), or what does not match. ``ckpt_bytes``: the checkpoint's bytes when
    the caller has read them already.
    """
    from hzsr.baseline_model.quantize import RECIPE_VERSION

    xml_p, bin_p, side_p = int8_paths(ckpt)
    if not side_p.is_file():
        return None, "missing"
    try:
        info = json.loads(side_p.read_text(encoding="utf-8"))
        data = ckpt_bytes if ckpt_bytes is not None else Path(ckpt).read_bytes()
    except (OSError, ValueError) as e:
        return None, f"unreadable ({type(e).__name__})"
    if not isinstance(info, dict):
        return None, "unreadable sidecar"
    if info.get("checkpoint_sha256") != hashlib.sha256(data).hexdigest():
        return None, "stale: made from other checkpoint bytes"
    if info.get("recipe_version") != RECIPE_VERSION:
        return None, f"stale: quantize recipe {info.get('recipe_version')}, this code's is {RECIPE_VERSION}"
    if info.get("pipeline_sha256") != pipeline_digest(pipeline):
        return None, "stale: calibrated under other pipeline settings"
    try:
        xml, weights = xml_p.read_bytes(), bin_p.read_bytes()
    except OSError as e:
        return None, f"unreadable ({type(e).__name__})"
    if (hashlib.sha256(xml).hexdigest() != info.get("xml_sha256")
            or hashlib.sha256(weights).hexdigest() != info.get("bin_sha256")):
        return None, "torn: its .xml/.bin are not the ones its sidecar names"
    return Int8Graph(xml, weights, xml_p, info), ""


def int8_graph(ckpt: str | Path, pipeline: Any, ckpt_bytes: bytes | None = None) -> Int8Graph | None:
    """The int8 graph beside checkpoint ``ckpt`` if it is current (``int8_check``), else None."""
    return int8_check(ckpt, pipeline, ckpt_bytes)[0]


class _NumpyRunner:
    """An ONNX runtime's runner: numpy in and out, no torch needed.

    Called with a numpy array (``N x 3 x H x W`` float32) it returns one (``N x 1 x H x W``); called
    with a torch tensor (tests, benchmarks with a torch model at hand) it returns a tensor, so it
    also stands in for the torch runner. ``takes_numpy`` tells ``tiling.run_tiled`` to pad in numpy.
    """

    takes_numpy = True
    size_multiple: int = 16
    tiles_in_flight: int = 1

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def eval(self) -> _NumpyRunner:
        return self

    def __call__(self, x: Any) -> Any:
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            # The graph's skip connections would not line up: torch's model fails at its first
            # concatenation, a compiled graph with a multi-line shape error or, on a fresh static
            # shape, not at all. A caller's bug (run_tiled pads), so not a user-facing ModelError.
            raise ValueError(f"a tile of {h}x{w} px: the UNet needs sides that are multiples of "
                             f"{self.size_multiple} (tiling.run_tiled pads them)")
        if isinstance(x, np.ndarray):
            return self.run(np.ascontiguousarray(x, dtype=np.float32))
        import torch

        return torch.from_numpy(self.run(x.detach().cpu().contiguous().numpy()))


class _OnnxRuntime(_NumpyRunner):
    """The ONNX Runtime runtime, CPU only."""

    def __init__(self, graph: bytes, size_multiple: int, threads: int):
        import onnxruntime as ort

        self.size_multiple = size_multiple
        # The threads go to whole tiles run at once (``tiling.run_tiled(workers=)``), each on one
        # intra-op thread: a tile's warp and blend then overlap another tile's network, and no
        # convolution waits at a barrier for a thread another process has preempted. Outputs
        # are the same bits as one intra-op thread per tile (``bench/infer.py``, paired).
        self.tiles_in_flight = max(1, threads)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        # The arena saves the page faults of fresh buffers per tile (without it: +40 % CPU); the
        # per-shape memory patterns would keep a plan for every tile size (+170 MB at 12 MP).
        so.enable_mem_pattern = False
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # passive, as threads.py
        # No NCHWc layout: with widths of 8, 12 and 24 channels (not multiples of the AVX-512
        # block of 16) half the graph's time went to reordering between layouts, which ate the
        # blocked convolutions' gain (same CPU per tile without it), and the padded blocks made
        # each tile's activations 1.4x larger (260 -> 185 MB for an 832x832 window), which
        # decides whether two tiles fit in flight (``docs/benchmarks.md``).
        self.session = ort.InferenceSession(graph, so, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=["NchwcTransformer"])

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"x": x})[0]


_OV_CORE: openvino.Core | None = None
_OV_CORE_LOCK = threading.Lock()


def _ov_core() -> openvino.Core:
    """The process's one ``openvino.Core``, made on first use and never released.

    One, not one per runner, because each Core loads its own CPU plugin, and each plugin swaps the
    constructing thread's alternate signal stack (``sigaltstack``) for a fresh mmap'd one, saving
    the previous one; on release it puts the saved one back only if its own is still current, then
    unmaps its own. Two plugins released in the order they were made (A, B, then A, B: as the
    garbage collector may free two runners) leave the thread's alternate stack pointing at A's
    unmapped memory; the next signal handled on it (Python installs every handler with
    ``SA_ONSTACK``, e.g. the ``SIGCHLD`` handler torch's DataLoader sets when a child exits) kills
    the process with SIGSEGV, silently, as faulthandler's handler uses the same stack. With one
    plugin for the process's lifetime there is one swap and nothing is unmapped while it runs.
    """
    global _OV_CORE
    with _OV_CORE_LOCK:
        if _OV_CORE is None:
            _OV_CORE = _import_openvino().Core()
        return _OV_CORE


#: The module ``import openvino`` imports last, inside ``try: ... except ImportError: pass``.
_OV_CONVERTER = "openvino.tools.ovc"


def _import_openvino() -> Any:
    """``import openvino``, without its model converter unless something imported that already.

    ``openvino/__init__.py`` ends with ``from openvino.tools.ovc import convert_model`` in a
    ``try`` that passes on ``ImportError`` (the converter is optional). Importing the converter
    costs more than the runtime itself (0.37-0.46 CPU-s for ``import openvino`` against 0.20-0.24
    without it, ``docs/benchmarks.md``) and, through it, OpenVINO's usage telemetry: with no consent
    file (``~/intel/openvino_telemetry``) it counts the import in ``~/intel/stats`` and submits a
    Google Analytics event from a non-daemon thread, which the interpreter's exit then waits for.
    Running a compiled graph needs none of it, so the converter's name is blocked
    (``sys.modules[name] = None``: the import raises ``ImportError``) for the duration of this
    import only. A later ``import openvino.tools.ovc`` (``hzsr model quantize``'s NNCF) imports it
    as usual; only the ``openvino.convert_model`` shortcut is then absent in this process.
    """
    placed = "openvino" not in sys.modules and _OV_CONVERTER not in sys.modules
    if placed:
        sys.modules[_OV_CONVERTER] = None  # type: ignore[assignment]
    try:
        import openvino
    finally:
        if placed and sys.modules.get(_OV_CONVERTER, 0) is None:
            del sys.modules[_OV_CONVERTER]
    return openvino


def _cpu_identity() -> str | None:
    """What OpenVINO's compiled kernels depend on besides the graph and the config, or None.

    The machine, the CPU model and its instruction-set flags (``/proc/cpuinfo``: a VM moved to a
    host without AVX-512 shows other flags), and the cores this process may use (OpenVINO sizes
    its streams by them). None where the flags cannot be read: no entry can then be keyed safely,
    and nothing is cached.
    """
    import platform

    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() in ("model name", "flags") and name.strip() not in fields:
            fields[name.strip()] = value.strip()
    if not fields.get("flags"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return "\n".join([platform.machine(), fields.get("model name", ""), fields["flags"],
                      f"cores {os.cpu_count()} {cores}"])


def _blob_key(graph: bytes, weights: bytes | None, config: dict[str, Any], version: str) -> str | None:
    """The compiled-model cache's key: the graph's and weights' bytes, the compile config, the
    OpenVINO build and the CPU (``_cpu_identity``); None where the CPU cannot be identified."""
    cpu = _cpu_identity()
    if cpu is None:
        return None
    h = hashlib.sha256(f"hzsr-openvino-blob {BLOB_VERSION}\nopenvino {version}\n".encode())
    h.update(json.dumps(config, sort_keys=True, default=str).encode() + b"\n" + cpu.encode() + b"\n")
    h.update(hashlib.sha256(graph).digest())
    h.update(hashlib.sha256(weights).digest() if weights is not None else b"onnx")
    return h.hexdigest()


def _probe_input(multiple: int) -> np.ndarray:
    """A fixed 1 x 3 x 2m x 2m input in [0, 1), the same bits in every process (integer arithmetic,
    not a random generator a numpy upgrade may change)."""
    n = 2 * multiple
    i = np.arange(3 * n * n, dtype=np.int64)
    return ((i * 7919 % 1000) / 1000.0).astype(np.float32).reshape(1, 3, n, n)


def _probe_sha256(request: Any, probe: np.ndarray) -> str:
    y = request.infer({0: probe})
    return hashlib.sha256(np.ascontiguousarray(next(iter(y.values()))).tobytes()).hexdigest()


def _precision_name(hint: Any) -> str:
    """``"bf16"``, ``"f16"`` or ``"f32"`` for OpenVINO's ``INFERENCE_PRECISION_HINT`` value, which
    prints as ``<Type: 'bfloat16'>`` in OpenVINO 2026 (and as ``bf16`` in some builds)."""
    text = str(hint).lower()
    if "bf16" in text or "bfloat16" in text:
        return "bf16"
    if "f16" in text or "float16" in text:
        return "f16"
    return "f32"


def _compiled_model(core: openvino.Core, graph: bytes, weights: bytes | None, config: dict[str, Any],
                    multiple: int) -> tuple[Any, Any, str]:
    """``graph`` compiled for the CPU with ``config``, from the compiled-model cache when it holds it.

    Compiling the UNet (reading the ONNX graph, then the CPU plugin's graph passes and kernel
    choice) took 0.3 s of a 12 MP image's first 0.7 s on two cores, every run, for the same bytes:
    so the compiled model (``CompiledModel.export_model``, 0.35 MB) is kept in ``$HZSR_CACHE``
    (default ``~/.cache/hzsr``) /openvino/<key>.blob, and imported (``Core.import_model``: 30 ms)
    next time. The key (``_blob_key``) covers everything the compiled kernels depend on: the graph's
    and weights' bytes, the config (precision, streams, threads), the OpenVINO build and the CPU.

    An entry is trusted only if all of these hold, else it is rebuilt (compiled again and
    rewritten): its sidecar (``<key>.json``, written last) names this key and the blob's size and
    sha256, which the blob read has; OpenVINO imports it; and the imported model's output on a fixed
    probe input (``_probe_input``) has the same sha256 as the freshly compiled model's had when the
    entry was written, bit for bit. So a torn, truncated or edited blob, a blob put under the wrong
    key, or one this OpenVINO or CPU computes differently is never run on an image. An unwritable
    cache only costs the compile again.

    Returns:
        ``(compiled, request, status)``: ``request`` an infer request that has run (the probe: the
        bindings' first numpy conversion, done here in one thread), ``status`` ``"hit"``,
        ``"miss"`` (no entry), ``"rebuilt"`` (an entry failed a check) or ``"off"`` (no key: CPU
        unidentified).
    """
    ov = _import_openvino()
    probe = _probe_input(multiple)
    key = _blob_key(graph, weights, config, ov.get_version())
    status = "off"
    if key is not None:
        base = _cache_dir() / "openvino" / key
        status = "miss"
        try:
            side = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
            blob = base.with_suffix(".blob").read_bytes()
        except (OSError, ValueError):
            side, blob = None, b""
        if side is not None:
            status = "rebuilt"  # there is an entry: unless every check passes, it is replaced
            try:
                if (isinstance(side, dict) and side.get("key") == key and side.get("blob_bytes") == len(blob)
                        and side.get("blob_sha256") == hashlib.sha256(blob).hexdigest()):
                    compiled = core.import_model(io.BytesIO(blob), "CPU", config)
                    request = compiled.create_infer_request()
                    if _probe_sha256(request, probe) == side.get("probe_sha256"):
                        return compiled, request, "hit"
            except Exception:  # noqa: BLE001 - whatever OpenVINO raises on a blob it cannot import: rebuild
                pass
    if weights is None:  # ONNX
        model = core.read_model(graph)
    else:  # an OpenVINO IR (the int8 graph): its .xml text and .bin weights
        model = core.read_model(graph.decode("utf-8"), ov.Tensor(np.frombuffer(weights, np.uint8)))
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    probe_sha = _probe_sha256(request, probe)
    if key is not None:
        try:
            exported = compiled.export_model()
            blob = exported.getvalue() if hasattr(exported, "getvalue") else bytes(exported)
            atomic_write_bytes(base.with_suffix(".blob"), blob)
            side = {"key": key, "blob_version": BLOB_VERSION, "openvino": ov.get_version(), "config": config,
                    "blob_bytes": len(blob), "blob_sha256": hashlib.sha256(blob).hexdigest(),
                    "probe_sha256": probe_sha, "graph_sha256": hashlib.sha256(graph).hexdigest()}
            atomic_write_bytes(base.with_suffix(".json"), json.dumps(side, indent=1, default=str).encode())
        except (OSError, RuntimeError):
            pass
    return compiled, request, status


class _OpenVino(_NumpyRunner):
    """The OpenVINO runtime: the same ONNX graph compiled by OpenVINO's CPU plugin (oneDNN).

    One compiled model with dynamic H and W (a static model per tile shape would compile and warm
    up each of the 3-4 shapes of an image: about 0.3 s apiece), an idle infer request for each
    tile in flight (a request is not thread-safe; the compiled model is). ``precision`` is
    OpenVINO's ``INFERENCE_PRECISION_HINT``: ``f32`` computes in float32 (the same output as the
    other runtimes to float rounding; it must be asked for, as the plugin's default on a CPU with
    AVX-512 BF16 is bf16), ``bf16`` in bfloat16 (8-bit mantissa: outputs differ by up to ~1e-3,
    scored on the held-out pool in ``docs/benchmarks.md``).
    """

    def __init__(self, graph: bytes, size_multiple: int, threads: int, precision: str = "f32",
                 weights: bytes | None = None):
        self.size_multiple = size_multiple
        self.tiles_in_flight = max(1, threads)  # as _OnnxRuntime: whole tiles in parallel, 1 thread each
        core = _ov_core()
        # One stream per tile in flight, one thread each, no pinning: the tiles in flight are the
        # parallelism, and a thread pinned to a core another process holds would wait for it
        # (shared machine). A stream is one instance of the graph, and a synchronous ``infer``
        # locks its stream's instance: with one stream for two tile threads (as before) the two
        # networks ran one at a time (sampled per thread: both threads busy in 4 of 65 50 ms
        # windows, against 46 of 66 with two streams), so a 12 MP image's 2.2 CPU-s of UNet took
        # 2.2 s of wall on two idle cores. Each stream runs the same kernels: the same bits.
        streams = self.tiles_in_flight
        config = {"INFERENCE_NUM_THREADS": streams, "NUM_STREAMS": streams, "INFERENCE_PRECISION_HINT": precision,
                  "ENABLE_CPU_PINNING": False}
        # From the compiled-model cache when it holds this graph for this config, OpenVINO and CPU
        # (``_compiled_model``; ``cache``: hit, miss, rebuilt or off). ``request`` has run the probe:
        # the one small inference, in one thread, that the bindings' first numpy conversion needs
        # (a once-only initialisation that deadlocks when two tile threads reach it at once: one
        # holds the GIL and waits for the once-flag, the other holds the flag and waits for the GIL).
        self.compiled, request, self.cache = _compiled_model(core, graph, weights, config, size_multiple)
        # What the plugin computes in, which is not always what was asked: a CPU without AVX-512
        # BF16 (or AMX) runs a bf16 hint in float32. "bf16" or "f32", or "int8" for the quantized graph
        # (a compiled or an imported model reports it alike).
        used = _precision_name(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.precision = "int8" if weights is not None else used
        # Idle infer requests: a tile takes one (or makes one) and gives it back, so each request
        # serves one tile at a time and all of them live, and die, with the runner (not in the
        # tile threads' locals, torn down as each worker thread exits).
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._idle.put(request)

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            req = self._idle.get_nowait()
        except queue.Empty:
            req = self.compiled.create_infer_request()
        try:
            # The tile is read where it lies (``share_inputs``: no 8 MB copy into the request's
            # tensor, ``x`` is alive until ``infer`` returns), and the output is copied once:
            # the request's buffer is reused by its next tile (``share_outputs`` avoids
            # OpenVINO's own copy, which ``.copy()`` then made a second time).
            y = req.infer({0: x}, share_inputs=True, share_outputs=True)
            return next(iter(y.values())).copy()
        finally:
            self._idle.put(req)


def _package(runtime: str) -> str:
    return "openvino" if runtime.startswith("openvino") else runtime


def available(runtime: str) -> bool:
    """Whether ``runtime`` can run here (ONNX Runtime and OpenVINO are optional packages of [train]).

    The package is looked up (``importlib.util.find_spec``), not imported: importing OpenVINO costs
    0.1 s, which ``hzsr model infer`` spends in a thread beside the decoding and alignment instead.
    A package set to ``None`` in ``sys.modules`` (a blocked import) counts as missing.
    """
    if runtime not in RUNTIMES:
        return False
    if runtime != "torch":
        try:
            return importlib.util.find_spec(_package(runtime)) is not None
        except (ImportError, ValueError):
            return False
    return importlib.util.find_spec("torch") is not None


#: The default on CPU is the first of these that runs here: ``openvino-bf16`` (1.5-1.7x less CPU
#: than ``onnxruntime``, paired, same output quality), else ONNX Runtime, else torch.
#: ``openvino-int8`` (1.5x less CPU per tile than float32 on AVX2) is an option only: re-quantized
#: under today's pipeline (issue19y) it loses 0.018 dB on average on the held-out pool but 0.059 on
#: its moving scenes (0.030 on the calibration pool it was chosen on), over the per-kind 0.05 dB of
#: ``bench/infer_quality.py`` (``docs/benchmarks.md``, tenth pass). Listed here (first), it would be
#: the default only where ``default_runtime`` finds the checkpoint's graph current and the CPU
#: suited (``int8_suits_cpu``), else the next one, saying so when the graph is stale.
#: (``openvino-bf16`` was opt-in for a while: a test process that had made several OpenVINO
#: runners died of SIGSEGV when a child exited; the cause was the plugins' alternate signal
#: stacks, fixed by one Core, ``_ov_core``.)
CPU_PREFERENCE = ("openvino-bf16", "onnxruntime", "torch")


def _device_type(device: Any) -> str:
    """``"cpu"``, ``"cuda"``...: of a string (``"cuda:1"``) or a ``torch.device``, without torch."""
    return str(getattr(device, "type", device)).split(":")[0]


def _cpu_flags() -> set[str] | None:
    """The CPU's instruction-set flags (``/proc/cpuinfo``), or None where they cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == "flags":
            return set(value.split())
    return None


def int8_suits_cpu(flags: set[str] | None = None) -> bool:
    """Whether ``openvino-int8`` is the default on this CPU (``flags``: ``/proc/cpuinfo``'s, read when None).

    Where it was measured: AVX2 without bfloat16 arithmetic (this project's VM). Without AVX2,
    OpenVINO's int8 kernels are not known to beat float32; with AVX-512 BF16 or AMX,
    ``openvino-bf16`` runs in bfloat16 (0.002 dB from float32 on every kind, 2.59 s at 12 MP on
    such a VM), and int8's quality on those CPUs' int8 kernels (VNNI, AMX) was never scored. So
    there, and where the flags cannot be read, the float default stays.
    """
    flags = _cpu_flags() if flags is None else flags
    return bool(flags) and "avx2" in flags and not flags & {"avx512_bf16", "amx_bf16"}


def default_runtime(device: Any, ckpt: str | Path | None = None, pipeline: Any = None,
                    say: Any = None) -> str:
    """On CPU the first of ``CPU_PREFERENCE`` that runs here, else (CUDA) ``torch``.

    ``openvino-int8`` counts only with ``ckpt`` and the ``pipeline`` settings (a ``PipelineConfig``)
    given, on a CPU it suits (``int8_suits_cpu``), and where the checkpoint's int8 graph is current
    (``int8_check``). A graph that is there but stale is not run: ``say`` (a callable taking one
    line; e.g. a print to stderr) is told why and what runs instead; a missing one is not news (a
    checkpoint of the user's own has none).
    """
    if _device_type(device) != "cpu":
        return "torch"
    stale = ""
    for rt in CPU_PREFERENCE:
        if rt == "openvino-int8":
            if ckpt is None or pipeline is None or not available(rt) or not int8_suits_cpu():
                continue
            graph, why = int8_check(ckpt, pipeline)
            if graph is not None:
                return rt
            if why != "missing":
                stale = f"{int8_paths(ckpt)[0]}: {why}"
            continue
        if available(rt):
            if stale and say is not None:
                say(f"{stale}; running {rt} instead (re-make it: hzsr model quantize; the shipped one: make int8)")
            return rt
    raise ValueError("no UNet runtime installed: pip install 'hzsr[train]'")


def _check(runtime: str, device: Any) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return
    if _device_type(device) != "cpu":
        raise ValueError(f"runtime {runtime} runs on the CPU only; use --runtime torch with --device cuda")
    if not available(runtime):
        raise ValueError(f"runtime {runtime} needs the {_package(runtime)} package: pip install 'hzsr[train]'")


def graph_runner(graph: bytes, size_multiple: int, runtime: str, threads: int,
                 int8: Int8Graph | None = None) -> _NumpyRunner:
    """An ONNX runtime's runner for the ONNX ``graph`` (``checkpoint_graph``), ``threads`` tiles in flight.

    ``openvino-int8`` runs ``int8`` (the checkpoint's quantized graph, ``int8_graph``) instead of ``graph``.
    """
    _check(runtime, "cpu")
    if runtime == "torch":
        raise ValueError("runtime torch runs the torch model, not an ONNX graph: use make_runner")
    if runtime == "onnxruntime":
        return _OnnxRuntime(graph, size_multiple, threads)
    if runtime == "openvino-int8":
        if int8 is None:
            raise ValueError("runtime openvino-int8 needs the checkpoint's current int8 graph (CKPT.int8.xml from the "
                             "same checkpoint bytes and pipeline settings): make it with hzsr model quantize")
        return _OpenVino(int8.xml, size_multiple, threads, _OV_PRECISION[runtime], weights=int8.weights)
    return _OpenVino(graph, size_multiple, threads, _OV_PRECISION[runtime])


def make_runner(model: torch.nn.Module, runtime: str | None, device: Any, ckpt: str | Path | None = None,
                pipeline: Any = None) -> Any:
    """Wrap ``model`` (already on ``device``, in eval mode) for ``runtime`` (None: the default).

    ``ckpt``: the checkpoint file ``model`` was loaded from, and ``pipeline`` the settings it runs
    under (a ``PipelineConfig``); ``openvino-int8`` needs both (its quantized graph lies beside the
    checkpoint and must have been calibrated under these settings: ``int8_check``).
    """
    import torch

    runtime = runtime or default_runtime(device, ckpt, pipeline)
    _check(runtime, device)
    if runtime == "torch":
        return _torch_runner(model)
    multiple = getattr(model, "size_multiple", 16)
    if runtime == "openvino-int8":
        if ckpt is None or pipeline is None:
            raise ValueError("runtime openvino-int8 needs the checkpoint file and its pipeline settings")
        graph, why = int8_check(ckpt, pipeline)
        if graph is None:  # one line: the graph's file and why (hzsr model infer says it as a ConfigError)
            raise ValueError(f"{int8_paths(ckpt)[0]}: {why}; re-make it "
                             "(hzsr model quantize; the shipped one: make int8)")
        return graph_runner(b"", multiple, runtime, torch.get_num_threads(), graph)
    return graph_runner(onnx_bytes(model, multiple), multiple, runtime, torch.get_num_threads())
