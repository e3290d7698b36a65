"""Clock sync with each phone over its agent socket, SNTP style (libsoftwaresync's method).

One exchange stamps ``t0`` (host, send), ``t1`` (phone, receive), ``t2`` (phone, reply) and ``t3``
(host, receive):

    offset = ((t1 - t0) + (t2 - t3)) / 2        rtt = (t3 - t0) - (t2 - t1)

and the true offset lies within ``rtt / 2`` of it. A round runs at most ``max_exchanges``
(stopping early once one is below ``good_rtt_us``), keeps the least-rtt quarter and intersects
their intervals with outlier rejection (``hzsr.core.clock.sntp_estimate``). The kept
``ClockSample`` stores ``rtt_ns = 2 x`` that intersection's half-width, so ``rtt / 2`` stays the
offset's error bound everywhere downstream. A calibrated link asymmetry (``rig.yaml``,
``hzsr sync calibrate``) is applied to the offset by :func:`apply_calibration`. The session's
samples are fitted for drift (``hzsr.core.clock.fit_drift``); an instant is mapped with the best
nearby samples weighted by their bounds (``hzsr.core.clockmap``), as ``hzsr sync check`` does
afterwards. A trigger is set only from a fresh, tight sample (``SyncConfig.tight_factor``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hzsr.capture.link import AgentClient
from hzsr.core import clockmap
from hzsr.core.clock import MAX_CRYSTAL_PPM, fit_drift, sntp_estimate
from hzsr.core.clockmap import loose_trigger_text, sample_bounds, skew_bound_ns  # noqa: F401  (for session_run)
from hzsr.core.records import ClockSample, DeviceClock


@dataclass
class SyncConfig:
    """Clock-sync options; every default lives here."""

    max_exchanges: int = 200  # per full round (libsoftwaresync: up to 300)
    quick_exchanges: int = 48  # per capture, to catch jumps and track drift cheaply (48: tighter under load)
    good_rtt_us: float = 0.0  # stop a round early below this rtt; 0 = always run them all
    resync_every: int = 10  # captures between full rounds
    # A trigger is scheduled only from a fresh sample whose bound at the target instant is within
    # tight_factor x the link's floor (the least bound seen, or the calibrated one) + tight_slack_us;
    # otherwise more quick rounds are taken first, up to extra_rounds. A capture whose trigger
    # still came from a loose sample fails its verdict (trigger_from_loose_sample).
    tight_factor: float = 2.0
    tight_slack_us: float = 50.0
    extra_rounds: int = 4
    wander_ppm: float = 0.5  # oscillator wander between syncs, for the mapping bound (as sync check)


def sync_round(agent: AgentClient, n: int, good_rtt_us: float = 0.0,
               drift_ppm: float | None = None) -> ClockSample:
    """One offset estimate from up to ``n`` exchanges (minimum-rtt filter, interval intersection)."""
    stamps = []
    for _ in range(max(n, 1)):
        t0, t1, t2, t3 = agent.time_exchange()
        stamps.append((t0, t1, t2, t3))
        if good_rtt_us and (t3 - t0) - (t2 - t1) < good_rtt_us * 1e3:
            break
    h, off, bound, _ = sntp_estimate(np.array(stamps, np.float64), drift_ppm)
    return ClockSample(host_ns=h, offset_ns=off, rtt_ns=2 * bound)


def apply_calibration(sample: ClockSample, offset_correction_ns: float) -> ClockSample:
    """Subtract a calibrated asymmetry bias from an estimate (``hzsr sync calibrate``)."""
    if not offset_correction_ns:
        return sample
    return ClockSample(sample.host_ns, int(round(sample.offset_ns - offset_correction_ns)), sample.rtt_ns)


def _segment_start(clock: DeviceClock, n: int) -> int:
    return max([k for k in clock.segment_starts if k < n], default=0)


def _segment(clock: DeviceClock, upto: int | None = None, raw: bool = False):
    """The last clock segment's samples (of the first ``upto``) as arrays: h, offset, bound.

    ``raw``: bounds that hold whatever the calibration: ``rtt / 2`` plus the correction applied.
    """
    samples = clock.samples[:upto] if upto is not None else clock.samples
    start = _segment_start(clock, len(samples))
    part = samples[start:]
    cal = clock.calibration
    if raw:
        e = clockmap.sample_bounds(part) + (abs(cal.offset_correction_ns) if cal is not None else 0.0)
    else:
        e = clockmap.sample_bounds(samples, cal)[start:]
    h = np.array([x.host_ns for x in part], np.float64)
    o = np.array([x.offset_ns for x in part], np.float64)
    order = np.argsort(h, kind="stable")
    return h[order], o[order], e[order]


def _drift(clock: DeviceClock, wander_ppm: float, physical: bool = False) -> tuple[float, float]:
    """Drift and its stderr (ppm); unknown drift is 0 with a stderr no crystal exceeds (100 ppm).

    ``physical``: the fit held to what a crystal can do (``|drift| <= MAX_CRYSTAL_PPM``, stderr at
    most that), for a prediction that must hold whatever the fit's noise (the step test).
    """
    if clock.drift_ppm is None:
        return 0.0, MAX_CRYSTAL_PPM
    d, se = clock.drift_ppm, clock.drift_ppm_stderr if clock.drift_ppm_stderr is not None else 5.0
    if physical:
        d, se = float(np.clip(d, -MAX_CRYSTAL_PPM, MAX_CRYSTAL_PPM)), min(se, MAX_CRYSTAL_PPM)
    return d, se


def offset_estimate(clock: DeviceClock, host_ns: float, wander_ppm: float = 0.5,
                    upto: int | None = None, raw: bool = False, physical: bool = False) -> tuple[float, float]:
    """Offset (phone minus host) and its bound at ``host_ns`` from the last clock segment's samples,
    each used by its quality (``hzsr.core.clockmap``, the mapping ``sync check`` uses);
    ``physical``: see ``_drift``."""
    h, o, e = _segment(clock, upto, raw)
    d, se = _drift(clock, wander_ppm, physical)
    off, bound = clockmap.offset_at(np.array([host_ns], np.float64), h, o, e, d, se, wander_ppm)
    return float(off[0]), float(bound[0])


def host_time(clock: DeviceClock, phone_ns: int, wander_ppm: float = 0.5) -> tuple[int, float]:
    """A phone instant on the host clock, and its mapping bound (ns), with the last segment."""
    h, o, e = _segment(clock)
    d, se = _drift(clock, wander_ppm)
    host, bound = clockmap.to_host(np.array([phone_ns], np.float64), h, o, e, d, se, wander_ppm)
    return int(round(host[0])), float(bound[0])


def live_skew(main: DeviceClock, ref: DeviceClock, main_ts_ns: int, ref_ts_ns: int,
              wander_ppm: float = 0.5) -> tuple[float, float]:
    """Reference-minus-main skew of two frames (us) and its bound (us): both frames' mapping
    bounds plus each timestamp's jitter (``clockmap.skew_bound_ns``, the sum sync check uses)."""
    hm, bm = host_time(main, main_ts_ns, wander_ppm)
    hr, br = host_time(ref, ref_ts_ns, wander_ppm)
    return (hr - hm) / 1e3, clockmap.skew_bound_ns(bm, br) / 1e3


