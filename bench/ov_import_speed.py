"""Benchmark: does the compiled-model cache's imported model run tiles as fast as a fresh compile? (issue 19)

In one process: the shipped checkpoint's graph (``runtime.checkpoint_graph``) compiled for
``openvino-bf16`` with two streams of one thread (as ``hzsr model infer`` on 2 threads), the same
compiled model exported and imported (``Core.import_model``, what a cache hit runs); then in
``--rounds`` interleaved repetitions, two threads (one infer request each, as two tiles in flight)
each run three windows (832x832, 832x224, 768x832, random inputs). Reports CPU and wall per
repetition, the medians of the per-repetition ratios imported / compiled, and whether the outputs
are the same bits. 1-minute load average before and after.

Usage: ``python bench/ov_import_speed.py [--rounds 6]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import threading
import time

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    from hzsr.baseline_model.checkpoint import shipped_checkpoint_path
    from hzsr.baseline_model.runtime import _ov_core, checkpoint_graph

    load0 = os.getloadavg()[0]
    core = _ov_core()
    g = checkpoint_graph(shipped_checkpoint_path())
    cfg = {"INFERENCE_NUM_THREADS": 2, "NUM_STREAMS": 2, "INFERENCE_PRECISION_HINT": "bf16",
           "ENABLE_CPU_PINNING": False}
    compiled = core.compile_model(core.read_model(g.onnx), "CPU", cfg)
    imported = core.import_model(io.BytesIO(compiled.export_model().getvalue()), "CPU", cfg)
    reqs = {"compiled": [compiled.create_infer_request() for _ in range(2)],
            "imported": [imported.create_infer_request() for _ in range(2)]}
    for rs in reqs.values():
        for r in rs:
            r.infer({0: np.zeros((1, 3, 32, 32), np.float32)})
    xs = [np.random.default_rng(i).random((1, 3, *s), dtype=np.float32)
          for i, s in enumerate([(832, 832), (832, 224), (768, 832)])]
    outs = {k: [next(iter(rs[0].infer({0: x}).values())).copy() for x in xs] for k, rs in reqs.items()}

    def work(r: object) -> None:
        for x in xs:
            r.infer({0: x}, share_inputs=True)

    cpu: dict[str, list[float]] = {k: [] for k in reqs}
    wall: dict[str, list[float]] = {k: [] for k in reqs}
    for i in range(args.rounds):
        for k in (("compiled", "imported") if i % 2 == 0 else ("imported", "compiled")):
            c0, w0 = time.process_time(), time.perf_counter()
            ts = [threading.Thread(target=work, args=(r,)) for r in reqs[k]]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    def ratio(t: dict[str, list[float]]) -> float:
        return statistics.median(a / b for a, b in zip(t["imported"], t["compiled"], strict=True))

    print(json.dumps({
        "benchmark": "ov_import_speed", "rounds": args.rounds, "load_avg_1m_before": load0,
        "load_avg_1m_after": os.getloadavg()[0],
        "same_output": all(np.array_equal(a, b) for a, b in zip(outs["compiled"], outs["imported"], strict=True)),
        "cpu_ratio_imported_over_compiled": ratio(cpu),
        "wall_ratio_imported_over_compiled": ratio(wall),
        "cpu_s": {k: [round(v, 4) for v in vs] for k, vs in cpu.items()},
        "wall_s": {k: [round(v, 4) for v in vs] for k, vs in wall.items()}}, indent=1))


if __name__ == "__main__":
    main()
