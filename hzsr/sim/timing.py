"""Clocks and links of the virtual phones: wandering oscillators and named USB link profiles.

**Clock.** Each phone's boot-time clock runs

    phone_ns = host_ns + offset_ns + drift_ppm 1e-6 (host_ns - epoch_ns) + w(host_ns) + jumps

where ``w`` is the oscillator's wander: the frequency error takes a random walk of
``wander_ppm_per_sqrt_s`` per square-root second (a phone warming up or cooling down moves its
crystal by tenths of a ppm over minutes), integrated into the phase. It is drawn once per clock
from ``wander_seed`` in steps of ``wander_step_s``, so a clock is a pure function of its fields and
the benchmarks can rebuild the truth from the clock's truth file.

**Link.** A :class:`LinkProfile` gives the one-way delay of each direction of the host<->phone
socket: a base (cables, adbd's FunctionFS hop, the host's adb server hop), USB 2.0 microframe
scheduling (a bulk transfer waits for the next 125 us microframe; USB 2.0 spec 5.9), a gamma-shaped
scheduling jitter, a Pareto tail, and rare multi-millisecond stalls (a USB hub's transaction
translator or the phone's CPU leaving a low-power state). The two directions differ: that
asymmetry is what SNTP cannot see (``docs/sync.md``). Profiles are chosen per phone with
``--link usb2-hub`` or ``--link main=usb2-hub,reference=usb3`` (:func:`parse_link_spec`).

**Phone-side noise** (:class:`PhoneTiming`): the agent reads its clock, then takes a while to
build and send the reply, with an occasional garbage-collection pause.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np


@dataclass
class PhoneClock:
    offset_ns: int  # phone minus host at epoch
    drift_ppm: float  # constant part of the frequency error
    epoch_ns: int
    jumps: list[tuple[int, int]] = field(default_factory=list)  # (host_ns from which, +jump_ns)
    wander_ppm_per_sqrt_s: float = 0.0  # random walk of the frequency error (temperature)
    wander_seed: int = 0
    wander_step_s: float = 1.0
    wander_span_s: float = 2 * 86400.0  # wander is drawn this far past epoch; constant after

    @cached_property
    def _wander(self) -> tuple[np.ndarray, np.ndarray]:
        """(frequency excursion per step in ppm, accumulated phase in ns at each step start)."""
        n = int(self.wander_span_s / self.wander_step_s) + 1
        if self.wander_ppm_per_sqrt_s <= 0:
            return np.zeros(1), np.zeros(2)
        rng = np.random.default_rng(self.wander_seed)
        steps = rng.normal(0, self.wander_ppm_per_sqrt_s * np.sqrt(self.wander_step_s), n)
        # Reflect at +-3 ppm: a crystal's temperature curve is bounded over a phone's range.
        w = 3.0 - np.abs((np.cumsum(steps) + 3.0) % 12.0 - 6.0)
        phase = np.concatenate([[0.0], np.cumsum(w * self.wander_step_s * 1e3)])
        return w, phase

    def wander_ns(self, host_ns: float) -> float:
        w, phase = self._wander
        if len(w) == 1:
            return 0.0
        s = (host_ns - self.epoch_ns) / 1e9 / self.wander_step_s
        if s <= 0:
            return 0.0
        k = min(int(s), len(w) - 1)
        return float(phase[k] + w[k] * (min(s, len(w)) - k) * self.wander_step_s * 1e3)

    def frequency_ppm(self, host_ns: float) -> float:
        """The clock's rate error at ``host_ns`` (constant drift plus the wander then)."""
        w, _ = self._wander
        s = (host_ns - self.epoch_ns) / 1e9 / self.wander_step_s
        return self.drift_ppm + (float(w[min(max(int(s), 0), len(w) - 1)]) if len(w) > 1 and s > 0 else 0.0)

    def _continuous_ns(self, host_ns: float) -> float:
        return host_ns + self.offset_ns + self.drift_ppm * 1e-6 * (host_ns - self.epoch_ns) + self.wander_ns(host_ns)

    def phone_ns(self, host_ns: float) -> float:
        t = self._continuous_ns(host_ns)
        for at, jump in self.jumps:
            if host_ns >= at:
                t += jump
        return t

    def host_ns(self, phone_ns: float) -> float:
        """Inverse of ``phone_ns`` (jumps taken as applied; fixed-point steps, the rate is 1 +- ppm)."""
        p = phone_ns
        for at, jump in self.jumps:
            if self.phone_ns(at) <= phone_ns:
                p -= jump
        h = p - self.offset_ns
        for _ in range(4):
            h = h - (self._continuous_ns(h) - p)
        return h

    def truth(self) -> dict:
        """Everything needed to rebuild this clock (benchmarks read it back)."""
        return {"offset_ns": self.offset_ns, "drift_ppm": self.drift_ppm, "epoch_ns": self.epoch_ns,
                "jumps": [list(j) for j in self.jumps], "wander_ppm_per_sqrt_s": self.wander_ppm_per_sqrt_s,
                "wander_seed": self.wander_seed, "wander_step_s": self.wander_step_s}

    @classmethod
    def from_truth(cls, d: dict) -> PhoneClock:
        return cls(int(d["offset_ns"]), float(d["drift_ppm"]), int(d["epoch_ns"]),
                   [(int(a), int(b)) for a, b in d.get("jumps", [])],
                   float(d.get("wander_ppm_per_sqrt_s", 0.0)), int(d.get("wander_seed", 0)),
                   float(d.get("wander_step_s", 1.0)))


