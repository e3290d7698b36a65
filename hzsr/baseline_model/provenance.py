"""What a checkpoint was trained from, so that a rerun that does not reproduce it can be located.

``hzsr model train`` writes ``provenance`` into every checkpoint it saves::

    provenance:
      data:
        captures: the training split's capture ids, in the order the run used them
        shards_sha256: sha256 over those captures' pixel arrays as packed (main_W, main_T, ref_T and
                       the truth arrays with their crop rectangle): what the simulator and the packer made
        inputs_sha256: sha256 over the aligned arrays the network trains on (the run's cache): the
                       above after the pipeline's alignment
      code: the hzsr package's git commit (``dirty`` when its tracked files differ from it),
            and the versions of torch, numpy and OpenCV

Two runs whose ``shards_sha256`` differ were given different data (the renderer or packer moved);
equal shards but different ``inputs_sha256`` means the alignment moved; equal inputs but different
weights means the training code, the config or the torch build did. ``python -m
hzsr.baseline_model.provenance A.pt B.pt`` prints that comparison and how many tensors are equal.
Metadata (timestamps, paths) is deliberately not hashed: only what the network sees.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _update(h: Any, name: str, arr: np.ndarray | None) -> None:
    """Feed one named array (its dtype and shape too, so a reshape is not a collision) into ``h``."""
    if arr is None:
        h.update(f"{name}:none;".encode())
        return
    a = np.ascontiguousarray(arr)
    h.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
    h.update(a.tobytes())


def data_digest(reader: Any, ids: list[str], cache_paths: list[Path]) -> dict[str, Any]:
    """The ``provenance.data`` entry of a run trained on ``ids`` (with their cache files ``cache_paths``)."""
    shards = hashlib.sha256()
    for cid in ids:
        s = reader.read(cid)
        for slot in ("main_W", "main_T", "ref_T"):
            _update(shards, f"{cid}/{slot}", getattr(s, slot))
        truth = reader.truth(cid)
        if truth is not None:
            for k in sorted(truth.arrays):
                _update(shards, f"{cid}/truth/{k}", truth.arrays[k])
            shards.update(repr(sorted(truth.crop_rect.items())).encode())
    inputs = hashlib.sha256()
    for cid, p in zip(ids, cache_paths, strict=True):
        _update(inputs, cid, np.load(p, mmap_mode="r"))
    return {"captures": list(ids), "shards_sha256": shards.hexdigest(), "inputs_sha256": inputs.hexdigest()}


def code_version() -> dict[str, Any]:
    """The package's git commit (None outside a git checkout) and the numeric libraries' versions."""
    import cv2
    import torch

    root = Path(__file__).resolve().parents[2]
    commit: str | None = None
    dirty: bool | None = None
    try:
        run = {"cwd": root, "capture_output": True, "text": True, "timeout": 20}
        out = subprocess.run(["git", "rev-parse", "HEAD"], **run)
        if out.returncode == 0:
            commit = out.stdout.strip()
            # Only the package's own files: a scratch file elsewhere in the checkout changes no weights.
            st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "hzsr"], **run)
            dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass  # no git, or not a checkout (an installed wheel): the versions below still locate a mismatch
    return {"commit": commit, "dirty": dirty, "torch": str(torch.__version__), "numpy": str(np.__version__),
            "opencv": str(cv2.__version__)}


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Lines saying where two checkpoints' dicts (``read_checkpoint``) agree and differ, first difference first."""
    import torch

    sa, sb = a.get("state_dict", {}), b.get("state_dict", {})
    same = sum(1 for k in sa if k in sb and sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k]))
    lines = [f"tensors equal: {same} of {len(sa)}"]
    pa, pb = a.get("provenance"), b.get("provenance")
    if not isinstance(pa, dict) or not isinstance(pb, dict):
        lines.append("provenance: missing in " + ("both" if pa is None and pb is None else "A" if pa is None else "B")
                     + " (trained before checkpoints recorded it): data and code cannot be told apart")
        return lines
    da, db = pa.get("data", {}), pb.get("data", {})
    if da.get("captures") != db.get("captures"):
        lines.append("data: different training captures")
    for key, what in (("shards_sha256", "rendered/packed data"), ("inputs_sha256", "aligned inputs")):
        lines.append(f"{what}: {'same' if da.get(key) == db.get(key) else 'DIFFERENT'}")
    if a.get("train") != b.get("train"):
        lines.append("train config: DIFFERENT")
    if a.get("pipeline") != b.get("pipeline"):
        # Inference settings the checkpoint carries; a new field with a default moves it, not the weights.
        keys = sorted(k for k in set(a.get("pipeline") or {}) | set(b.get("pipeline") or {})
                      if (a.get("pipeline") or {}).get(k) != (b.get("pipeline") or {}).get(k))
        lines.append(f"pipeline config: DIFFERENT in {', '.join(keys)}")
    ca, cb = pa.get("code", {}), pb.get("code", {})
    for key in sorted(set(ca) | set(cb)):
        if ca.get(key) != cb.get(key):
            lines.append(f"code.{key}: {ca.get(key)!r} vs {cb.get(key)!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """``python -m hzsr.baseline_model.provenance A.pt B.pt``: print ``compare``'s lines."""
    from hzsr.baseline_model.checkpoint import read_checkpoint

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m hzsr.baseline_model.provenance A.pt B.pt", file=sys.stderr)
        return 2
    for line in compare(read_checkpoint(args[0]), read_checkpoint(args[1])):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