def samples_used(clock: DeviceClock, host_ns: float, wander_ppm: float = 0.5) -> list[int]:
    """Indices into ``clock.samples`` of the samples that map ``host_ns`` (``offset_estimate``)."""
    h, _, e = _segment(clock)
    start = _segment_start(clock, len(clock.samples))
    order = np.argsort([s.host_ns for s in clock.samples[start:]], kind="stable")
    _, se = _drift(clock, wander_ppm)
    return sorted(start + int(order[i]) for i in clockmap.used_samples(host_ns, h, e, se, wander_ppm))


def floor_ns(clock: DeviceClock) -> float:
    """The link's floor: the least raw sample bound (``rtt / 2``) seen, or calibrated with."""
    if not clock.samples:
        return 0.0
    cal = clock.calibration
    fl = float(clockmap.sample_bounds(clock.samples).min())
    if cal is not None:
        fl = min(fl, float(cal.base_half_rtt_ns)) + abs(cal.offset_correction_ns)
    return fl


def step_against_prediction(clock: DeviceClock, sample: ClockSample, wander_ppm: float = 0.5
                            ) -> tuple[float, float] | None:
    """The new sample's offset minus the earlier samples' prediction, and the bound it must exceed.

    ``diff = offset_new - offset_estimate(t_new)``; ``bound = prediction bound + rtt_new / 2 (+ the
    calibration's offset correction)``: the two error intervals. None before the first sample.
    """
    if not clock.samples:
        return None
    # Calibrated bounds subtract the link's floor; a jump test needs intervals that surely hold.
    pred, pred_bound = offset_estimate(clock, sample.host_ns, wander_ppm, raw=True, physical=True)
    cal = clock.calibration
    e_new = sample.rtt_ns / 2 + (abs(cal.offset_correction_ns) if cal is not None else 0.0)
    return sample.offset_ns - pred, pred_bound + e_new


def add_sample(clock: DeviceClock, sample: ClockSample, wander_ppm: float = 0.5) -> float | None:
    """Append ``sample`` and refit drift; returns the clock step (ns) it shows, or None.

    The step is the new offset minus the prediction of the earlier samples (``offset_estimate``).
    It counts only when the two error intervals cannot both hold: ``|step| > prediction bound +
    the new sample's bound`` (and > 1 ms; ``step_against_prediction``). A loose sample, or a drift
    fitted from two close samples (its stderr is then large), widens the prediction's bound instead
    of faking a jump -- but only as far as a crystal can drift (``MAX_CRYSTAL_PPM``): a fit from two
    samples 0.1 s apart reads ~1000 ppm of stderr, and carried over the 1-2 s a loaded host takes to
    pull a capture it hid a 5 ms step, which the frames were then interpolated across.
    """
    step = None
    got = step_against_prediction(clock, sample, wander_ppm)
    if got is not None and abs(got[0]) > max(1e6, got[1]):
        step = got[0]
    clock.samples.append(sample)
    clock.drift_ppm, clock.drift_ppm_stderr = fit_drift(clock.samples, clock.segment_starts)
    return step