@dataclass(frozen=True)
class Direction:
    """One direction of a link: ``base + microframe wait + gamma jitter [+ Pareto tail] [+ stall]``."""

    base_us: float
    microframe_us: float = 0.0  # wait for the next bus interval: uniform over [0, this)
    jitter_mean_us: float = 20.0  # gamma(shape 2) scheduling jitter, this mean
    tail_p: float = 0.0  # probability of a heavy-tail delay ...
    tail_scale_us: float = 200.0  # ... Pareto(alpha 1.5) times this
    stall_p: float = 0.0  # probability of a stall ...
    stall_ms: tuple[float, float] = (2.0, 8.0)  # ... uniform over this range

    def sample_us(self, rng: np.random.Generator) -> float:
        d = self.base_us + rng.gamma(2.0, self.jitter_mean_us / 2.0)
        if self.microframe_us:
            d += rng.uniform(0, self.microframe_us)
        if self.tail_p and rng.random() < self.tail_p:
            d += self.tail_scale_us * rng.pareto(1.5)
        if self.stall_p and rng.random() < self.stall_p:
            d += rng.uniform(*self.stall_ms) * 1e3
        return float(d)


@dataclass(frozen=True)
class LinkProfile:
    """A host<->phone link: ``up`` is host->phone (the request), ``down`` phone->host (the reply)."""

    name: str
    up: Direction
    down: Direction
    basis: str  # what the numbers rest on

    def sample_ns(self, direction: str, rng: np.random.Generator) -> float:
        return (self.up if direction == "up" else self.down).sample_us(rng) * 1e3

    def with_bias(self, bias_us: float) -> LinkProfile:
        """The same link with ``2 bias_us`` more on the way to the phone: SNTP then reads the
        phone's clock ``bias_us`` ahead of the truth, and nothing in the exchanges shows it."""
        if not bias_us:
            return self
        return replace(self, name=f"{self.name}+bias{bias_us:g}us",
                       up=replace(self.up, base_us=self.up.base_us + 2 * bias_us))

    @classmethod
    def on_bus(cls, name: str, up: tuple[float, float], down: tuple[float, float], basis: str,
               **bus: float | tuple[float, float]) -> LinkProfile:
        """A link whose two directions differ only in ``(base_us, jitter_mean_us)``.

        ``bus`` (``Direction`` fields: microframe wait, tails, stalls) applies both ways alike: the
        bus, not the direction, causes them.
        """
        return cls(name, Direction(up[0], jitter_mean_us=up[1], **bus),
                   Direction(down[0], jitter_mean_us=down[1], **bus), basis)

    @property
    def asymmetry_us(self) -> float:
        """Mean up minus mean down delay (without tails): twice the bias SNTP reads."""
        def mean(d: Direction) -> float:
            return d.base_us + d.microframe_us / 2 + d.jitter_mean_us
        return mean(self.up) - mean(self.down)


