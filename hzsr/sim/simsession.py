"""Write a whole simulated session folder: ``hzsr sim session``.

This is the renderer-only path (no ADB): it plays the part of both phones and the host, using the
same clock, stream and camera models as the virtual phones, and writes what a real capture session
would. Per capture it simulates the host's trigger, each phone's clock-domain conversion and sensor
stream, then renders the three frames at the instants each was really exposed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hzsr.core import records as R
from hzsr.core.clock import fit_drift
from hzsr.core.fileio import atomic_write_bytes, sha256_bytes
from hzsr.core.geometry import CropRect, tele_crop_rect
from hzsr.core.journal import Journal
from hzsr.core.schema import to_plain
from hzsr.sim.profiles import PhoneProfile, get_profile
from hzsr.sim.render import (
    ONE,
    defocus_sigma_px,
    expose,
    motion_blur,
    render_linear16,
    rotation_xyz,
    true_flow,
    visible_layer_map,
)
from hzsr.sim.rig import CAMERAS, SLOTS, FrameExposure, RigGeometry, af_roi, auto_exposure, render_frame
from hzsr.sim.scene import SCENE_KINDS, Scene, make_scene
from hzsr.sim.timing import LinkModel, PhoneClock, next_frame_ns, sntp_best_sample
from hzsr.sim.truth import write_capture_truth, write_session_truth

DEVICE_ROLES = ("main", "reference")


@dataclass
class SimFaults:
    """Timing faults to inject, for testing the sync checks."""

    clock_jump_before: int | None = None  # capture index before which the reference clock jumps
    clock_jump_ms: float = 40.0
    late_frame_at: list[int] = field(default_factory=list)  # captures whose ref_T is one period late
    unknown_timestamp_source: bool = False  # reference phone reports SENSOR timestamps as UNKNOWN


#: Capture defects ``hzsr qa check`` must catch (``SimConfig.defects``):
#: - refocus: the reference phone focused on another plane than the main phone's subject;
#: - moving_skew: a scene with movers, and the reference frame 3-5 frame periods late;
#: - motion_blur: the rig shook during main T's exposure (a line blur of 1-2 % of the width);
#: - rig_bump: the reference phone knocked, turned by 30-50 % of T's field of view;
#: - overexposure: the main phone's auto-exposure fooled, 2-3 stops too much on W and T.
DEFECTS = ("refocus", "moving_skew", "motion_blur", "rig_bump", "overexposure")


@dataclass
class SimConfig:
    """Options of ``hzsr sim session``; every default lives here."""

    captures: int = 10
    seed: int = 0
    size: tuple[int, int] = (640, 480)  # every camera's output (width, height); full res 4000x3000
    profile: str = "vphone-5x"
    kinds: tuple[str, ...] = SCENE_KINDS  # cycled, one scene per ``captures_per_scene`` captures
    captures_per_scene: int = 2
    interval_s: float = 2.0  # host time between triggers
    lead_ms: float = 500.0  # trigger this far in the future (libsoftwaresync's choice)
    phase_align: bool = True
    phase_residual_us: float = 40.0  # phase-alignment residual (uniform 0..this)
    wt_offset_ms: float = 1.5  # W and T exposure starts differ by up to this (APPROXIMATE sync)
    resync_every: int = 5  # a clock-sync round every N captures
    link: LinkModel = field(default_factory=LinkModel)
    drift_ppm_sigma: float = 8.0
    truth: bool = False  # write ground truth beside the session (``<dir>.truth/``)
    quality: int = 92
    images: bool = True  # False: timing-only session (records, no image files) for sync tests
    faults: SimFaults = field(default_factory=SimFaults)
    defects: dict[int, str] = field(default_factory=dict)  # capture index -> one of DEFECTS; truth only


def _device_info(profile: PhoneProfile, serial: str, role: str, size: tuple[int, int],
                 ts_source: str) -> R.DeviceInfo:
    cams = []
    for cam in profile.cameras:
        k = cam.intrinsics(size)
        cams.append(R.CameraInfo(
            camera_id=cam.camera_id, role=cam.role, physical_id=cam.physical_id,
            focal_length_mm=cam.focal_length_mm, f_number=cam.f_number,
            pixel_size_um=cam.pixel_size_um * cam.native_size[0] / size[0],
            width=size[0], height=size[1],
            intrinsics=R.Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2])),
            timestamp_source=ts_source,
        ))
    return R.DeviceInfo(serial=serial, role=role, model=profile.model, build=profile.build_fingerprint,
                        agent_version="sim", sync_type=profile.sync_type, cameras=cams)


def render_defective(rig: RigGeometry, scene: Scene, slot: str, t_s: float, focus_diopters: float,
                     rng: np.random.Generator, blur: tuple[float, float] | None = None, over_stops: float = 0.0,
                     quality: int = 92):
    """``rig.render_frame`` with a defect: the camera shaking during the exposure (a line blur of
    ``blur = (length_px, angle_rad)`` in linear light, before noise), or auto-exposure fooled into
    ``over_stops`` too much exposure (AE metered as usual, then the gain pushed)."""
    import cv2

    role, cam_role = CAMERAS[slot]
    cam = rig.camera(slot)
    lin = render_linear16(scene, rig.pose(slot), cam, t_s, focus_diopters)
    if blur is not None:
        lin = motion_blur(lin, *blur)
    h, w = lin.shape[:2]
    radiance_mean = float(lin[h // 4 : 3 * h // 4 : 4, w // 4 : 3 * w // 4 : 4].mean()) / ONE * scene.illuminance
    exp = auto_exposure(radiance_mean, cam_role, rig.exposure_bias[role])
    gain = exp.gain * scene.illuminance * 2**over_stops
    rgb = expose(lin, exposure_gain=gain, wb=rig.wb[role], iso=exp.iso, cam=cam, rng=rng)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes(), exp, rgb


def crop_rect(rig: RigGeometry) -> CropRect:
    return tele_crop_rect(rig.pose("main_W").K, rig.pose("main_T").K, rig.size, rig.size)


def simulate_session(out: str | Path, cfg: SimConfig, progress: bool = True) -> Path:
    """Render ``cfg.captures`` triplets into a new session folder at ``out``."""
    out = Path(out)
    if (out / "session.json").exists():
        raise FileExistsError(f"{out}: a session already exists here; choose another --out")
    rng = np.random.default_rng(cfg.seed)
    profile = get_profile(cfg.profile)
    rig = RigGeometry.random(profile, cfg.size, rng)
    # The simulated T sensor has cfg.size pixels: scenes are textured for that resolution.
    fx_t = float(profile.camera("T").intrinsics(cfg.size)[0, 0])
    period = profile.frame_period_ns

    host_epoch = int(rng.uniform(2e12, 9e12))  # host CLOCK_MONOTONIC at session start
    clocks = {r: PhoneClock(int(rng.uniform(-5e11, 5e11)), float(rng.normal(0, cfg.drift_ppm_sigma)),
                            host_epoch) for r in DEVICE_ROLES}
    phases = {r: float(rng.uniform(0, period)) for r in DEVICE_ROLES}
    serials = {r: f"VPH5X{rng.integers(0, 16**6):06X}" for r in DEVICE_ROLES}
    ts_src = {r: profile.timestamp_source for r in DEVICE_ROLES}
    if cfg.faults.unknown_timestamp_source:
        ts_src["reference"] = "UNKNOWN"
    devices = {r: _device_info(profile, serials[r], r, cfg.size, ts_src[r]) for r in DEVICE_ROLES}

    session = R.SessionRecord(
        schema_version=R.SCHEMA_VERSION, session_id=out.name,
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        source="sim", devices=list(devices.values()),
        config={"sim": {k: v for k, v in to_plain(cfg).items() if k != "defects"}},  # defects: truth only
    )
    out.mkdir(parents=True, exist_ok=True)
    journal = Journal(out / "journal.jsonl")
    journal.append("session_started", source="sim", session_id=out.name)

    def sync_round(host_ns: int) -> None:
        """Keep one best-rtt sample per phone, then refit its drift over all samples so far."""
        for r in DEVICE_ROLES:
            h, off, rtt = sntp_best_sample(clocks[r], host_ns, cfg.link, rng)
            clock = devices[r].clock
            clock.samples.append(R.ClockSample(h, off, rtt))
            clock.drift_ppm, clock.drift_ppm_stderr = fit_drift(clock.samples)
            journal.append("clock_sync", device=serials[r], host_ns=h, offset_ns=off, rtt_ns=rtt)

    def estimate_phone_ns(r: str, host_ns: int) -> float:
        s = devices[r].clock.samples[-1]
        drift = devices[r].clock.drift_ppm or 0.0
        return host_ns + s.offset_ns + drift * 1e-6 * (host_ns - s.host_ns)

    truth_captures = []
    host_now = host_epoch + int(1e9)
    scene: Scene | None = None
    for k in tqdm(range(cfg.captures), desc="sim captures", disable=not progress):
        if k % cfg.resync_every == 0:
            sync_round(host_now)
        if cfg.faults.clock_jump_before == k:
            # Lands after this capture's sync round (if any): the host cannot see it until the next.
            clocks["reference"].jumps.append((host_now, int(cfg.faults.clock_jump_ms * 1e6)))
        if k % cfg.captures_per_scene == 0:
            kind = cfg.kinds[(k // cfg.captures_per_scene) % len(cfg.kinds)]
            scene = make_scene(kind, k // cfg.captures_per_scene, rng, fx_t)
        assert scene is not None
        defect = cfg.defects.get(k)
        if defect is not None and defect not in DEFECTS:
            raise ValueError(f"defects[{k}]: unknown defect {defect!r}; known: {', '.join(DEFECTS)}")
        # Defects draw from their own generator, so injecting one leaves every other capture as is.
        drng = np.random.default_rng([cfg.seed, k, 1])
        cap_scene, cap_rig, defect_truth = scene, rig, {}
        if defect == "moving_skew":
            cap_scene = make_scene("moving", 10000 + k, drng, fx_t)
        elif defect == "rig_bump":
            frac = drng.uniform(0.3, 0.5) * drng.choice([-1, 1])
            yaw = np.arctan(frac * cfg.size[0] / rig.pose("ref_T").K[0, 0])
            rot = rig.rotations["ref_T"] @ rotation_xyz(drng.normal(0, 0.002), yaw, 0.0)
            cap_rig = dataclasses.replace(rig, rotations={**rig.rotations, "ref_T": rot})
            defect_truth = {"bump_frac_of_width": float(frac)}
        elif defect == "overexposure":
            defect_truth = {"stops": float(drng.uniform(2.0, 3.0))}
        trigger_host = host_now + int(cfg.lead_ms * 1e6)
        journal.append("trigger", capture_id=f"c{k:05d}", target_host_ns=trigger_host)

        # Each phone converts the host target into its clock with its *estimated* offset; its
        # stream then delivers the first frame at or after that instant.
        frame_phone: dict[str, float] = {}
        for r in DEVICE_ROLES:
            target = estimate_phone_ns(r, trigger_host)
            if cfg.phase_align:
                phase = target + rng.uniform(0, cfg.phase_residual_us * 1e3)
            else:
                phase = phases[r]  # free-running stream, its own phase
            frame_phone[r] = next_frame_ns(target, phase, period)
        if k in cfg.faults.late_frame_at:
            frame_phone["reference"] += period
        if defect == "moving_skew":
            n_late = int(drng.integers(3, 6))
            frame_phone["reference"] += n_late * period
            defect_truth = {"frames_late": n_late}
        true_host = {r: clocks[r].host_ns(frame_phone[r]) for r in DEVICE_ROLES}
        wt = rng.uniform(-cfg.wt_offset_ms, cfg.wt_offset_ms) * 1e6
        instants = {"main_W": true_host["main"], "main_T": true_host["main"] + wt,
                    "ref_T": true_host["reference"]}
        focus_true = {r: 1 / cap_scene.layer(cap_scene.subject).depth_m * (1 + rng.normal(0, 0.02))
                      for r in DEVICE_ROLES}
        if defect == "refocus":
            # The plane furthest from the subject in diopters: the background or a near object.
            subj = 1 / cap_scene.layer(cap_scene.subject).depth_m
            other = max(cap_scene.layers, key=lambda lay: abs(1 / lay.depth_m - subj))
            focus_true["reference"] = 1 / other.depth_m
            defect_truth = {"focused_layer": other.name}
        blur = None
        if defect == "motion_blur":
            blur = (float(drng.uniform(0.012, 0.02) * cfg.size[0]), float(drng.uniform(0, np.pi)))
            defect_truth = {"blur_px": blur[0], "angle_rad": blur[1]}

        cid = f"c{k:05d}"
        cdir = out / "captures" / cid
        frames = []
        for slot, (role, cam_role) in SLOTS.items():
            t_s = (instants[slot] - trigger_host) / 1e9
            if cfg.images:
                if (blur is not None and slot == "main_T") or (defect == "overexposure" and role == "main"):
                    jpg, exp, _ = render_defective(
                        cap_rig, cap_scene, slot, t_s, focus_true[role], rng, blur if slot == "main_T" else None,
                        defect_truth.get("stops", 0.0), quality=cfg.quality)
                else:
                    jpg, exp, _ = render_frame(cap_rig, cap_scene, slot, t_s, focus_true[role], rng,
                                               quality=cfg.quality)
                atomic_write_bytes(cdir / f"{slot}.jpg", jpg)
            else:
                # Timing-only: no pixels, so no file; the record still names one (validate flags it).
                jpg, exp = b"\0", FrameExposure(10_000_000, 100, 1.0)
            stamp = frame_phone[role]
            if profile.sync_type == "CALIBRATED" and slot == "main_T":
                stamp += wt
            if ts_src[role] == "UNKNOWN":
                # Not boot time: some other clock, arbitrarily offset (here: since camera open).
                stamp = stamp - clocks[role].offset_ns - 7.3e11
            cam = devices[role].cameras[[c.role for c in devices[role].cameras].index(cam_role)]
            frames.append(R.FrameRecord(
                slot=slot, file=f"{slot}.jpg", device=serials[role], role=role, camera_role=cam_role,
                camera_id=cam.camera_id, sensor_timestamp_ns=int(round(stamp)),
                timestamp_source=ts_src[role], exposure_time_ns=exp.exposure_time_ns, iso=exp.iso,
                focus_distance_diopters=round(float(focus_true[role] * (1 + rng.normal(0, 0.03))), 4),
                focus_calibration="APPROXIMATE", af_state="FOCUSED_LOCKED",
                af_roi=af_roi(cap_rig, slot, cap_scene, t_s), intrinsics=cam.intrinsics,
                width=cfg.size[0], height=cfg.size[1], sha256=sha256_bytes(jpg), size_bytes=len(jpg),
                frame_number=int(frame_phone[role] // period),
            ))
            journal.append("verified", capture_id=cid, file=f"{slot}.jpg", sha256=frames[-1].sha256)
        rec = R.CaptureRecord(schema_version=R.SCHEMA_VERSION, capture_id=cid, scene_id=cap_scene.scene_id,
                              scene_tags=list(cap_scene.tags), frames=frames, trigger_host_ns=trigger_host)
        rec.save(cdir)
        journal.append("capture_complete", capture_id=cid)

        cap_truth = {
            "capture_id": cid, "scene_id": cap_scene.scene_id, "trigger_host_ns": trigger_host,
            "defect": defect, "defect_params": defect_truth,
            "instants_host_ns": {s: int(v) for s, v in instants.items()},
            "skew_ref_minus_main_ns": int(instants["ref_T"] - instants["main_W"]),
            "wt_offset_ns": int(wt),
            "focus_diopters": focus_true,
            "poses": {s: cap_rig.pose(s).to_json() for s in SLOTS},
            "layers": [{"name": lay.name, "depth_m": lay.depth_m, "center_m": list(lay.center_m),
                        "velocity_mps": list(lay.velocity_mps), "photo": lay.photo, "width_m": lay.width_m,
                        "shape": lay.shape, "photo_repeat": lay.photo_repeat}
                       for lay in cap_scene.layers],
            "subject": cap_scene.subject,
        }
        arrays = None
        if cfg.truth:
            cr = crop_rect(cap_rig)
            src = cap_rig.pose("main_W")
            crop_pose = type(src)(cr.crop_intrinsics(src.K), src.R, src.C, cfg.size)
            t_w = (instants["main_W"] - trigger_host) / 1e9
            arrays = {}
            label = visible_layer_map(cap_scene, crop_pose, t_w)
            for slot in ("main_T", "ref_T"):
                pose = cap_rig.pose(slot)
                f, v = true_flow(cap_scene, crop_pose, t_w, pose, (instants[slot] - trigger_host) / 1e9)
                arrays[f"flow_{slot}"] = f
                arrays[f"valid_{slot}"] = v
                # Defocus blur (Gaussian sigma, T pixels) of the plane each crop pixel shows, in this T.
                sig = [defocus_sigma_px(cap_rig.camera(slot), float(pose.K[0, 0]), lay.depth_m,
                                        focus_true[SLOTS[slot][0]]) for lay in cap_scene.layers]
                arrays[f"defocus_sigma_{slot}"] = np.where(label >= 0, np.float32(sig + [0.0])[label], 0).astype(
                    np.float32)
            cap_truth["crop_rect"] = to_plain(cr)
            write_capture_truth(out, cid, cap_truth, arrays)
        truth_captures.append(cap_truth)
        host_now = trigger_host + int(cfg.interval_s * 1e9) - int(cfg.lead_ms * 1e6)

    sync_round(host_now)
    session.save(out)
    journal.append("session_stopped", captures=cfg.captures)
    if cfg.truth:
        write_session_truth(out, {
            "clocks": {serials[r]: {"role": r, "offset_ns": c.offset_ns, "drift_ppm": c.drift_ppm,
                                    "epoch_ns": c.epoch_ns, "jumps": c.jumps} for r, c in clocks.items()},
            "phase_align": cfg.phase_align, "period_ns": period,
            "captures": truth_captures,
        })
    return out
