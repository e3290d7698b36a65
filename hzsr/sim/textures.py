"""Texture sources of simulated scenes, and the pools that keep training and evaluation apart.

Every texture is either a real photograph that a package ships (no download: scikit-image's
``skimage.data`` files) or procedural fine detail drawn from a seeded generator. Provenance and
licence of each photograph are in ``PHOTOS`` and in docs/model.md.

A **pool** says which of them a session's scenes may use (``SimConfig.textures``):

- ``all``: the historical scenes (``hzsr.sim.scene.make_scene``'s mirror-tiled photographs and
  high-passed surface photographs), unchanged, so every figure made before the pools stays put;
- ``train`` and ``eval``: photographic scenes (``hzsr.sim.photo_scene``) from two *disjoint*
  sets of photographs and of fine-detail sources (surface photographs and procedural generator
  seeds), so a model trained on ``train`` scenes is scored on textures it never saw.

Photographs that a real-image evaluation uses (the Middlebury motorcycle pair of
``bench/eval_real.py``, matplotlib's ``grace_hopper.jpg`` of the geometry tests) are in neither
pool: ``EXCLUDED``.

Procedural detail is named ``GENERATOR-SEED`` (``fbm-3``, ``fibre-12``, ``cells-101``):

- ``fbm``: isotropic noise with a ``1/f`` amplitude spectrum (the statistics of natural images);
- ``fibre``: the same, stretched 6:1 along a seeded angle (wood grain, fabric, brushed metal);
- ``cells``: the distance to the nearest of seeded random points plus ``1/f`` noise (stones,
  gravel, pores).

Each is high-passed the way surface photographs are (``g - G_3 * g``) and normalised to zero
mean and unit deviation: detail below a photograph's resolution, never its large-scale look.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

POOLS = ("all", "train", "eval")

#: Size (texels) of a procedural detail texture; it is periodic, so it tiles without seams.
DETAIL_SIZE = 1024
#: Gaussian sigma (texels) of the high-pass applied to every detail source.
DETAIL_HIGHPASS_SIGMA = 3.0
GENERATORS = ("fbm", "fibre", "cells")


@dataclass(frozen=True)
class PhotoSource:
    """One photograph shipped with a package: how to load it and where it comes from."""

    package: str  # the package that ships the file (no download at run time)
    loader: str  # ``skimage.data`` function, or ``matplotlib:FILE`` for cbook.get_sample_data
    provenance: str
    licence: str
    tint: tuple[float, float, float] | None = None  # linear RGB multipliers for grey photographs


#: Every real photograph a simulated scene or a real-image evaluation may use.
PHOTOS: dict[str, PhotoSource] = {
    "astronaut": PhotoSource("scikit-image", "astronaut", "NASA, astronaut Eileen Collins (flic.kr/p/r9qvLn)",
                             "public domain"),
    "chelsea": PhotoSource("scikit-image", "chelsea", "Stefan van der Walt, the cat Chelsea", "CC0"),
    "coffee": PhotoSource("scikit-image", "coffee", "Rachel Michetti, a cup of coffee", "CC0"),
    "rocket": PhotoSource("scikit-image", "rocket", "SpaceX, DSCOVR launch on Falcon 9", "public domain (CC0)"),
    "hubble": PhotoSource("scikit-image", "hubble_deep_field", "NASA/ESA, Hubble eXtreme Deep Field (2012)",
                          "public domain (NASA media guidelines)"),
    "retina": PhotoSource("scikit-image", "retina", "Häggström, fundus photograph of a left eye (Wikimedia)",
                          "CC0"),
    "immunohistochemistry": PhotoSource("scikit-image", "immunohistochemistry",
                                        "Immunohistochemical (IHC) staining, colon tissue (Wikimedia)",
                                        "public domain"),
    "camera": PhotoSource("scikit-image", "camera", "Lav Varshney, a man with a camera (grey)", "CC0",
                          tint=(1.0, 0.93, 0.8)),
    "page": PhotoSource("scikit-image", "page", "scanned page of a book (grey)", "public domain",
                        tint=(0.95, 0.92, 0.85)),
    "coins": PhotoSource("scikit-image", "coins", "Greek coins, Brooklyn Museum open collection (grey)",
                         "no known copyright restrictions", tint=(0.95, 0.85, 0.6)),
    "moon": PhotoSource("scikit-image", "moon", "the lunar surface (grey)", "public domain",
                        tint=(0.9, 0.9, 0.95)),
    "text": PhotoSource("scikit-image", "text", "text on a street corner, Wikipedia File:Corner.png (grey)",
                        "public domain", tint=(0.85, 0.9, 1.0)),
    "motorcycle": PhotoSource("scikit-image", "stereo_motorcycle",
                              "Middlebury Stereo 2014, Motorcycle (Scharstein et al., GCPR 2014), left view",
                              "Middlebury stereo data sets: free for research use with citation"),
    "grace_hopper": PhotoSource("matplotlib", "matplotlib:grace_hopper.jpg",
                                "US Navy, portrait of Rear Admiral Grace Hopper (1984)", "public domain"),
}
#: Grey surface photographs whose high-pass is fine detail (skimage.data; CC0 textures).
SURFACES = {"brick": "CC0Textures Bricks25 (cc0textures.com)", "gravel": "CC0Textures Gravel04",
            "grass": "linolafett, Grass 01 (DeviantArt)"}


@dataclass(frozen=True)
class Pool:
    """The textures a pool's scenes may use, by role."""

    backdrops: tuple[str, ...]  # photographs wide enough to stand behind a whole scene
    subjects: tuple[str, ...]  # what autofocus locks on: a person, an animal, an object
    props: tuple[str, ...]  # further photographs placed at their own depths
    details: tuple[str, ...]  # surface photographs and procedural ``GENERATOR-SEED`` names

    def photos(self) -> set[str]:
        return {*self.backdrops, *self.subjects, *self.props}


