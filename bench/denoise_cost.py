"""Benchmark: what the output denoiser (``hzsr/baseline_model/denoise.py``) adds to a 12 MP inference.

On a 4000x3000 output with a 4000x3000 reference, in ``--rounds`` interleaved rounds (order
rotating), times: ``off`` (a clean reference: only the noise measurement runs, what every
daylight capture pays), ``on`` (a reference with Gaussian noise of sigma 8: the measurement, the
bilateral filter on Y and the RGB update, what a night capture pays) and ``bicubic`` (one bicubic
4000x3000 resize of an 800x600 crop, the pipeline's I_src, as the baseline of the ratios).
Reports medians (s), the per-round ratios' medians, and the 1-minute load average before and after.
The 12 MP pipeline budget (issue 20) is 6 s; ``bench/infer.py`` measures the rest.

Usage: ``python bench/denoise_cost.py [--rounds 5]``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import cv2
import numpy as np
from _timing import interleaved

from hzsr.baseline_model.denoise import DenoiseSettings, denoise_output


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    crop = base[1200:1800, 1600:2400]
    s = DenoiseSettings()
    cases = {
        "off": lambda: denoise_output(base, base, s),
        "on": lambda: denoise_output(noisy, noisy, s),
        "bicubic": lambda: cv2.resize(crop, (4000, 3000), interpolation=cv2.INTER_CUBIC),
    }
    assert denoise_output(base, base, s)[0] is base and denoise_output(noisy, noisy, s)[0] is not noisy
    load0 = os.getloadavg()[0]
    times = interleaved(cases, a.rounds)
    out = {
        "rounds": a.rounds, "size": [4000, 3000], "threads": cv2.getNumThreads(),
        "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "ratio_vs_bicubic": {k: round(statistics.median(t / b for t, b in zip(times[k], times["bicubic"], strict=True)),
                                      2)
                             for k in ("off", "on")},
        "load1": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
