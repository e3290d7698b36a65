"""Layered 3-D scenes textured with the real photographs that scikit-image ships.

A scene is a stack of fronto-parallel planes (the world frame is the main phone's W camera: X
right, Y down, Z forward, metres). Each plane carries a colour photograph for its large-scale look
and a high-passed grey photograph of a real surface (brick, gravel, grass) at about one texel per
T pixel. W, with 5x less angular resolution, averages that detail away; T resolves it. That is the
detail HZSR transfers, so the simulator must have it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np

SCENE_KINDS = ("portrait", "architecture", "landscape", "moving", "night")

_COLOR_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "hubble")
_SURFACES = ("brick", "gravel", "grass")
#: The surface whose fine detail lies on each photograph: what its material would show at T's
#: resolution (fabric and paper ~ fine grain, fur ~ strands, a star field ~ nothing).
_MATERIAL = {"astronaut": "gravel", "chelsea": "grass", "coffee": "gravel", "rocket": "gravel",
             "motorcycle": "gravel", "hubble": None, "brick": "brick", "gravel": "gravel", "grass": "grass"}
#: sRGB-ish tints for grey surface photographs, linear RGB multipliers.
_SURFACE_TINT = {"brick": (0.55, 0.28, 0.2), "gravel": (0.45, 0.42, 0.38), "grass": (0.18, 0.36, 0.1)}


def srgb_to_linear(img_u8: np.ndarray) -> np.ndarray:
    lut = ((np.arange(256, dtype=np.float32) / 255.0) ** 2.2).astype(np.float32)
    return lut[img_u8]


@cache
def photo(name: str) -> np.ndarray:
    """A colour photograph, linear RGB float32 in [0, 1]."""
    import skimage.data as data

    loaders = {
        "astronaut": data.astronaut,
        "chelsea": data.chelsea,
        "coffee": data.coffee,
        "rocket": data.rocket,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
        "hubble": data.hubble_deep_field,
    }
    if name in _SURFACES:
        grey = getattr(data, name)().astype(np.uint8)
        lin = srgb_to_linear(grey)
        tint = np.array(_SURFACE_TINT[name], np.float32) / 0.35
        return np.ascontiguousarray(lin[..., None] * tint[None, None, :]).clip(0, 1)
    if name not in loaders:  # the photographs of the texture pools (hzsr.sim.textures)
        from hzsr.sim.textures import load_photo_u8

        return np.ascontiguousarray(srgb_to_linear(load_photo_u8(name)))
    img = loaders[name]()
    return np.ascontiguousarray(srgb_to_linear(img[..., :3].astype(np.uint8)))


@cache
def detail(name: str) -> np.ndarray:
    """Zero-mean, unit-std high-pass of a grey surface photograph, or of procedural detail
    ``GENERATOR-SEED`` (``hzsr.sim.textures``) (float32)."""
    import skimage.data as data

    from hzsr.sim.textures import highpass_periodic, is_procedural, procedural_detail

    if is_procedural(name):
        return highpass_periodic(procedural_detail(name))

    g = getattr(data, name)().astype(np.float32)
    hp = g - cv2.GaussianBlur(g, (0, 0), 3.0)
    return ((hp - hp.mean()) / (hp.std() + 1e-6)).astype(np.float32)


@dataclass
class Layer:
    """One textured plane.

    The texture's pixel ``(u, v)`` sits at world ``(X, Y, Z) = (cx + (u - w/2) s, cy + (v - h/2) s,
    depth_m)`` at ``t = 0`` and moves with ``velocity_mps`` (X and Y, metres per second).
    """

    name: str
    photo: str
    depth_m: float
    center_m: tuple[float, float]
    width_m: float  # width of the photograph in the world; height follows its aspect ratio
    shape: str = "full"  # full | ellipse | roundrect
    detail: str = "gravel"
    detail_gain: float = 0.25  # contrast of the fine surface detail
    detail_texel_m: float = 0.001  # size of one detail texel in the world
    velocity_mps: tuple[float, float] = (0.0, 0.0)  # at t = 0; movers oscillate (see render.layer_origin)
    gain: float = 1.0  # albedo multiplier
    tile: bool = False  # mirror-tile the photograph beyond its edges (large planes)
    motion_period_s: float = 0.5  # movers oscillate with this period
    photo_repeat: int = 1  # the photograph is mirror-tiled this many times across the layer

    @property
    def photo_texel_m(self) -> float:
        """World size of one texel of the colour photograph (``texel_m / photo_repeat``)."""
        return self.texel_m / self.photo_repeat

    @property
    def texel_m(self) -> float:
        return self.width_m / photo(self.photo).shape[1]


@dataclass
class Scene:
    scene_id: str
    kind: str
    tags: list[str]
    layers: list[Layer]  # back to front
    subject: str  # name of the layer autofocus locks on
    illuminance: float = 1.0  # 1 = daylight; night scenes are ~0.04
    extra: dict = field(default_factory=dict)

    def layer(self, name: str) -> Layer:
        return next(lay for lay in self.layers if lay.name == name)

    def depth_order(self) -> list[int]:
        """Indices back to front (the list order, kept sorted by depth)."""
        return list(range(len(self.layers)))


@cache
def alpha_mask(shape: str, h: int, w: int) -> np.ndarray:
    """Coverage of a layer over its texture grid, with a soft 2-texel edge."""
    if shape == "full":
        return np.ones((h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if shape == "ellipse":
        r = np.sqrt(((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2)
        edge = 2.0 / min(h, w) * 2
        return np.clip((1 - r) / edge, 0, 1).astype(np.float32)
    if shape == "roundrect":
        rad = 0.15 * min(h, w)
        dx = np.maximum(np.abs(xx - (w - 1) / 2) - (w / 2 - rad), 0)
        dy = np.maximum(np.abs(yy - (h - 1) / 2) - (h / 2 - rad), 0)
        d = np.sqrt(dx**2 + dy**2) - rad
        return np.clip(-d / 2.0, 0, 1).astype(np.float32)
    raise ValueError(f"unknown layer shape {shape!r}")


def _t_texel(depth: float, fx_t_native: float) -> float:
    """World size of one native-resolution T pixel at ``depth``: detail at T's own scale."""
    return depth / fx_t_native


