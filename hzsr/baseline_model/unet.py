"""The fusion network: a 5-level UNet on (Y_src, warped Y_ref, M_occ) -> Y_fusion.

``docs/method.md``, step 4. The channel widths are not published; they live in ``UNetConfig``. The
network predicts a residual, ``Y_fusion = B + f(Y_src, ~Y_ref, M_occ)``, on a base ``B`` that an
untrained or unsure network falls back to rather than to noise: ``B = Y_src`` (``residual_on:
source``, the original checkpoints) or ``B = Y_src + (1 - M_occ)(~Y_ref - Y_src)`` (``residual_on:
reference``: the reference wherever it is not occluded, i.e. the no-network blend), or
``B = Y_src + g (1 - M_occ)(~Y_ref - Y_src)`` with a learnt per-pixel gate ``g = sigmoid(.)`` in
(0, 1) (``residual_on: gate``; ``g`` starts near 1, so an untrained network is again nearly the
no-network blend).

Level ``l`` runs at ``1 / 2^l`` resolution with ``widths[l]`` channels; the encoder goes down with
stride-2 convolutions and the decoder up with bilinear upsampling and skip concatenation. Inputs
must have sides divisible by ``2^(levels - 1)`` (``size_multiple``); ``tiling.run_tiled`` pads.

``stem: unshuffle`` (issue 19) moves every level down one octave: the (re-expressed) inputs are
folded 2x2 into channels (``pixel_unshuffle``: 12 channels at half resolution), level ``l`` runs
at ``1 / 2^(l+1)``, and the head (and gate) emit 4 channels per half-resolution pixel, unfolded
back to the full-resolution residual (``pixel_shuffle``). The head still sees the inputs
themselves, so "copy the reference's detail at this sub-pixel" stays one linear step; the base
``B`` is computed at full resolution as before. A quarter of the pixels per level (about a
quarter of the multiply-adds for the same widths); sides must then be divisible by ``2^levels``.
``tail: C`` adds a small full-resolution stage after it: the half-resolution head emits ``C``
features per sub-pixel, unfolded to full resolution, then one 3x3 conv over them and the inputs
(``C`` channels, LeakyReLU) and the last 3x3 conv over its output and the inputs, which gives the
residual.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from hzsr.baseline_model.config import UNetConfig

# The gate's initial logit: sigmoid(3) = 0.95, so an untrained gated network copies 95% of the
# unoccluded reference (near the no-network blend) and the gate's gradient is not saturated.
GATE_BIAS0 = 3.0


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.1, inplace=True))


class FusionUNet(nn.Module):
    """``forward(x: Nx3xHxW) -> Nx1xHxW`` luminance; channel 0 of ``x`` is Y_src."""

    def __init__(self, cfg: UNetConfig | None = None):
        super().__init__()
        self.cfg = cfg or UNetConfig()
        w = list(self.cfg.widths)
        self.levels = len(w)
        # stem: unshuffle folds each 2x2 block of the inputs into channels (and the head's output
        # back out of them): factor 2 per side, 4 sub-pixels.
        self.fold = 2 if self.cfg.stem == "unshuffle" else 1
        cz = self.cfg.in_channels * self.fold**2  # the inputs as level 0 (and the head) see them
        cout = self.fold**2  # the head's channels: one residual per sub-pixel
        self.enc = nn.ModuleList()
        for lvl in range(self.levels):
            cin = cz if lvl == 0 else w[lvl - 1]
            self.enc.append(nn.Sequential(_conv(cin, w[lvl], stride=1 if lvl == 0 else 2), _conv(w[lvl], w[lvl])))
        self.dec = nn.ModuleList()
        for lvl in range(self.levels - 1):
            self.dec.append(nn.Sequential(_conv(w[lvl] + w[lvl + 1], w[lvl]), _conv(w[lvl], w[lvl])))
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        # The head sees the inputs as well as the decoder's features: "take the reference's
        # detail here" is then one linear step (weights -1, +1 on Y_src, ~Y_ref), which the
        # stack of convolutions alone learns very slowly.
        self.tail = None
        if self.cfg.tail:
            # stem: unshuffle with a full-resolution tail: the head's features, unfolded, and the
            # full-resolution inputs through one nonlinear conv; the last conv (``self.head``'s
            # role: near-zero start) sees the inputs again for the linear copy.
            c = self.cfg.tail
            self.unfolded = nn.Conv2d(w[0] + cz, c * cout, 3, padding=1)
            self.tail = _conv(c + self.cfg.in_channels, c)
            self.head = nn.Conv2d(c + self.cfg.in_channels, 1, 3, padding=1)
        else:
            self.head = nn.Conv2d(w[0] + cz, cout, 3, padding=1)
        # Start near the identity on Y_src: a small residual head.
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)
        # residual_on: gate. A conv stack with a linear head cannot easily form "this pixel's
        # reference detail times a decision made from its context": the detail is high-frequency
        # and the decision lives in the features, and their product needs a multiplication the
        # LeakyReLU layers only approximate. The gate makes the copy-or-not decision a separate
        # sigmoid map that multiplies the reference's detail, leaving the residual head for
        # corrections. Created after the head so the other modules' initial weights (same seed)
        # are those of the other parameterisations.
        self.gate = None
        if self.cfg.residual_on == "gate":
            self.gate = nn.Conv2d(w[0] + cz, cout, 3, padding=1)
            nn.init.normal_(self.gate.weight, std=1e-3)
            nn.init.constant_(self.gate.bias, GATE_BIAS0)

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.levels - 1) * self.fold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Re-express the inputs as (Y_src - 1/2, ~Y_ref - Y_src, M_occ): zero-centred, with the
        # reference's extra detail as its own channel. Same information, far better conditioned:
        # on raw luminances the "copy the detail" direction is a small difference of two large,
        # correlated gradients, and Adam barely moves along it.
        z = torch.cat([x[:, :1] - 0.5, x[:, 1:2] - x[:, :1], x[:, 2:]], dim=1)
        zf = z if self.fold == 1 else F.pixel_unshuffle(z, self.fold)
        skips = []
        h = zf
        for enc in self.enc:
            h = enc(h)
            skips.append(h)
        for lvl in range(self.levels - 2, -1, -1):
            h = self.dec[lvl](torch.cat([skips[lvl], self.up(h)], dim=1))
        hz = torch.cat([h, zf], dim=1)
        if self.cfg.residual_on == "source":
            base = x[:, :1]
        elif self.gate is not None:
            base = x[:, :1] + torch.sigmoid(self._unfold(self.gate(hz))) * (1 - x[:, 2:3]) * z[:, 1:2]
        else:
            base = x[:, :1] + (1 - x[:, 2:3]) * z[:, 1:2]
        if self.tail is not None:
            t = self.tail(torch.cat([self._unfold(self.unfolded(hz)), z], dim=1))
            return base + self.head(torch.cat([t, z], dim=1))
        return base + self._unfold(self.head(hz))

    def _unfold(self, y: torch.Tensor) -> torch.Tensor:
        """The head's (or gate's) output at full resolution: depth-to-space under ``stem: unshuffle``."""
        return y if self.fold == 1 else F.pixel_shuffle(y, self.fold)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
