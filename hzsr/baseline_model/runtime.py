"""Where the fusion UNet runs during tiled inference: OpenVINO, ONNX Runtime or torch.

All take and return the same tensors (``N x 3 x H x W`` float32 in, ``N x 1 x H x W`` out). The
default on CPU is the first of ``CPU_PREFERENCE`` that is installed, the order chosen by
``bench/infer.py`` (paired, same capture) and ``bench/infer_quality.py`` (what each does to the
output, on the held-out pool against the ideal target); figures in ``docs/benchmarks.md``:

- ``openvino-bf16`` (default; the fastest): the UNet's ONNX graph
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
thread each (``tiles_in_flight``; ``tiling.run_tiled(workers=)``).

Not offered: ``torch.compile`` (its first call compiles for tens of seconds, more than a 12 MP
image takes, and ``hzsr model infer`` runs one image per process); int8
(``bench/unet_runtimes.py``): ONNX Runtime's static QDQ quantization of this UNet saves only 17 %
of a tile's CPU against its float32, as 3-32 channel convolutions keep its int8 kernels from
their width; OpenVINO runs the same int8 graph in 18 % less CPU than bfloat16 only with one
static shape per compiled model, and compiling one more shape costs about five tiles' worth,
with 3-4 tile shapes per image.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import queue
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from hzsr.core.fileio import atomic_write_bytes

if TYPE_CHECKING:
    import openvino

#: Runtimes known to ``hzsr model infer --runtime``.
RUNTIMES = ("openvino", "openvino-bf16", "onnxruntime", "torch")
#: OpenVINO's inference precision per runtime name (``INFERENCE_PRECISION_HINT``).
_OV_PRECISION = {"openvino": "f32", "openvino-bf16": "bf16"}


class _ChannelsLast(torch.nn.Module):
    """The torch runtime: channels-last inputs to a channels-last model."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.m = model.to(memory_format=torch.channels_last)
        self.size_multiple = getattr(model, "size_multiple", 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x.contiguous(memory_format=torch.channels_last))


