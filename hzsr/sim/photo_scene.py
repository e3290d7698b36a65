"""Scenes that look like photographs: whole photographs at their own scale, several per scene.

The scenes of the ``train`` and ``eval`` texture pools (``hzsr.sim.textures``). Unlike the
historical ``all`` scenes, no photograph is mirror-tiled into a repeating pattern or repeated
across a layer: each layer shows one whole photograph, once, at a world size that puts it at its
depth the way an object of that size would stand there:

- a **backdrop** wide enough to fill W's whole view (W sees it at about one texel per pixel);
- a **subject** that autofocus locks on, larger than T's view, near the optical axis;
- one to three **props** at their own depths, partly across T's view (occlusions, parallax);
- per kind, the historical depth ranges (portrait: subject at 1.8-3.2 m before a backdrop at
  8-20 m; architecture: a facade at 12-35 m before a sky at 60-150 m; landscape: a near subject
  at 12-25 m, a field at 40-90 m, a horizon at 300-800 m; moving: two movers before a backdrop).

T magnifies a photograph well past its resolution (a backdrop texel covers ~7 T px), so each
layer carries natural fine detail *below* the photograph's resolution: a surface photograph's
high-pass or procedural ``1/f`` detail (``textures.procedural_detail``), at about one texel per
native T pixel. W averages it away; T resolves it, which is the detail HZSR must transfer.
"""

from __future__ import annotations

import numpy as np

from hzsr.sim.scene import Layer, Scene, photo
from hzsr.sim.textures import POOL_TEXTURES

#: ``2 tan(HFOV / 2)`` of the wide camera (24 mm equivalent, 65 deg): W's view is this many
#: depths wide. A backdrop covers ``BACKDROP_COVER`` times W's view, so W never sees its edge.
W_VIEW_WIDTH = 1.27
W_VIEW_HEIGHT = 0.95
BACKDROP_COVER = 1.45


def photographic_scene(kind: str, index: int, rng: np.random.Generator, fx_t: float, pool_name: str) -> Scene:
    """A random scene of ``kind`` built from the photographs and detail of pool ``pool_name``.

    Args:
        fx_t: T's focal length in pixels at the session's size (fine detail is made for it).
    """
    if pool_name not in POOL_TEXTURES:
        raise ValueError(f"unknown texture pool {pool_name!r}; known: all, {', '.join(POOL_TEXTURES)}")
    pool = POOL_TEXTURES[pool_name]
    u = rng.uniform
    used: set[str] = set()
    layers: list[Layer] = []

    def pick(names: tuple[str, ...]) -> str:
        fresh = [n for n in names if n not in used] or list(names)
        name = str(rng.choice(fresh))
        used.add(name)
        return name

    def add(name: str, photo_name: str, depth: float, width: float, shape: str, center=(0.0, 0.0),
            vel=(0.0, 0.0), tile: bool = False, detail_gain: float | None = None) -> None:
        layers.append(Layer(
            name, photo_name, depth, center, width, shape, detail=str(rng.choice(pool.details)),
            detail_gain=u(0.15, 0.3) if detail_gain is None else detail_gain,
            detail_texel_m=depth / fx_t * u(0.8, 1.4), velocity_mps=vel, gain=u(0.8, 1.1), tile=tile,
        ))

    def backdrop(depth: float) -> None:
        name = pick(pool.backdrops)
        h, w = photo(name).shape[:2]
        width = BACKDROP_COVER * depth * max(W_VIEW_WIDTH, W_VIEW_HEIGHT * w / h)
        # tile only as a safety net beyond the edges (a bumped rig); W's view stays inside it.
        add("backdrop", name, depth, width, "full", tile=True, detail_gain=u(0.1, 0.2))

    def props(n: int, near: float, far: float) -> None:
        for i in range(n):
            d = u(near, far)
            side = rng.choice([-1, 1])
            add(f"prop{i}", pick(pool.props), d, d * u(0.12, 0.3), str(rng.choice(["roundrect", "ellipse", "full"])),
                center=(side * d * u(0.06, 0.2), d * u(-0.08, 0.1)))

    base_kind = kind if kind != "night" else str(rng.choice(["portrait", "architecture", "landscape"]))
    if base_kind == "portrait":
        bg = u(8, 20)
        backdrop(bg)
        d = u(1.8, 3.2)
        add("subject", pick(pool.subjects), d, d * u(0.3, 0.42), str(rng.choice(["ellipse", "roundrect"])),
            center=(u(-0.05, 0.05) * d, u(-0.03, 0.03) * d))
        props(int(rng.integers(1, 3)), 3.5, 0.7 * bg)
        fg = u(0.7, 1.1)
        add("foreground", pick(pool.props), fg, fg * u(0.25, 0.35), "roundrect",
            center=(rng.choice([-1, 1]) * fg * u(0.17, 0.25), fg * u(0.0, 0.08)))
        subject, tags = "subject", ["portrait", "shallow-dof"]
    elif base_kind == "architecture":
        backdrop(u(60, 150))
        d = u(12, 35)
        add("facade", pick(pool.subjects + pool.backdrops), d, d * u(0.9, 1.3), "roundrect",
            center=(u(-0.08, 0.08) * d, u(0.0, 0.1) * d))
        s = d * u(0.35, 0.6)
        add("sign", pick(pool.props), s, s * u(0.12, 0.2), "roundrect", center=(u(-0.1, 0.1) * s, u(-0.06, 0.06) * s))
        props(int(rng.integers(1, 3)), 3.0, 0.8 * d)
        subject, tags = "facade", ["architecture", "static"]
    elif base_kind == "landscape":
        backdrop(u(300, 800))
        mid = u(40, 90)
        add("field", pick(pool.backdrops + pool.props), mid, mid * u(1.0, 1.3), "roundrect",
            center=(u(-0.1, 0.1) * mid, mid * u(0.3, 0.4)))
        near = u(12, 25)
        add("subject", pick(pool.subjects), near, near * u(0.22, 0.3), "ellipse",
            center=(u(-0.12, 0.12) * near, near * u(0.02, 0.08)))
        props(int(rng.integers(1, 3)), 6.0, 0.8 * near)
        subject, tags = "subject", ["landscape", "deep-dof"]
    else:  # moving
        backdrop(u(10, 25))
        d1 = u(2.5, 5.0)
        add("mover", pick(pool.subjects), d1, d1 * u(0.1, 0.16), "roundrect",
            center=(u(-0.05, 0.05) * d1, u(-0.02, 0.04) * d1), vel=(u(0.8, 3.0) * rng.choice([-1, 1]), u(-0.1, 0.1)))
        d2 = u(1.5, 2.4)
        add("walker", pick(pool.props), d2, d2 * u(0.06, 0.1), "ellipse",
            center=(u(-0.2, 0.2) * d2, u(0.0, 0.08) * d2), vel=(u(-1.2, 1.2), 0.0))
        props(1, 5.5, 9.0)
        subject, tags = "mover", ["moving", "dynamic"]

    layers.sort(key=lambda lay: -lay.depth_m)
    illum = 1.0
    if kind == "night":
        illum = u(0.003, 0.008)
        tags = [*tags, "night", "low-light"]
    return Scene(f"{kind}-{index:04d}", kind, [*tags, f"textures-{pool_name}"], layers, subject, illum)