def _procedural(seeds: range) -> tuple[str, ...]:
    return tuple(f"{g}-{s}" for s in seeds for g in GENERATORS)


#: Disjoint by construction; ``check_pools`` proves it at import and the tests again.
POOL_TEXTURES: dict[str, Pool] = {
    "train": Pool(backdrops=("rocket", "coffee", "camera"), subjects=("astronaut", "camera", "coffee"),
                  props=("immunohistochemistry", "page", "astronaut", "rocket", "coffee"),
                  details=("brick", "gravel", *_procedural(range(1, 9)))),
    "eval": Pool(backdrops=("hubble", "moon", "chelsea"), subjects=("chelsea", "coins", "retina"),
                 props=("retina", "coins", "text", "moon"),
                 details=("grass", *_procedural(range(101, 105)))),
}
#: Photographs of real-image evaluations: in no pool, so no simulated scene ever shows them.
EXCLUDED = ("motorcycle", "grace_hopper")


def check_pools() -> None:
    """Raise ``AssertionError`` unless the pools share no photograph and no detail source."""
    tr, ev = POOL_TEXTURES["train"], POOL_TEXTURES["eval"]
    shared = (tr.photos() & ev.photos()) | (set(tr.details) & set(ev.details))
    assert not shared, f"texture pools share {sorted(shared)}"
    for name, pool in POOL_TEXTURES.items():
        assert not pool.photos() & set(EXCLUDED), f"pool {name} holds a real-evaluation photograph"
        assert pool.photos() <= set(PHOTOS), f"pool {name}: unknown photographs"


check_pools()


def load_photo_u8(name: str) -> np.ndarray:
    """A photograph of ``PHOTOS`` as uint8 RGB (grey ones tinted), from the package's own files."""
    src = PHOTOS[name]
    if src.loader.startswith("matplotlib:"):
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data(src.loader.split(":", 1)[1])) as im:
            return np.asarray(im.convert("RGB"))
    import skimage.data as data

    img = getattr(data, src.loader)()
    if src.loader == "stereo_motorcycle":
        img = img[0]
    if img.ndim == 2:
        tint = np.array(src.tint or (1.0, 1.0, 1.0), np.float32)
        img = np.clip(img[..., None].astype(np.float32) * tint, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img[..., :3])


def is_procedural(name: str) -> bool:
    gen, _, seed = name.partition("-")
    return gen in GENERATORS and seed.isdigit()


def _one_over_f(rng: np.random.Generator, n: int, stretch: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """Periodic noise with amplitude ``|F(f)| ~ 1/f`` (``f`` measured in a frame stretched by
    ``stretch`` along ``angle``), random phases; zero mean, unit deviation."""
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    c, s = np.cos(angle), np.sin(angle)
    fu, fv = c * fx + s * fy, -s * fx + c * fy
    f = np.sqrt((fu * stretch) ** 2 + fv**2)
    f[0, 0] = 1.0
    amp = 1.0 / f
    amp[0, 0] = 0.0
    phase = rng.uniform(0, 2 * np.pi, amp.shape)
    img = np.fft.irfft2(amp * np.exp(1j * phase), s=(n, n))
    return ((img - img.mean()) / (img.std() + 1e-12)).astype(np.float32)


@cache
def procedural_detail(name: str, n: int = DETAIL_SIZE) -> np.ndarray:
    """The raw (not yet high-passed) texture of procedural detail ``name`` (``GENERATOR-SEED``)."""
    gen, _, seed_text = name.partition("-")
    if gen not in GENERATORS or not seed_text.isdigit():
        raise ValueError(f"unknown detail source {name!r}; procedural ones are GENERATOR-SEED with "
                         f"GENERATOR one of {', '.join(GENERATORS)}")
    rng = np.random.default_rng([int(seed_text), GENERATORS.index(gen), 20])
    if gen == "fbm":
        return _one_over_f(rng, n)
    if gen == "fibre":
        return _one_over_f(rng, n, stretch=6.0, angle=float(rng.uniform(0, np.pi)))
    # cells: distance to the nearest seed point, periodic (points copied across the wrap).
    pts = rng.uniform(0, n, (int(n * n / 400), 2))
    mask = np.full((3 * n, 3 * n), 255, np.uint8)
    for dy in (0, n, 2 * n):
        for dx in (0, n, 2 * n):
            q = np.round(pts + (dx, dy)).astype(int).clip(0, 3 * n - 1)
            mask[q[:, 1], q[:, 0]] = 0
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)[n:2 * n, n:2 * n]
    dist = (dist - dist.mean()) / (dist.std() + 1e-12)
    return (dist + 0.5 * _one_over_f(rng, n)).astype(np.float32)


def highpass_periodic(g: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-deviation high-pass ``g - G_sigma * g`` (sigma ``DETAIL_HIGHPASS_SIGMA``) of
    a periodic texture, blurred across its wrap so it stays periodic."""
    pad = int(4 * DETAIL_HIGHPASS_SIGMA)
    big = np.pad(g.astype(np.float32), pad, mode="wrap")
    hp = g - cv2.GaussianBlur(big, (0, 0), DETAIL_HIGHPASS_SIGMA)[pad:-pad, pad:-pad]
    return ((hp - hp.mean()) / (hp.std() + 1e-6)).astype(np.float32)
