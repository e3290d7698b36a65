"""The virtual rig: a private adb server, a shared world and N virtual phones, attached over ADB.

``hzsr rig up --virtual`` runs one of these until stopped; tests and benchmarks use it in-process.
Phone 0 is the main phone, phone 1 the reference; any more are spares at the reference position.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from hzsr.capture.adb_server import AdbServer
from hzsr.core.errors import ConfigError, RigError
from hzsr.core.fileio import atomic_write_bytes
from hzsr.core.process import ProcessProof
from hzsr.sim.profiles import get_profile
from hzsr.sim.timing import parse_link_spec
from hzsr.sim.world import VirtualWorld, WorldConfig
from hzsr.vphone.phone import VirtualPhone

#: Every fault of ``--faults`` (``name[=value][@main|@reference]``, comma-separated), written as its
#: syntax reads: ``name`` takes no value, ``name=N`` a whole number >= 1, ``name=X`` any number.
#: done_first .. protocol_v1 are agent-protocol violations for ``hzsr rig conformance`` to catch
#: (docs/agent-protocol.md).
FAULT_TABLE = """
drop_after_bytes=N  cut the USB connection once the next pull has sent N bytes
flip_byte           corrupt one byte of the next pulled file in flight
storage_full        every write on the phone fails with ENOSPC
stall               the capture agent stops answering
clock_jump_ms=X     step the phone's boot-time clock by X ms once it has finished capture K (mid-session)
clock_jump_after=N  K for clock_jump_ms: the phone's Nth finished capture of this rig (default 1)
capture_failure     the next capture ends with a camera error
kill_adb_server=N   SIGKILL the adb server as the rig's phones start the pull of their Nth file
done_first          the agent writes the done marker before the images
time_outside_rtt    `time` replies carry a stale clock reading (from the previous request)
ignore_3a           the agent accepts set_3a and reports its values, but renders with auto 3A
ids_across_sessions the agent keys pending captures by capture_id alone, across sessions
list_started_only   the agent's list omits acknowledged captures whose frame has not come
unbounded_lead      the agent accepts a capture target however far ahead
no_cancel           the agent does not know the cancel command
protocol_v1         the agent speaks protocol 1 (no 3A control)
link_bias_us=X      2 X us more delay towards the phone: its SNTP offset reads X us ahead
"""


def _fault_table(text: str) -> dict[str, tuple[str, str]]:
    """``name -> (value kind: "" none, "N" whole >= 1, "X" a number; what it does)``, in table order."""
    out = {}
    for line in filter(None, text.splitlines()):
        syntax, what = line.split(None, 1)
        name, _, kind = syntax.partition("=")
        out[name] = (kind, what)
    return out


FAULTS = _fault_table(FAULT_TABLE)


@dataclass
class FaultSpec:
    name: str
    value: float | None
    role: str | None  # None: every phone


def parse_faults(spec: str) -> list[FaultSpec]:
    """Parse ``--faults``; an unknown name or a bad value is a ConfigError naming it."""
    out = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        body, _, role = item.partition("@")
        name, eq, value = body.partition("=")
        if name not in FAULTS:
            raise ConfigError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}", field="--faults")
        kind = FAULTS[name][0]
        if bool(kind) != bool(eq):
            need = "needs a value (name=VALUE)" if kind else "takes no value"
            raise ConfigError(f"fault {name!r} {need}", field="--faults")
        try:
            v = float(value) if eq else None
        except ValueError:
            raise ConfigError(f"fault {name!r}: {value!r} is not a number", field="--faults") from None
        # is_integer(), not v == int(v): int() of inf raises, and inf is no count either.
        if kind == "N" and not (v is not None and v >= 1 and v.is_integer()):
            raise ConfigError(f"fault {name!r}: {value!r} must be a whole number >= 1", field="--faults")
        if role and role not in ("main", "reference"):
            raise ConfigError(f"fault {name!r}: role must be main or reference, got {role!r}", field="--faults")
        out.append(FaultSpec(name, v, role or None))
    return out


@dataclass
class VirtualRigConfig:
    """Options of ``hzsr rig up --virtual``; every default lives here."""

    phones: int = 2
    profile: str = "vphone-5x"
    seed: int = 0
    size: tuple[int, int] = (640, 480)
    faults: str = ""
    link: str = "loopback"  # link profile(s): NAME, or main=NAME,reference=NAME (hzsr.sim.timing)
    scene: str = ""  # only this scene kind (e.g. sync-board); empty: cycle through every kind
    scene_duration_s: float = 8.0
    adb_port: int | None = None  # None: a free private port


class VirtualRig:
    def __init__(self, workdir: str | Path, cfg: VirtualRigConfig | None = None):
        self.workdir = Path(workdir).resolve()
        self.cfg = cfg or VirtualRigConfig()
        if self.cfg.phones < 1:
            raise ConfigError("must be >= 1", field="--phones")
        self.faults = parse_faults(self.cfg.faults)
        self.profile = get_profile(self.cfg.profile)
        self.links = parse_link_spec(self.cfg.link)
        self.adb: AdbServer | None = None
        self.world: VirtualWorld | None = None
        self.phones: list[VirtualPhone] = []
        self._kill_lock = threading.Lock()
        self._kill_at: tuple[str, int] | None = None  # (event, count still to go) of an armed kill
        #: Faults that fired, in order: what a test checks to know its fault really happened.
        self.fired: list[dict] = []

    @property
    def rig_yaml(self) -> Path:
        return self.workdir / "rig.yaml"

    @staticmethod
    def role_of(i: int) -> str:
        return "main" if i == 0 else "reference" if i == 1 else "spare"

    def start(self) -> VirtualRig:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.adb = AdbServer.start(self.cfg.adb_port)
        wcfg = WorldConfig(seed=self.cfg.seed, size=self.cfg.size, scene_duration_s=self.cfg.scene_duration_s)
        if self.cfg.scene:
            wcfg.kinds = (self.cfg.scene,)
        self.world = VirtualWorld(self.profile, wcfg,
                                  self.workdir / "truth")
        try:
            for i in range(self.cfg.phones):
                self.phones.append(self._make_phone(i))
            for p in self.phones:
                self._connect(p)
            self._apply_faults()
            self.write_rig_yaml()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_phone(self, i: int, port: int = 0) -> VirtualPhone:
        serial = f"VPH5X{self.cfg.seed % 100:02d}{i:04d}"
        role = self.role_of(i)
        phone = VirtualPhone(self.profile, serial, role="reference" if role == "spare" else role,
                             storage_dir=self.workdir / "phones" / serial, world=self.world,
                             link=self.links["main" if role == "main" else "reference"], seed=self.cfg.seed,
                             port=port)
        phone.transfer_faults.on_event = self._on_phone_event
        return phone

    def _connect(self, p: VirtualPhone, timeout: float = 15.0) -> None:
        assert self.adb is not None
        out = self.adb.run("connect", p.address)
        if "connected" not in out.stdout:
            raise RigError(f"adb connect failed: {out.stdout.strip() or out.stderr.strip()}", field=p.address)
        if not self.wait_state(p.address, "device", timeout):
            raise RigError(f"did not come online within {timeout:.0f} s", field=p.address)

    def wait_state(self, serial: str, state: str | None, timeout: float = 15.0) -> bool:
        """Wait until adb lists ``serial`` in ``state`` (None: not listed at all)."""
        assert self.adb is not None
        client = self.adb.client()
        t0 = time.time()
        while time.time() - t0 < timeout:
            try:
                states = {d.serial: d.state for d in client.list()}
            except Exception:  # the server may be restarting
                states = {}
            if states.get(serial) == state:
                return True
            time.sleep(0.1)
        return False

    def _apply_faults(self) -> None:
        for f in self.faults:
            targets = [p for p in self.phones if f.role is None or p.role == f.role]
            for p in targets:
                if f.name == "drop_after_bytes":
                    p.drop_after_bytes(int(f.value))
                elif f.name == "flip_byte":
                    p.flip_byte_next_pull()
                elif f.name == "storage_full":
                    p.set_storage_full(True)
                elif f.name == "stall":
                    p.stall_agent(True)
                elif f.name == "clock_jump_ms":
                    # On an event (after capture K), never at start: a jump mid-session is the test.
                    after = next((int(g.value) for g in self.faults if g.name == "clock_jump_after"
                                  and g.role in (None, p.role)), 1)
                    p.jump_clock_after(f.value, after)
                elif f.name == "link_bias_us":
                    p.bias_link(f.value)
                elif f.name == "capture_failure":
                    p.fail_next_capture()
                elif f.name in ("done_first", "time_outside_rtt", "ignore_3a", "ids_across_sessions",
                                "list_started_only", "unbounded_lead", "no_cancel"):
                    p.call(lambda p=p, n=f.name: setattr(p._need_agent().faults, n, True))
                elif f.name == "protocol_v1":
                    p.call(lambda p=p: setattr(p._need_agent(), "protocol_version", 1))
            if f.name == "kill_adb_server":
                self.kill_adb_server_on("recv", int(f.value))

    # -- the rig as a crew sees it --------------------------------------------------------
    def phone(self, role: str) -> VirtualPhone:
        return next(p for p in self.phones if p.role == role)

    def write_rig_yaml(self) -> None:
        """rig.yaml, with proof of the processes this rig owns so ``rig down`` signals only them."""
        assert self.adb is not None
        adb_pid = self.adb.pid()
        procs = {"rig": ProcessProof.me()}
        adb_proof = ProcessProof.of(adb_pid) if adb_pid else None
        if adb_proof is not None:
            procs["adb_server"] = adb_proof
        doc = {
            "adb": {"host": "127.0.0.1", "port": self.adb.port},
            "phones": [{"serial": p.address, "role": self.role_of(i)} for i, p in enumerate(self.phones)],
            "virtual": {"pid": os.getpid(), "adb_server_pid": adb_pid, "workdir": str(self.workdir),
                        "truth_dir": str(self.workdir / "truth"), "profile": self.cfg.profile,
                        "processes": {k: {"pid": v.pid, "start_ticks": v.start_ticks, "cmdline": v.cmdline}
                                      for k, v in procs.items()}},
        }
        atomic_write_bytes(self.rig_yaml, yaml.safe_dump(doc, sort_keys=False).encode())

    def kill_adb_server(self) -> int | None:
        """Fault: the adb server dies (SIGKILL), as when another tool kills it. Returns its PID."""
        assert self.adb is not None
        pid = self.adb.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
        return pid

    def kill_adb_server_on(self, event: str, n: int) -> None:
        """Arm a one-shot fault: SIGKILL the adb server at the ``n``-th protocol ``event``.

        Events are counted over all phones from now: ``"recv"`` is the start of a pull (so
        ``n = 2`` kills the server during the pull of the second file), ``"packet"`` an ADB
        packet a phone receives from the server. Firing on protocol events, never on a timer,
        makes the fault land at the same point of a capture however loaded the machine is.
        """
        if event not in ("recv", "packet") or n < 1:
            raise ValueError(f"bad fault trigger {event!r} {n}")
        with self._kill_lock:
            self._kill_at = (event, n)

    def _on_phone_event(self, event: str) -> None:
        with self._kill_lock:
            if self._kill_at is None or self._kill_at[0] != event:
                return
            left = self._kill_at[1] - 1
            self._kill_at = (event, left) if left > 0 else None
            if left > 0:
                return
            pid = self.kill_adb_server()
            self.fired.append({"fault": "kill_adb_server", "on": event, "pid": pid})

    def restart_adb_server(self) -> None:
        """Bring the server back and re-attach every phone (what a crew does after a kill)."""
        assert self.adb is not None
        self.adb.run("start-server")
        for p in self.phones:
            self._connect(p)
        self.write_rig_yaml()

    def restart_phone(self, role: str) -> VirtualPhone:
        """Stop a phone and start it again on the same port with the same storage (a reboot)."""
        i, old = next((i, p) for i, p in enumerate(self.phones) if p.role == role)
        port = old.port
        old.stop()
        self.phones[i] = self._make_phone(i, port=port)
        return self.phones[i]

    def stop(self) -> None:
        self._kill_at = None
        for p in self.phones:
            p.stop()
        self.phones = []
        if self.adb is not None:
            self.adb.stop()
            self.adb = None

    def __enter__(self) -> VirtualRig:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