#: The named profiles. In the virtual rig the socket already crosses a real loopback adb server,
#: so a profile's delays are slept *on top of* that path; ``loopback`` adds nothing.
LINK_PROFILES: dict[str, LinkProfile] = {p.name: p for p in (
    LinkProfile.on_bus(
        "loopback", (0.0, 0.0), (0.0, 0.0),
        "no delay added: the virtual rig's own loopback adb path only (renderer-only sessions: "
        "30 us each way). For quick tests.",
    ),
    LinkProfile.on_bus(
        "usb3", (110.0, 25.0), (90.0, 20.0),
        "USB 3 SuperSpeed port, no hub: no microframe wait on bulk transfers (asynchronous "
        "notifications); adbd's FunctionFS write and the host adb server hop dominate. Round trips "
        "of 0.2-0.4 ms for small adb-forwarded messages are typical of published adb latency "
        "measurements; the 20 us asymmetry stands for the request path's extra host-side hop.",
        tail_p=0.01, tail_scale_us=150.0, stall_p=0.0005, stall_ms=(1.0, 4.0),
    ),
    LinkProfile.on_bus(
        "usb2", (180.0, 50.0), (150.0, 40.0),
        "USB 2.0 high-speed port: each bulk transfer waits for the next 125 us microframe (USB 2.0 "
        "spec 5.9), both ways; adb round trips of 0.4-1 ms.",
        microframe_us=125.0, tail_p=0.02, tail_scale_us=250.0, stall_p=0.001, stall_ms=(2.0, 6.0),
    ),
    LinkProfile.on_bus(
        "usb2-hub", (260.0, 70.0), (170.0, 45.0),
        "USB 2.0 through a shared hub (the usual rig: two phones, one hub): the hub adds a "
        "transaction-translator wait and the host controller batches OUT transfers behind IN "
        "polling, so the request direction is ~100 us slower than the reply; rare multi-ms stalls "
        "when the other phone's bulk pull holds the bus. Round trips 0.5-1.5 ms.",
        microframe_us=125.0, tail_p=0.03, tail_scale_us=300.0, stall_p=0.002, stall_ms=(2.0, 8.0),
    ),
)}

#: Renderer-only sessions have no real socket underneath; their ``loopback`` is this.
SIM_LOOPBACK = LinkProfile("loopback", Direction(30.0, jitter_mean_us=10.0), Direction(30.0, jitter_mean_us=10.0),
                           LINK_PROFILES["loopback"].basis)


def get_link(name: str, field_name: str = "--link") -> LinkProfile:
    from hzsr.core.errors import ConfigError

    try:
        return LINK_PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown link profile {name!r}; known: {', '.join(LINK_PROFILES)}",
                          field=field_name) from None


def parse_link_spec(spec: str, field_name: str = "--link") -> dict[str, LinkProfile]:
    """``usb2-hub`` (both phones) or ``main=usb2-hub,reference=usb3`` -> {role: profile}.

    A role left out of a per-role spec gets ``loopback``; a bad name or role is a ConfigError
    naming ``field_name``.
    """
    from hzsr.core.errors import ConfigError

    spec = (spec or "loopback").strip()
    if "=" not in spec:
        p = get_link(spec, field_name)
        return {"main": p, "reference": p}
    out = {"main": LINK_PROFILES["loopback"], "reference": LINK_PROFILES["loopback"]}
    for item in filter(None, (x.strip() for x in spec.split(","))):
        role, eq, name = item.partition("=")
        if not eq or role not in ("main", "reference"):
            raise ConfigError(f"{item!r}: expected main=PROFILE or reference=PROFILE", field=field_name)
        out[role] = get_link(name, field_name)
    return out


@dataclass(frozen=True)
class PhoneTiming:
    """The phone's own delays around a clock read (they land inside the round trip, as on a phone)."""

    reply_delay_us: float = 15.0  # mean (exponential) from reading the clock to the reply leaving
    pause_p: float = 0.003  # probability of a runtime pause (GC, scheduler) before the reply ...
    pause_ms: tuple[float, float] = (1.0, 5.0)  # ... of this length

    def reply_delay_ns(self, rng: np.random.Generator) -> float:
        d = rng.exponential(self.reply_delay_us)
        if self.pause_p and rng.random() < self.pause_p:
            d += rng.uniform(*self.pause_ms) * 1e3
        return float(d * 1e3)


def sntp_exchanges(clock: PhoneClock, host_ns: int, link: LinkProfile, rng: np.random.Generator,
                   n: int = 200, phone: PhoneTiming | None = None,
                   gap_ns: float = 1e6) -> np.ndarray:
    """Simulate ``n`` SNTP exchanges from ``host_ns``; rows ``(t0, t1, t2, t3)`` in ns (float64).

    The phone stamps ``t1 = t2`` when it reads its clock; everything after (the reply delay) and
    before (the request's trip) is in the round trip, as on a real phone.
    """
    phone = phone or PhoneTiming()
    out = np.empty((n, 4), np.float64)
    t0 = float(host_ns)
    for i in range(n):
        up = link.sample_ns("up", rng)
        t1 = clock.phone_ns(t0 + up)
        down = phone.reply_delay_ns(rng) + link.sample_ns("down", rng)
        t3 = t0 + up + down
        out[i] = (t0, t1, t1, t3)
        t0 = t3 + gap_ns
    return out
