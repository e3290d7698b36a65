"""What the virtual rig's phones really did, read from its truth files (tests only)."""

from __future__ import annotations

import json


def true_skews_us(rig) -> dict[str, float]:
    """Per capture id, the true firing time of the reference T minus the main W, microseconds."""
    truth: dict = {}
    for f in (rig.workdir / "truth").glob("*.jsonl"):
        for line in f.read_text().splitlines():
            d = json.loads(line)
            truth.setdefault(d["capture_id"], {})[(d["role"], d["camera"])] = d["true_host_ns"]
    return {c: (v[("reference", "T")] - v[("main", "W")]) / 1e3 for c, v in truth.items()}
