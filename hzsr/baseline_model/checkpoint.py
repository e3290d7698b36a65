"""Checkpoints: one ``.pt`` file holding the UNet's shape, its weights and (for resuming) the run.

Layout (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    format: "hzsr-fusion-unet"   version: 1
    unet: UNetConfig as a dict   state_dict: the UNet's weights
    pipeline: PipelineConfig as a dict (how inference should run it)
    train: TrainConfig as a dict (absent in a weights-only export)
    provenance: the training data's digests and the code's commit (provenance.py; absent before it existed)
    step, optimizer, rng: only in training checkpoints, for ``--resume``

Writes are atomic (temp file in the same folder, fsync, rename), so a crash never leaves a torn
checkpoint behind. Anything wrong on reading is one ``ModelError`` line naming the file.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hzsr.core.errors import ModelError
from hzsr.core.fileio import atomic_write_bytes
from hzsr.core.schema import parse_dataclass, to_plain

if TYPE_CHECKING:
    import torch

FORMAT = "hzsr-fusion-unet"
VERSION = 1
SHIPPED = "shipped.pt"


@dataclass
class LoadedCheckpoint:
    model: torch.nn.Module
    raw: dict[str, Any]
    path: Path

    @property
    def pipeline(self) -> dict[str, Any]:
        return self.raw.get("pipeline") or {}


def shipped_checkpoint_path() -> Path:
    """The small checkpoint shipped inside the package (``hzsr/baseline_model/weights/``)."""
    return Path(str(resources.files("hzsr.baseline_model") / "weights" / SHIPPED))


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (with ``format``/``version`` added) to ``path``, with the
    user's umask like every other file hzsr writes (``core.fileio.atomic_write_bytes``)."""
    import torch

    path = Path(path)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **payload}, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check a checkpoint's dict; any problem is a one-line ``ModelError``."""
    import torch  # here, not at the top: ``hzsr model infer`` reads the shipped path without torch

    path = Path(path)
    if not path.is_file():
        raise ModelError("checkpoint not found", file=path, unreadable=True)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors all mean the same to a user
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"not a readable torch checkpoint ({msg[:120]})", file=path, unreadable=True) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelError(f"not an hzsr fusion checkpoint (format must be {FORMAT!r})", file=path, field="format")
    if raw.get("version") != VERSION:
        raise ModelError(f"unsupported version {raw.get('version')!r}; this hzsr reads {VERSION}", file=path,
                         field="version")
    for key in ("unet", "state_dict"):
        if key not in raw:
            raise ModelError("missing", file=path, field=key)
    return raw


def load_model(path: str | Path | None = None) -> LoadedCheckpoint:
    """Build the UNet a checkpoint describes and load its weights (``None``: the shipped one)."""
    import torch

    from hzsr.baseline_model.unet import FusionUNet, UNetConfig

    path = Path(path) if path is not None else shipped_checkpoint_path()
    raw = read_checkpoint(path)
    cfg, problems = parse_dataclass(UNetConfig, raw["unet"])
    if problems:
        p = problems[0]
        raise ModelError(p.message, file=path, field=f"unet.{p.field}")
    model = FusionUNet(cfg)
    try:
        model.load_state_dict(raw["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"weights do not fit the UNet it describes ({first[:120]})", file=path,
                         field="state_dict") from None
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            # A diverged run saves NaN weights that infer to an all-black image with exit 0.
            bad = int((~torch.isfinite(t)).sum())
            raise ModelError(f"{bad} non-finite weight(s) (NaN or inf): the run that wrote it diverged",
                             file=path, field=f"state_dict.{name}")
    model.eval()
    return LoadedCheckpoint(model, raw, path)


def unet_payload(model: torch.nn.Module) -> dict[str, Any]:
    return {"unet": to_plain(model.cfg), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
