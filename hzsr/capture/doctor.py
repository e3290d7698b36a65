"""``hzsr rig doctor``: catch a bad rig before the shoot.

Each check yields rows of (check, phone, status, detail) with status pass / warn / fail. Any fail
makes the command exit non-zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hzsr.capture.clocksync import sync_round
from hzsr.capture.link import LINK_ERRORS, RigLink
from hzsr.core.agent_protocol import CAMERAS_PER_ROLE
from hzsr.core.errors import AgentError, RigError


@dataclass
class DoctorConfig:
    """Thresholds of ``hzsr rig doctor``; every default lives here."""

    planned_captures: int = 200  # storage must hold this many full-size captures
    capture_bytes: int = 3 * 5_000_000  # three 12 MP JPEGs, generously
    min_battery_pct: int = 30  # warn below; fail below half of it
    max_sync_bound_us: float = 250.0  # warn above; fail above 4x
    sync_exchanges: int = 200
    min_screen_timeout_ms: int = 300_000
    max_calibration_age_days: float = 30.0  # warn to re-calibrate the sync after this long


@dataclass
class Row:
    check: str
    phone: str
    status: str
    detail: str


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, check: str, phone: str, status: str, detail: str) -> None:
        self.rows.append(Row(check, phone, status, detail))

    @property
    def failed(self) -> bool:
        return any(r.status == "fail" for r in self.rows)

    def table(self) -> str:
        w = [max(len(getattr(r, k)) for r in self.rows + [Row("check", "phone", "status", "")])
             for k in ("check", "phone", "status")]
        lines = [f"{'check':<{w[0]}}  {'phone':<{w[1]}}  {'status':<{w[2]}}  detail"]
        for r in self.rows:
            lines.append(f"{r.check:<{w[0]}}  {r.phone:<{w[1]}}  {r.status:<{w[2]}}  {r.detail}")
        return "\n".join(lines)


def _int_after(pattern: str, text: str) -> int | None:
    m = re.search(pattern, text)
    return int(m.group(1)) if m else None


def calibration_row(phone, cfg: DoctorConfig, now=None) -> tuple[str, str, str, str]:
    """The "calibrated" row: which board session(s) calibrated this phone and how long ago
    (``hzsr sync calibrate``), or the commands that calibrate it."""
    import datetime as dt

    from hzsr.core.verdict import CALIBRATE_COMMAND

    cal = phone.clock_calibration
    if cal is None:
        return ("calibrated", phone.serial, "warn", "no: skew bounds carry the links' whole asymmetry, so few "
                f"captures can pass; calibrate with the sync board: {CALIBRATE_COMMAND}")
    age = ""
    stale = False
    try:
        when = dt.datetime.fromisoformat(cal.calibrated_utc)
        days = ((now or dt.datetime.now(dt.timezone.utc)) - when).total_seconds() / 86400
        age = f"{days * 24:.1f} h ago" if days < 2 else f"{days:.0f} days ago"
        stale = days > cfg.max_calibration_age_days
    except (TypeError, ValueError):
        age = "at an unknown time"
    detail = (f"yes: board session {cal.source or '?'} ({cal.captures or '?'} captures), {age}; uncertainty "
              f"{cal.uncertainty_ns / 1e3:.1f} us, link floor {cal.base_half_rtt_ns / 1e3:.0f} us")
    if stale:
        return ("calibrated", phone.serial, "warn", f"{detail}: older than {cfg.max_calibration_age_days} days, "
                "re-calibrate (and after any cable, hub or port change)")
    return ("calibrated", phone.serial, "pass", detail)


def run_doctor(link: RigLink, cfg: DoctorConfig | None = None) -> Report:
    cfg = cfg or DoctorConfig()
    rep = Report()
    if not link._server_listening():
        # Not even a connect: adbutils would start a bare server (no phones) and hide the fault.
        rep.add("adb server", f"{link.rig.adb.host}:{link.rig.adb.port}", "fail",
                f"not running; start the rig (hzsr rig up) or: adb -P {link.rig.adb.port} start-server")
        return rep
    try:
        states = link.states()
    except LINK_ERRORS as exc:
        rep.add("adb server", f"{link.rig.adb.host}:{link.rig.adb.port}", "fail",
                f"unreachable ({exc}); start it: adb -P {link.rig.adb.port} start-server")
        return rep
    rep.add("adb server", f"{link.rig.adb.host}:{link.rig.adb.port}", "pass", f"{len(states)} device(s) listed")
    hellos: dict[str, dict] = {}
    props: dict[str, tuple[str, str]] = {}
    for p in link.rig.phones:
        st = states.get(p.serial)
        if st != "device":
            rep.add("online", p.serial, "fail", f"state {st or 'absent'}: check the cable, USB debugging, "
                    "and that the phone is authorized")
            continue
        rep.add("online", p.serial, "pass", p.role)
        dev = link.client.device(p.serial)
        props[p.serial] = (dev.prop.model or "", dev.getprop("ro.build.fingerprint") or "")
        try:
            h = link.agent(p.role).request("hello")
        except (AgentError, RigError, *LINK_ERRORS) as exc:
            rep.add("agent", p.serial, "fail",
                    f"not reachable on localabstract:hzsr_agent ({exc}); is the app running?")
            continue
        hellos[p.serial] = h
        rep.add("agent", p.serial, "pass", f"version {h['agent_version']}, protocol {h['protocol_version']}")
        roles = sorted(c["role"] for c in h["cameras"])
        desc = [f"{c['role']}={c['camera_id']}/{c['physical_id']} {c['focal_length_mm']} mm f/{c['f_number']}"
                for c in h["cameras"]]
        # The reference phone's W is no part of a triplet: a reference with only T is complete.
        need = CAMERAS_PER_ROLE.get(p.role, ["W", "T"])
        missing = [c for c in need if c not in roles]
        rep.add("cameras", p.serial, "fail" if missing else "pass",
                ", ".join(desc) + (f"; a {p.role} phone needs {' and '.join(missing)}" if missing else ""))
        sources = {c["timestamp_source"] for c in h["cameras"]}
        if sources == {"REALTIME"}:
            rep.add("timestamp source", p.serial, "pass", "REALTIME: frame timestamps are boot time")
        else:
            rep.add("timestamp source", p.serial, "warn",
                    "UNKNOWN: frame timestamps are not in the boot-time clock, so they cannot be mapped to "
                    "the host; sub-ms sync between phones is impossible on this phone (skews go unmeasured)")
        rep.add("multi-camera sync", p.serial, "pass" if h["sync_type"] == "CALIBRATED" else "warn",
                "CALIBRATED: W and T are hardware-synced" if h["sync_type"] == "CALIBRATED" else
                "APPROXIMATE: W and T may expose up to a frame apart and carry the same timestamp; "
                "the W-to-T offset is not measurable from timestamps")
        bat = _int_after(r"level: (\d+)", dev.shell("dumpsys battery"))
        if bat is None:
            rep.add("battery", p.serial, "warn", "could not read dumpsys battery")
        else:
            status = "pass" if bat >= cfg.min_battery_pct else "warn" if bat >= cfg.min_battery_pct // 2 else "fail"
            rep.add("battery", p.serial, status, f"{bat}%")
        try:
            free = link.agent(p.role).request("status")["storage_free_bytes"]
            need = cfg.planned_captures * cfg.capture_bytes
            status = "pass" if free >= need else "warn" if free >= need // 10 else "fail"
            rep.add("storage", p.serial, status, f"{free / 1e9:.1f} GB free; {cfg.planned_captures} captures need "
                    f"{need / 1e9:.1f} GB")
        except (AgentError, RigError, *LINK_ERRORS) as exc:
            rep.add("storage", p.serial, "warn", f"unknown ({exc})")
        timeout = _int_after(r"(\d+)", dev.shell("settings get system screen_off_timeout"))
        stay = _int_after(r"(\d+)", dev.shell("settings get global stay_on_while_plugged_in"))
        if stay:
            rep.add("screen", p.serial, "pass", "stays on while plugged in")
        elif timeout is not None and timeout >= cfg.min_screen_timeout_ms:
            rep.add("screen", p.serial, "pass", f"turns off after {timeout / 1000:.0f} s")
        else:
            rep.add("screen", p.serial, "warn", "the screen may turn off mid-shoot and stop the camera; enable "
                    "'stay awake while charging'")
        thermal = _int_after(r"Thermal Status: (\d+)", dev.shell("dumpsys thermalservice"))
        if thermal is None:
            rep.add("thermal", p.serial, "warn", "unknown")
        else:
            rep.add("thermal", p.serial, "pass" if thermal <= 1 else "warn" if thermal == 2 else "fail",
                    f"status {thermal} (0 none .. 6 shutdown)")
        try:
            s = sync_round(link.agent(p.role), cfg.sync_exchanges)
            bound = s.rtt_ns / 2e3
            status = ("pass" if bound <= cfg.max_sync_bound_us else
                      "warn" if bound <= 4 * cfg.max_sync_bound_us else "fail")
            rep.add("clock sync", p.serial, status, f"error bound {bound:.0f} us (best rtt {s.rtt_ns / 1e3:.0f} us "
                    f"of {cfg.sync_exchanges})")
        except (AgentError, RigError, *LINK_ERRORS) as exc:
            rep.add("clock sync", p.serial, "fail", str(exc))
        rep.add(*calibration_row(p, cfg))
    from hzsr.capture.three_a import check_t_settings

    for row in check_t_settings(link, {p.role: hellos.get(p.serial) for p in link.rig.phones}):
        rep.add(*row)
    if len(props) >= 2:
        models = {m for m, _ in props.values()}
        builds = {b for _, b in props.values()}
        rep.add("same model", "all", "pass" if len(models) == 1 else "fail", ", ".join(sorted(models)))
        rep.add("same build", "all", "pass" if len(builds) == 1 else "fail",
                "identical" if len(builds) == 1 else "builds differ: update both phones to one build")
    return rep
