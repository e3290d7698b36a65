"""``hzsr sync board``: everything a crew needs to build the sync board (``docs/sync-board.md``).

Writes into ``--out``:

- ``board.yaml``: the spec the decoder reads (:class:`hzsr.sync.board.BoardSpec`);
- ``face.png``: the printable face at 1:1 scale (300 dpi; print without scaling and check the
  marker's side with a ruler): white face, the four ArUco markers, the black LED panel and strip
  with each LED's window outlined;
- ``leds.csv``: one row per LED: where it sits (mm from the face's top-left) and when it is lit
  (``on_us`` into a cycle of ``cycle_us``, for ``length_us``), the table the firmware implements;
  the Gray strip's rows give the bit each LED shows.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from hzsr.core.fileio import atomic_write_bytes
from hzsr.core.schema import to_plain
from hzsr.sync.board import BoardSpec, face_texture

DPI = 300


def write_board_kit(out: str | Path, spec: BoardSpec | None = None) -> dict[str, str]:
    """Write ``board.yaml``, ``face.png`` and ``leds.csv`` into ``out``; returns their paths by name."""
    spec = spec or BoardSpec()
    out = Path(out)
    mm_per_px = 25.4 / DPI
    face = face_texture(spec, mm_per_px).copy()
    px = 1000 / mm_per_px
    half = spec.led_size_m / 2
    for (x, y) in np.r_[spec.led_centres(), spec.gray_centres()]:
        p0 = (int(round((x - half) * px)), int(round((y - half) * px)))
        p1 = (int(round((x + half) * px)), int(round((y + half) * px)))
        cv2.rectangle(face, p0, p1, 110.0, max(1, int(px * 0.0005)))
    ok, png = cv2.imencode(".png", np.clip(face, 0, 255).astype(np.uint8))
    assert ok
    on, length, cycle = spec.led_timing()
    rows = [{"led": f"matrix[{i // spec.cols}][{i % spec.cols}]", "x_mm": round(x * 1000, 2),
             "y_mm": round(y * 1000, 2), "on_us": on[i], "length_us": length[i], "cycle_us": cycle[i],
             "shows": "slow light" if i >= spec.fast_rows * spec.cols else "fast light"}
            for i, (x, y) in enumerate(spec.led_centres())]
    rows += [{"led": f"gray[{b}]", "x_mm": round(x * 1000, 2), "y_mm": round(y * 1000, 2), "on_us": None,
              "length_us": spec.cycle_us, "cycle_us": spec.period_us,
              "shows": f"bit {spec.gray_bits - 1 - b} of gray(floor(t / {spec.cycle_us:g} us))"}
             for b, (x, y) in enumerate(spec.gray_centres())]
    paths = {"board_yaml": out / "board.yaml", "face_png": out / "face.png", "leds_csv": out / "leds.csv"}
    atomic_write_bytes(paths["board_yaml"], yaml.safe_dump(to_plain(spec), sort_keys=False).encode())
    atomic_write_bytes(paths["face_png"], png.tobytes())
    atomic_write_bytes(paths["leds_csv"], pd.DataFrame(rows).to_csv(index=False).encode())
    return {k: str(v) for k, v in paths.items()}
