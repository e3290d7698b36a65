"""Write a whole simulated session folder: ``hzsr sim session``.

This is the renderer-only path (no ADB): it plays the part of both phones and the host, using the
same clock, stream and camera models as the virtual phones, and writes what a real capture session
would. Per capture it simulates the host's SNTP rounds over each phone's link profile
(``timing.LinkProfile``), the host's trigger on the frame grid, each phone's clock-domain
conversion, its camera HAL stream (``sensor``) steered by the phase-alignment algorithm
(``phase_align``), then renders the three frames at the instants each was really exposed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hzsr.core import records as R
from hzsr.core.clock import fit_drift, sntp_estimate
from hzsr.core.fileio import atomic_write_bytes, sha256_bytes
from hzsr.core.geometry import CropRect, tele_crop_rect
from hzsr.core.journal import Journal
from hzsr.core.schema import to_plain
from hzsr.sim.defects import DEFECTS, draw, render_spoiled
from hzsr.sim.ideal import ideal_target
from hzsr.sim.phase_align import PhaseAligner
from hzsr.sim.profiles import PhoneProfile, get_profile
from hzsr.sim.render import defocus_sigma_px, true_flow, visible_layer_map
from hzsr.sim.rig import SLOTS, FrameExposure, RigGeometry, af_point_layer, af_roi, blur_circle_px
from hzsr.sim.scene import SCENE_KINDS, Scene, make_scene
from hzsr.sim.sensor import SensorConfig, SensorStream
from hzsr.sim.textures import POOLS
from hzsr.sim.timing import SIM_LOOPBACK, PhoneClock, parse_link_spec, sntp_exchanges
from hzsr.sim.truth import write_capture_truth, write_session_truth

DEVICE_ROLES = ("main", "reference")


@dataclass
class SimFaults:
    """Timing faults to inject, for testing the sync checks."""

    clock_jump_before: int | None = None  # capture index before which the reference clock jumps
    clock_jump_ms: float = 40.0
    late_frame_at: list[int] = field(default_factory=list)  # captures whose ref_T is one period late
    unknown_timestamp_source: bool = False  # reference phone reports SENSOR timestamps as UNKNOWN


@dataclass
class SimConfig:
    """Options of ``hzsr sim session``; every default lives here."""

    captures: int = 10
    seed: int = 0
    size: tuple[int, int] = (640, 480)  # every camera's output (width, height); full res 4000x3000
    profile: str = "vphone-5x"
    kinds: tuple[str, ...] = SCENE_KINDS  # cycled, one scene per ``captures_per_scene`` captures
    # Texture pool of the scenes (hzsr.sim.textures): "all" = the historical mirror-tiled scenes
    # (every published figure before the pools); "train" / "eval" = photographic scenes from two
    # disjoint sets of photographs and fine-detail sources. Recorded in session.json and the truth.
    textures: str = "all"
    captures_per_scene: int = 2
    interval_s: float = 2.0  # host time between triggers
    lead_ms: float = 500.0  # trigger this far in the future (libsoftwaresync's choice)
    phase_align: bool = True
    wt_offset_ms: float = 1.5  # W and T exposure starts differ by up to this (APPROXIMATE sync)
    resync_every: int = 5  # a full clock-sync round every N captures ...
    quick_exchanges: int = 24  # ... and a quick one before each of the others (0: none), as `hzsr capture` does
    link: str = "loopback"  # link profile(s): NAME or main=NAME,reference=NAME (hzsr.sim.timing)
    link_bias_us: float = 0.0  # fault: the reference link reads its clock this far ahead (asymmetry)
    exchanges: int = 200  # SNTP exchanges per sync round
    calibration: dict[str, R.ClockCalibration] = field(default_factory=dict)  # by role, applied to sync
    drift_ppm_sigma: float = 8.0
    wander_ppm_per_sqrt_s: float = 0.05  # random walk of each phone's frequency (temperature)
    truth: bool = False  # write ground truth beside the session (``<dir>.truth/``)
    quality: int = 92
    images: bool = True  # False: timing-only session (records, no image files) for sync tests
    faults: SimFaults = field(default_factory=SimFaults)
    defects: dict[int, str] = field(default_factory=dict)  # capture index -> one of sim.defects.DEFECTS; truth only


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


def crop_rect(rig: RigGeometry) -> CropRect:
    return tele_crop_rect(rig.pose("main_W").K, rig.pose("main_T").K, rig.size, rig.size)


def simulate_session(out: str | Path, cfg: SimConfig, progress: bool = True) -> Path:
    """Render ``cfg.captures`` triplets into a new session folder at ``out``."""
    out = Path(out)
    if (out / "session.json").exists():
        raise FileExistsError(f"{out}: a session already exists here; choose another --out")
    if cfg.textures not in POOLS:
        raise ValueError(f"textures: unknown pool {cfg.textures!r}; known: {', '.join(POOLS)}")
    rng = np.random.default_rng(cfg.seed)
    # Sensor noise is drawn by OpenCV's RNG (cv2.randn, render.expose), which is process-global:
    # reset it to its start-up state (seed 0 = OpenCV's default) so a session is the same whether
    # it is the first render of a process or follows others, or a k-means (qa.maps) that reseeds it.
    cv2.setRNGSeed(0)
    profile = get_profile(cfg.profile)
    rig = RigGeometry.random(profile, cfg.size, rng)
    # The simulated T sensor has cfg.size pixels: scenes are textured for that resolution.
    fx_t = float(profile.camera("T").intrinsics(cfg.size)[0, 0])
    period = profile.frame_period_ns

    host_epoch = int(rng.uniform(2e12, 9e12))  # host CLOCK_MONOTONIC at session start
    clocks = {r: PhoneClock(int(rng.uniform(-5e11, 5e11)), float(rng.normal(0, cfg.drift_ppm_sigma)),
                            host_epoch, wander_ppm_per_sqrt_s=cfg.wander_ppm_per_sqrt_s,
                            wander_seed=int(rng.integers(2**31))) for r in DEVICE_ROLES}
    links = {r: (SIM_LOOPBACK if p.name == "loopback" else p) for r, p in parse_link_spec(cfg.link).items()}
    links["reference"] = links["reference"].with_bias(cfg.link_bias_us)
    streams = {r: SensorStream(SensorConfig(period_ns=period, readout_ns=profile.readout_ns),
                               clocks[r].phone_ns(host_epoch) + rng.uniform(0, period),
                               int(rng.integers(2**31))) for r in DEVICE_ROLES}
    aligners = {r: PhaseAligner(streams[r]) for r in DEVICE_ROLES}
    serials = {r: f"VPH5X{rng.integers(0, 16**6):06X}" for r in DEVICE_ROLES}
    ts_src = {r: profile.timestamp_source for r in DEVICE_ROLES}
    if cfg.faults.unknown_timestamp_source:
        ts_src["reference"] = "UNKNOWN"
    devices = {r: _device_info(profile, serials[r], r, cfg.size, ts_src[r]) for r in DEVICE_ROLES}
    for r, cal in cfg.calibration.items():
        devices[r].clock.calibration = cal

    session = R.SessionRecord(
        schema_version=R.SCHEMA_VERSION, session_id=out.name,
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        source="sim", devices=list(devices.values()),
        config={"sim": {k: v for k, v in to_plain(cfg).items() if k != "defects"}},  # defects: truth only
    )
    out.mkdir(parents=True, exist_ok=True)
    journal = Journal(out / "journal.jsonl")
    journal.append("session_started", source="sim", session_id=out.name)

    def sync_round(host_ns: int, n: int = cfg.exchanges) -> None:
        """Keep one best-rtt sample per phone, then refit its drift over all samples so far."""
        for r in DEVICE_ROLES:
            clock = devices[r].clock
            stamps = sntp_exchanges(clocks[r], host_ns, links[r], rng, n)
            h, off, bound, _ = sntp_estimate(stamps, clock.drift_ppm)
            if clock.calibration is not None:
                off -= clock.calibration.offset_correction_ns
            rtt = 2 * bound
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
        elif cfg.quick_exchanges:
            sync_round(host_now, cfg.quick_exchanges)
        if cfg.faults.clock_jump_before == k:
            # Lands after this capture's sync round (if any): the host cannot see it until the next.
            clocks["reference"].jumps.append((host_now, int(cfg.faults.clock_jump_ms * 1e6)))
        if k % cfg.captures_per_scene == 0:
            kind = cfg.kinds[(k // cfg.captures_per_scene) % len(cfg.kinds)]
            scene = make_scene(kind, k // cfg.captures_per_scene, rng, fx_t, cfg.textures)
            # Another seed draws another scene: its id says so, or sessions packed together would
            # share scene ids (and split groups) between different scenes. The kind stays the prefix.
            scene.scene_id = f"{kind}-s{cfg.seed}-{k // cfg.captures_per_scene:04d}"
        assert scene is not None
        defect = cfg.defects.get(k)
        if defect is not None and defect not in DEFECTS:
            raise ValueError(f"defects[{k}]: unknown defect {defect!r}; known: {', '.join(DEFECTS)}")
        # Defects draw from their own generator, so injecting one leaves every other capture as is.
        drng = np.random.default_rng([cfg.seed, k, 1])
        cap_scene, spoil = scene, None
        if defect == "moving_skew":
            cap_scene = make_scene("moving", 10000 + k, drng, fx_t, cfg.textures)
            cap_scene.scene_id = f"moving-s{cfg.seed}-{10000 + k:05d}"
        if defect is not None:
            spoil = draw(defect, drng, cfg.size[0])
        cap_rig = spoil.rig(rig) if spoil is not None else rig
        trigger_host = host_now + int(cfg.lead_ms * 1e6)
        if cfg.phase_align:  # on the host's frame grid, so every capture asks for the same phase
            trigger_host = int(np.ceil(trigger_host / period) * period)
        journal.append("trigger", capture_id=f"c{k:05d}", target_host_ns=trigger_host)

        # Each phone converts the host target into its clock with its *estimated* offset; its
        # stream then delivers the first frame at or after that instant.
        frame_phone: dict[str, float] = {}
        frame_k: dict[str, int] = {}
        for r in DEVICE_ROLES:
            target = estimate_phone_ns(r, trigger_host)
            if cfg.phase_align:  # else free-running: the stream keeps its own phase
                aligners[r].align(clocks[r].phone_ns(host_now), target, target)
            frame_k[r] = aligners[r].capture_frame(target)
        if k in cfg.faults.late_frame_at:
            frame_k["reference"] += 1
        if spoil is not None:
            frame_k["reference"] += spoil.frames_late  # moving_skew
        frame_phone = {r: streams[r].reported(frame_k[r]) for r in DEVICE_ROLES}
        true_host = {r: clocks[r].host_ns(streams[r].start(frame_k[r])) for r in DEVICE_ROLES}
        wt = rng.uniform(-cfg.wt_offset_ms, cfg.wt_offset_ms) * 1e6
        instants = {"main_W": true_host["main"], "main_T": true_host["main"] + wt,
                    "ref_T": true_host["reference"]}
        focus_true = {r: 1 / cap_scene.layer(cap_scene.subject).depth_m * (1 + rng.normal(0, 0.02))
                      for r in DEVICE_ROLES}
        if spoil is not None:  # refocus: the reference phone focuses elsewhere; wrong_depth: both
            focus_true["reference"] = spoil.focus_diopters(cap_scene, "ref_T", focus_true["reference"])
            focus_true["main"] = spoil.focus_diopters(cap_scene, "main_T", focus_true["main"])

        cid = f"c{k:05d}"
        cdir = out / "captures" / cid
        frames = []
        for slot, (role, cam_role) in SLOTS.items():
            t_s = (instants[slot] - trigger_host) / 1e9
            if cfg.images and scene.kind == "sync-board":
                from hzsr.sim.syncboard import render_board_slot

                jpg, exp = render_board_slot(rig, scene, slot, instants[slot], rng, profile.readout_ns,
                                             cfg.quality)
                atomic_write_bytes(cdir / f"{slot}.jpg", jpg)
            elif cfg.images:
                jpg, exp = render_spoiled(spoil, cap_rig, cap_scene, slot, t_s, focus_true[role], rng, cfg.quality)
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
                frame_number=frame_k[role], rolling_shutter_skew_ns=profile.readout_ns,
            ))
            journal.append("verified", capture_id=cid, file=f"{slot}.jpg", sha256=frames[-1].sha256)
        rec = R.CaptureRecord(schema_version=R.SCHEMA_VERSION, capture_id=cid, scene_id=cap_scene.scene_id,
                              scene_tags=list(cap_scene.tags), frames=frames, trigger_host_ns=trigger_host)
        rec.save(cdir)
        journal.append("capture_complete", capture_id=cid)

        cap_truth = {
            "capture_id": cid, "scene_id": cap_scene.scene_id, "trigger_host_ns": trigger_host,
            "defect": defect, "defect_params": spoil.truth(cap_scene) if spoil is not None else {},
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
            # Blur-circle diameter (px) of the AF subject in each T: a focus defect is visible where it is > 2 px.
            "subject_blur_px": {s: blur_circle_px(cap_rig, s, cap_scene.layer(cap_scene.subject).depth_m,
                                                  focus_true[SLOTS[s][0]]) for s in ("main_T", "ref_T")},
        }
        arrays = None
        if cfg.truth and scene.kind == "sync-board":  # no texture to follow: timing truth only
            write_capture_truth(out, cid, cap_truth, None)
        elif cfg.truth:
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
            arrays["ideal_T"] = ideal_target(cap_rig, cap_scene, crop_pose, t_w)
            cap_truth["crop_rect"] = to_plain(cr)
            # The plane the AF point shows (the AF ROI's centre in main T): a near foreground may hide the
            # subject there. Its blur-circle diameter (px) in each T is what a focus defect makes visible.
            af_lay = af_point_layer(cap_rig, cap_scene, (instants["main_T"] - trigger_host) / 1e9)
            if af_lay is not None:
                cap_truth["af_layer"] = af_lay.name
                cap_truth["af_layer_blur_px"] = {s: blur_circle_px(cap_rig, s, af_lay.depth_m, focus_true[SLOTS[s][0]])
                                                 for s in ("main_T", "ref_T")}
            write_capture_truth(out, cid, cap_truth, arrays)
        truth_captures.append(cap_truth)
        host_now = trigger_host + int(cfg.interval_s * 1e9) - int(cfg.lead_ms * 1e6)

    sync_round(host_now)
    session.save(out)
    journal.append("session_stopped", captures=cfg.captures)
    if cfg.truth:
        write_session_truth(out, {
            "clocks": {serials[r]: {"role": r, **c.truth(), "link": links[r].name} for r, c in clocks.items()},
            "phase_align": cfg.phase_align, "period_ns": period, "textures": cfg.textures,
            "captures": truth_captures,
        })
    return out