def make_scene(kind: str, index: int, rng: np.random.Generator, fx_t_native: float,
               textures: str = "all") -> Scene:
    """Build a random scene of ``kind`` (one of ``SCENE_KINDS``, or ``sync-board``).

    ``textures`` is the texture pool (``hzsr.sim.textures.POOLS``): ``all`` builds the historical
    scenes below; ``train`` and ``eval`` build photographic scenes from disjoint texture sets
    (``hzsr.sim.photo_scene``).
    """
    if kind == "sync-board":
        from hzsr.sim.syncboard import board_scene

        return board_scene(index, rng)
    if kind not in SCENE_KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(SCENE_KINDS)}")
    if textures != "all":
        from hzsr.sim.photo_scene import photographic_scene

        return photographic_scene(kind, index, rng, fx_t_native, textures)
    u = rng.uniform
    base_kind = kind if kind != "night" else str(rng.choice(["portrait", "architecture", "landscape"]))
    layers: list[Layer] = []

    def surface_layer(name, photo_name, depth, width, shape, center=(0.0, 0.0), surface=None,
                      gain=1.0, tile=False, vel=(0.0, 0.0), detail_gain=0.25):
        surf = surface or _MATERIAL[photo_name]
        # A native T pixel must never see less than one photograph texel (else T shows blocks):
        # past that, the photograph repeats across the layer instead of being magnified.
        repeat = int(np.ceil(width / photo(photo_name).shape[1] / _t_texel(depth, fx_t_native)))
        layers.append(Layer(
            name, photo_name, depth, center, width, shape, surf or "gravel", detail_gain if surf else 0.0,
            _t_texel(depth, fx_t_native) * u(0.8, 1.4), vel, gain, tile, photo_repeat=max(1, repeat),
        ))

    if base_kind == "portrait":
        bg_d = u(8, 20)
        surface_layer("background", str(rng.choice(["rocket", "coffee", "motorcycle"])), bg_d,
                      bg_d * 1.6, "full", tile=True, detail_gain=0.2)
        subj_d = u(1.8, 3.2)
        surface_layer("subject", "astronaut", subj_d, subj_d * u(0.28, 0.38), "ellipse",
                      center=(u(-0.05, 0.05) * subj_d, u(-0.03, 0.03) * subj_d), detail_gain=0.15)
        fg_d = u(0.7, 1.1)
        side = rng.choice([-1, 1])
        surface_layer("foreground", "chelsea", fg_d, fg_d * 0.35, "roundrect",
                      center=(side * fg_d * u(0.17, 0.25), fg_d * u(0.0, 0.08)))
        subject = "subject"
        tags = ["portrait", "shallow-dof"]
    elif base_kind == "architecture":
        bg_d = u(60, 150)
        surface_layer("sky", "hubble", bg_d, bg_d * 1.8, "full", tile=True, gain=0.6)
        fac_d = u(12, 35)
        surface_layer("facade", "rocket", fac_d, fac_d * u(1.0, 1.3), "roundrect",
                      center=(u(-0.08, 0.08) * fac_d, u(0.0, 0.1) * fac_d), surface="brick",  # a mural
                      detail_gain=0.2)
        sign_d = fac_d * u(0.35, 0.6)
        surface_layer("sign", "coffee", sign_d, sign_d * u(0.12, 0.2), "roundrect",
                      center=(u(-0.1, 0.1) * sign_d, u(-0.06, 0.06) * sign_d))
        subject = "facade"
        tags = ["architecture", "static"]
    elif base_kind == "landscape":
        far = u(300, 800)
        surface_layer("horizon", str(rng.choice(["rocket", "motorcycle"])), far, far * 1.7, "full",
                      tile=True, detail_gain=0.1)
        mid = u(40, 90)
        surface_layer("field", "grass", mid, mid * u(1.0, 1.3), "roundrect",
                      center=(u(-0.1, 0.1) * mid, mid * u(0.3, 0.4)), surface="grass")
        near = u(12, 25)
        surface_layer("rocks", "gravel", near, near * 0.25, "ellipse",
                      center=(u(-0.12, 0.12) * near, near * u(0.02, 0.08)), surface="gravel")
        subject = "rocks"
        tags = ["landscape", "deep-dof"]
    else:  # moving
        bg_d = u(10, 25)
        surface_layer("background", str(rng.choice(["rocket", "coffee"])), bg_d, bg_d * 1.6, "full",
                      tile=True, detail_gain=0.2)
        d1 = u(2.5, 5.0)
        speed = u(0.8, 3.0) * rng.choice([-1, 1])
        surface_layer("mover", "motorcycle", d1, d1 * u(0.1, 0.16), "roundrect",  # about half of T's view
                      center=(u(-0.05, 0.05) * d1, u(-0.02, 0.04) * d1),
                      vel=(speed, u(-0.1, 0.1)))
        d2 = u(1.5, 2.4)
        surface_layer("walker", "chelsea", d2, d2 * u(0.06, 0.1), "ellipse",
                      center=(u(-0.2, 0.2) * d2, u(0.0, 0.08) * d2),
                      vel=(u(-1.2, 1.2), 0.0))
        subject = "mover"
        tags = ["moving", "dynamic"]

    layers.sort(key=lambda lay: -lay.depth_m)
    illum = 1.0
    if kind == "night":
        illum = u(0.003, 0.008)
        tags = [*tags, "night", "low-light"]
    return Scene(f"{kind}-{index:04d}", kind, tags, layers, subject, illum)
