"""Phone models: cameras, optics and sensors of the virtual phones.

Values follow a current flagship with a 5x periscope: W is a 24 mm-equivalent f/1.85 camera, T a
120 mm-equivalent f/3.5 camera. The equivalent focal ratio is 5 while the f-number ratio is 1.9,
which is what gives T its far shallower depth of field (docs/method.md, step 5: the defocus map).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hzsr.core.geometry import intrinsics_matrix

FULL_RES = (4000, 3000)


@dataclass(frozen=True)
class CameraModel:
    role: str  # "W" or "T"
    camera_id: str
    physical_id: str
    focal_length_mm: float
    f_number: float
    pixel_size_um: float  # at the native 4000x3000 output
    native_size: tuple[int, int] = FULL_RES
    lens_blur_px: float = 0.6  # optics PSF sigma at native resolution (aberrations + diffraction)
    read_noise: float = 0.0025  # sensor read noise, fraction of white, at base ISO
    shot_noise: float = 0.0009  # Poisson gain: variance per unit signal at base ISO
    position_m: tuple[float, float, float] = (0.0, 0.0, 0.0)  # in the phone body, from W

    def fx_native(self) -> float:
        return self.focal_length_mm / (self.pixel_size_um * 1e-3)

    def aperture_m(self) -> float:
        return self.focal_length_mm / self.f_number * 1e-3

    def intrinsics(self, size: tuple[int, int]) -> np.ndarray:
        """K at output size ``size`` = (width, height); square pixels, centred principal point."""
        s = size[0] / self.native_size[0]
        f = self.fx_native() * s
        return intrinsics_matrix(f, f, (size[0] - 1) / 2, (size[1] - 1) / 2)


@dataclass(frozen=True)
class PhoneProfile:
    name: str
    model: str
    product: str
    device: str
    manufacturer: str
    build_fingerprint: str
    sync_type: str  # logical multi-camera sensor sync type
    timestamp_source: str
    frame_period_ns: int
    cameras: tuple[CameraModel, ...] = field(default_factory=tuple)
    readout_ns: int = 10_000_000  # rolling shutter, first to last row (SENSOR_ROLLING_SHUTTER_SKEW)

    def camera(self, role: str) -> CameraModel:
        return next(c for c in self.cameras if c.role == role)


VPHONE_5X = PhoneProfile(
    name="vphone-5x",
    model="HZSR Virtual 5x",
    product="hzsr_v5x",
    device="v5x",
    manufacturer="hzsr",
    build_fingerprint="hzsr/hzsr_v5x/v5x:15/AP4A.250105.002/1:user/release-keys",
    sync_type="APPROXIMATE",
    timestamp_source="REALTIME",
    frame_period_ns=33_333_333,
    cameras=(
        # 24 mm-equivalent: fx = 6.0 mm / 1.9 um = 3158 px at 4000 wide (65 deg horizontal FOV).
        CameraModel("W", "0", "2", 6.0, 1.85, 1.9, lens_blur_px=0.9, position_m=(0.0, 0.0, 0.0)),
        # 120 mm-equivalent: fx = 15.8 mm / 1.0 um = 15800 px, a focal ratio of 5.0.
        CameraModel(
            "T", "0", "4", 15.8, 3.5, 1.0, lens_blur_px=0.7, read_noise=0.0035,
            shot_noise=0.0013, position_m=(0.015, 0.0, 0.0),
        ),
    ),
)

#: Same optics, but timestamps not in the boot-time clock: sub-ms sync is impossible with it.
VPHONE_5X_UNKNOWN_TS = PhoneProfile(
    **{**VPHONE_5X.__dict__, "name": "vphone-5x-unknown-ts", "timestamp_source": "UNKNOWN"}
)

#: Same optics on a slower sensor readout (25 ms first to last row, a 12 MP mode read at ~3.3 us per
#: line): the sync board's decoder must take the readout from each frame, not assume 10 ms.
VPHONE_5X_R25 = PhoneProfile(
    **{**VPHONE_5X.__dict__, "name": "vphone-5x-r25", "model": "HZSR Virtual 5x R25", "product": "hzsr_v5x_r25",
       "device": "v5x_r25", "build_fingerprint": "hzsr/hzsr_v5x_r25/v5x_r25:15/AP4A.250105.002/1:user/release-keys",
       "readout_ns": 25_000_000}
)

PROFILES: dict[str, PhoneProfile] = {p.name: p for p in (VPHONE_5X, VPHONE_5X_R25, VPHONE_5X_UNKNOWN_TS)}


def get_profile(name: str) -> PhoneProfile:
    from hzsr.core.errors import ConfigError

    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown phone profile {name!r}; known: {', '.join(PROFILES)}",
                          field="--profile") from None