def _cache_dir() -> Path:
    if os.environ.get("HZSR_CACHE"):
        return Path(os.environ["HZSR_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hzsr"


def onnx_bytes(model: torch.nn.Module, multiple: int = 16) -> bytes:
    """The model as ONNX, from a cache keyed by its weights and the torch version (else exported).

    Exporting costs 1-3 s (mostly importing ``torch.onnx``), more than the runtime saves on one
    12 MP image, so each distinct network is exported once into ``$HZSR_CACHE`` (default
    ``~/.cache/hzsr``) /onnx/<sha256>.onnx, written atomically. An unwritable cache only costs the
    export again.
    """
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


class _OnnxRuntime(torch.nn.Module):
    """The ONNX Runtime runtime: the same call signature, CPU only."""

    def __init__(self, model: torch.nn.Module, threads: int):
        super().__init__()
        import onnxruntime as ort

        self.size_multiple = getattr(model, "size_multiple", 16)
        # The threads go to whole tiles run at once (``tiling.run_tiled(workers=)``), each on one
        # intra-op thread: a tile's warp and blend then overlap another tile's network, and no
        # convolution waits at a barrier for a thread another process has preempted. Outputs
        # are the same bits as one intra-op thread per tile (``bench/infer.py``, paired).
        self.tiles_in_flight = max(1, threads)
        data = onnx_bytes(model, self.size_multiple)
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
        self.session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=["NchwcTransformer"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.session.run(None, {"x": x.detach().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(y)


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
            import openvino as ov

            _OV_CORE = ov.Core()
        return _OV_CORE


class _OpenVino(torch.nn.Module):
    """The OpenVINO runtime: the same ONNX graph compiled by OpenVINO's CPU plugin (oneDNN).

    One compiled model with dynamic H and W (a static model per tile shape would compile and warm
    up each of the 3-4 shapes of an image: about 0.3 s apiece), an idle infer request for each
    tile in flight (a request is not thread-safe; the compiled model is). ``precision`` is
    OpenVINO's ``INFERENCE_PRECISION_HINT``: ``f32`` computes in float32 (the same output as the
    other runtimes to float rounding; it must be asked for, as the plugin's default on a CPU with
    AVX-512 BF16 is bf16), ``bf16`` in bfloat16 (8-bit mantissa: outputs differ by up to ~1e-3,
    scored on the held-out pool in ``docs/benchmarks.md``).
    """

    def __init__(self, model: torch.nn.Module, threads: int, precision: str = "f32"):
        super().__init__()
        self.size_multiple = getattr(model, "size_multiple", 16)
        self.tiles_in_flight = max(1, threads)  # as _OnnxRuntime: whole tiles in parallel, 1 thread each
        core = _ov_core()
        graph = core.read_model(onnx_bytes(model, self.size_multiple))
        # One thread per request and no pinning: the tiles in flight are the parallelism, and a
        # thread pinned to a core another process holds would wait for it (shared machine).
        self.compiled = core.compile_model(graph, "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1,
                                                          "INFERENCE_PRECISION_HINT": precision,
                                                          "ENABLE_CPU_PINNING": False})
        # Idle infer requests: a tile takes one (or makes one) and gives it back, so each request
        # serves one tile at a time and all of them live, and die, with the runner (not in the
        # tile threads' locals, torn down as each worker thread exits).
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        # One small inference here, in one thread: the bindings' first numpy conversion runs a
        # once-only initialisation that deadlocks when two tile threads reach it at once (one
        # holds the GIL and waits for the once-flag, the other holds the flag and waits for the GIL).
        self.forward(torch.zeros(1, 3, self.size_multiple, self.size_multiple))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            req = self._idle.get_nowait()
        except queue.Empty:
            req = self.compiled.create_infer_request()
        try:
            y = req.infer({0: x.detach().cpu().contiguous().numpy()})
            # A copy: the request's output buffer is reused by its next tile.
            return torch.from_numpy(next(iter(y.values())).copy())
        finally:
            self._idle.put(req)


def _package(runtime: str) -> str:
    return "openvino" if runtime.startswith("openvino") else runtime


def available(runtime: str) -> bool:
    """Whether ``runtime`` can run here (ONNX Runtime and OpenVINO are optional packages of [train])."""
    if runtime not in RUNTIMES:
        return False
    if runtime != "torch":
        try:
            importlib.import_module(_package(runtime))
        except ImportError:
            return False
    return True


#: The default on CPU is the first of these installed: ``openvino-bf16`` (1.5-1.7x less CPU than
#: ``onnxruntime``, paired, same output quality), else ONNX Runtime, else torch. (It was opt-in for
#: a while: a test process that had made several OpenVINO runners died of SIGSEGV when a child
#: exited; the cause was the plugins' alternate signal stacks, fixed by one Core, ``_ov_core``.)
CPU_PREFERENCE = ("openvino-bf16", "onnxruntime", "torch")


def default_runtime(device: str | torch.device) -> str:
    """On CPU the first of ``CPU_PREFERENCE`` installed, else (CUDA) ``torch``."""
    if torch.device(device).type != "cpu":
        return "torch"
    return next(rt for rt in CPU_PREFERENCE if available(rt))


def make_runner(model: torch.nn.Module, runtime: str | None, device: str | torch.device) -> torch.nn.Module:
    """Wrap ``model`` (already on ``device``, in eval mode) for ``runtime`` (None: the default)."""
    runtime = runtime or default_runtime(device)
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return _ChannelsLast(model)
    if torch.device(device).type != "cpu":
        raise ValueError(f"runtime {runtime} runs on the CPU only; use --runtime torch with --device cuda")
    if not available(runtime):
        raise ValueError(f"runtime {runtime} needs the {_package(runtime)} package: pip install 'hzsr[train]'")
    if runtime == "onnxruntime":
        return _OnnxRuntime(model, torch.get_num_threads())
    return _OpenVino(model, torch.get_num_threads(), _OV_PRECISION[runtime])
