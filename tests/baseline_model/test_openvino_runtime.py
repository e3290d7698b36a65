"""The OpenVINO runtimes: float32 agrees with torch to float rounding, bfloat16 to its precision,
two tile threads on one runner give the single-threaded result (and do not deadlock), and runners
released in any order leave the thread's alternate signal stack usable.

The checks run in a fresh interpreter: the first ones need a process whose numpy conversion in
the bindings has not run yet, the last one kills its process when it fails.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("openvino")
pytest.importorskip("torch")

_CHECKS = r'''
import json, threading
import numpy as np, torch
from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.runtime import make_runner

def inputs(shape, seed):
    # Smooth luminances, a detailed reference and a sparse occlusion mask, like the UNet's inputs.
    g = torch.Generator().manual_seed(seed)
    y = torch.nn.functional.avg_pool2d(torch.rand(1, 1, *shape, generator=g), 5, 1, 2)
    ref = (y + 0.05 * torch.randn(1, 1, *shape, generator=g)).clamp(0, 1)
    occ = (torch.rand(1, 1, *shape, generator=g) > 0.9).float()
    return torch.cat([y, ref, occ], dim=1)

torch.set_num_threads(1)
model = load_model(None).model.eval()
out = {}
x = inputs((96, 128), 0)
with torch.inference_mode():
    ref = make_runner(model, "torch", "cpu")(x)
    f32 = make_runner(model, "openvino", "cpu")(x)
    bf16_runner = make_runner(model, "openvino-bf16", "cpu")
    bf16 = bf16_runner(x)
out["bf16_precision"] = bf16_runner.precision
import openvino
out["cpu_has_bf16"] = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
out["shapes"] = [list(t.shape) for t in (ref, f32, bf16)]
out["f32_diff"] = float((f32 - ref).abs().max())
out["bf16_diff"] = float((bf16 - ref).abs().max())

# Two threads on a FRESH runner, two tile shapes each, as tiling.run_tiled(workers=2) does.
# Sides in units of the UNet's size multiple m, as tiling.run_tiled pads them (m = 16: 64x96 ...).
m = model.size_multiple
shapes = [(4 * m, 6 * m), (3 * m, 10 * m), (4 * m, 6 * m), (5 * m, 4 * m)]
xs = [inputs(s, i) for i, s in enumerate(shapes)]
with torch.inference_mode():
    seq = [make_runner(model, "openvino", "cpu")(x).numpy() for x in xs]
torch.set_num_threads(2)  # two tiles in flight
runner = make_runner(model, "openvino", "cpu")
out["tiles_in_flight"] = runner.tiles_in_flight
got = {}
start = threading.Barrier(2)
def work(k):
    start.wait()
    with torch.inference_mode():
        for i in range(k, len(xs), 2):
            got[i] = runner(xs[i]).numpy()
threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in (0, 1)]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=60)
out["deadlocked"] = any(t.is_alive() for t in threads)
out["threaded_equal"] = [bool(i in got and np.array_equal(got[i], s)) for i, s in enumerate(seq)]
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def checks() -> dict:
    r = subprocess.run([sys.executable, "-c", _CHECKS], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_openvino_float32_and_bfloat16_against_torch(checks):
    from hzsr.baseline_model.export import TOLERANCE

    assert checks["shapes"] == [[1, 1, 96, 128]] * 3
    assert checks["f32_diff"] <= TOLERANCE
    # The runner says what OpenVINO computes in: bf16 where the CPU has it (AVX-512 BF16, AMX),
    # else the plugin's float32 (this suite's 2-core AMD EPYC VM has no BF16).
    assert checks["bf16_precision"] == ("bf16" if checks["cpu_has_bf16"] else "f32")
    if checks["cpu_has_bf16"]:
        # bfloat16 keeps 8 mantissa bits: a relative error of 2^-9 per operation, a few 1e-3 at the
        # end; it must really run in bf16 (else the option would be a float32 run under another name).
        assert 1e-5 < checks["bf16_diff"] <= 2e-2
    else:
        assert checks["bf16_diff"] <= TOLERANCE


def test_openvino_two_tile_threads_give_the_sequential_result(checks):
    """Each result of two threads sharing one runner is the one-thread result (one request per tile in flight)."""
    assert checks["tiles_in_flight"] == 2
    assert not checks["deadlocked"], "tile threads deadlocked"
    assert all(checks["threaded_equal"]), checks["threaded_equal"]


#: Two runners released in the order they were made (not last-in first-out), then a signal handled
#: on the alternate stack: the SIGCHLD of a child's exit, with a Python handler as torch's
#: DataLoader installs in the main process. With one OpenVINO Core per runner this died of SIGSEGV
#: (each Core's CPU plugin swaps in its own sigaltstack and unmaps it on release: ``runtime._ov_core``).
_SIGNAL_STACK = r'''
import ctypes, faulthandler, gc, json, signal, subprocess, sys
import torch
from hzsr.baseline_model.checkpoint import load_model
from hzsr.baseline_model.runtime import make_runner

class Stack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]

def alt_stack_mapped():
    s = Stack()
    assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(s)) == 0
    for line in open("/proc/self/maps"):
        lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
        if lo <= (s.ss_sp or 0) < hi:
            return True
    return False

faulthandler.enable()  # an alternate stack of the interpreter's own first, as under pytest
torch.set_num_threads(1)
model = load_model(None).model.eval()
a = make_runner(model, "openvino-bf16", "cpu")
b = make_runner(model, "openvino", "cpu")
del a
gc.collect()
del b
gc.collect()
mapped = alt_stack_mapped()
signal.signal(signal.SIGCHLD, lambda *_: None)
subprocess.run(["true"], check=True)
print(json.dumps({"alt_stack_mapped": mapped}))
'''


def test_runners_released_out_of_order_leave_a_usable_signal_stack():
    r = subprocess.run([sys.executable, "-c", _SIGNAL_STACK], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"alt_stack_mapped": True}


def test_default_runtime_is_openvino_bf16_then_onnxruntime_then_torch(monkeypatch):
    from hzsr.baseline_model.runtime import default_runtime

    assert default_runtime("cpu") == "openvino-bf16"
    assert default_runtime("cuda") == "torch"
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    assert default_runtime("cpu") == "onnxruntime"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert default_runtime("cpu") == "torch"


def test_a_tile_off_the_size_multiple_is_one_line(tmp_path, monkeypatch):
    """A compiled graph is not trusted to fail on a tile its skip connections cannot align:
    the runner refuses it in one line (``tiling.run_tiled`` always pads, so only a caller's bug gets here)."""
    import numpy as np

    from hzsr.baseline_model.checkpoint import load_model
    from hzsr.baseline_model.runtime import make_runner
    monkeypatch.setenv("HZSR_CACHE", str(tmp_path / "cache"))  # the compiled graph's cache, not the user's
    model = load_model(None).model.eval()
    runner = make_runner(model, "openvino", "cpu")
    m = runner.size_multiple
    assert runner(np.zeros((1, 3, 2 * m, 3 * m), np.float32)).shape == (1, 1, 2 * m, 3 * m)
    off = 3 * m + m // 2
    with pytest.raises(ValueError, match=rf"a tile of {2 * m}x{off} px: .*multiples of {m}") as e:
        runner(np.zeros((1, 3, 2 * m, off), np.float32))
    assert "\n" not in str(e.value)
