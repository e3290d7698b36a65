"""The thread policy of every torch entry point (train, eval, infer, export, each DDP rank).

Two settings, both made before torch loads (OpenMP reads its environment once, when the library
is first loaded):

- **A measured thread count.** The intra-op thread count is the number of cores that were free
  over a short sample of ``/proc/stat`` (``sample_s``, 0.1 s) when the verb started, shared among the
  local DDP ranks (``LOCAL_WORLD_SIZE``), at least 1 and at most the cores this process may run on:

      threads = clamp(round(free_cores / local_ranks), 1, usable_cores // local_ranks)

  where ``free_cores = usable_cores * idle_jiffies / all_jiffies`` over the sample. A thread
  beyond the free cores only time-slices with the other processes, and each OpenMP barrier then
  waits for the slowest, descheduled thread.
- **How idle OpenMP threads wait** (``choose_wait``, a pure function of the threads, the free
  cores and the environment). Between two parallel regions an OpenMP worker either spins or
  sleeps on a futex:

  - ``spin`` (bounded) when the free cores cover every thread of every local rank,
    ``free_cores >= threads * local_ranks - SLACK_CORES``: ``GOMP_SPINCOUNT=SPIN_COUNT`` for
    libgomp (what torch's Linux CPU wheels bundle, ``torch/lib/libgomp.so.1``; about 0.65 ms of
    spinning here, against about 11 ms at libgomp's default) and ``KMP_BLOCKTIME=BLOCKTIME_MS``
    for Intel's or LLVM's runtime (not measured: no torch here bundles one). On free cores the
    spin catches the next parallel region without a futex sleep and wake-up per barrier: passive
    waiting there made training 0.83x torch's default (idle cores, issue 19), the bounded spin
    1.17x (near idle, median of 3 rounds; ``docs/benchmarks.md``). The bound keeps the cost small
    if the load comes after the sample (3.2x the default, 0.75x passive, on 2 short cores).
  - ``passive`` (``OMP_WAIT_POLICY=PASSIVE``) when the cores are short (or unmeasured), and for a
    single thread (no worker waits). Spinning workers there take the cores the other processes
    need: on the loaded 2-core machine the policy (passive, one thread) trained 3.4-4.5x and
    inferred 1.5-2.0x faster than torch's defaults (``docs/benchmarks.md``, issue 19).
  - ``user``: the user's own ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME`` is kept,
    and none of the others is set. Values an ``apply`` set are not the user's: they are listed in
    ``HZSR_THREADS_SET``, so a child process that inherits them decides again.

Overrides, first that is set wins: the verb's ``--threads N`` (``auto`` = measure), the environment
``HZSR_TORCH_THREADS`` (same values), then ``OMP_NUM_THREADS`` when not under ``torchrun`` (which
sets it to 1 for every rank by default, which is not a choice by the user).

This module imports nothing heavy: ``apply`` imports torch itself, after setting the environment.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Environment variable overriding the thread count: an integer >= 1, or ``auto``.
ENV_THREADS = "HZSR_TORCH_THREADS"
#: Seconds of ``/proc/stat`` sampled to count the free cores.
SAMPLE_S = 0.1
#: OpenMP's waiting, as the runtimes read it: libgomp ``OMP_WAIT_POLICY`` and ``GOMP_SPINCOUNT``
#: (iterations of a pause loop), Intel's and LLVM's ``OMP_WAIT_POLICY`` and ``KMP_BLOCKTIME`` (ms).
WAIT_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
#: libgomp spin iterations before a worker sleeps, when the cores are free. libgomp's default is
#: 300000 ("3 ms" by its estimate), 0 when passive. Measured on the 2-core VM (AMD EPYC, issue 19,
#: ``bench/omp_spin.py``): a 2-thread region followed by a 20 ms sleep costs 0.5 ms of CPU at 0,
#: 1.15 ms at 10000, 2.1 ms at 30000 and 11.4 ms at libgomp's default: 10000 bounds the waste per
#: region to about 0.65 ms, far above the microseconds between two ops of a training step.
SPIN_COUNT = 10000
#: KMP_BLOCKTIME (ms) for Intel's / LLVM's runtime in the same case (their default is 200 ms).
BLOCKTIME_MS = 1
#: Free cores that may be missing and still count as covering the threads: /proc/stat over 0.1 s
#: counts in jiffies (1/100 s per core), and an idle machine's background shows as a few percent.
SLACK_CORES = 0.25
#: Names, in the environment, the values ``apply`` set (``NAME=value;...``): a child process (a
#: test's, a script's ``hzsr`` run) inherits them and, reading this, decides again instead of
#: taking a spin its parent chose on free cores for the user's own setting.
ENV_OURS = "HZSR_THREADS_SET"


def inherited_ours(environ: Mapping[str, str]) -> dict[str, str]:
    """The values a parent's ``apply`` set, still in force in ``environ`` (read from ``ENV_OURS``;
    a malformed entry, a name outside OMP_NUM_THREADS and ``WAIT_ENV``, or a value since changed
    by the user counts as the user's)."""
    out: dict[str, str] = {}
    for item in environ.get(ENV_OURS, "").split(";"):
        k, sep, v = item.partition("=")
        if sep and (k in WAIT_ENV or k == "OMP_NUM_THREADS") and environ.get(k) == v:
            out[k] = v
    return out


#: The OMP_NUM_THREADS and WAIT_ENV values this module (or a parent's) set, so a later verb in the
#: same process (the demo runs its verbs in-process) decides again instead of taking them for the
#: user's choice.
_OURS: dict[str, str] = inherited_ours(os.environ)


@dataclass(frozen=True)
class ThreadPolicy:
    threads: int  # torch intra-op threads chosen
    wait: str  # how idle OpenMP workers wait: "spin" (bounded), "passive" or "user" (see choose_wait)
    source: str  # where ``threads`` came from: "--threads", ENV_THREADS, "OMP_NUM_THREADS" or "measured"
    usable_cores: int  # cores this process may run on (sched_getaffinity)
    free_cores: float | None  # measured free cores (None when not measured)
    local_ranks: int  # DDP ranks on this machine sharing the cores
    torch_was_loaded: bool  # torch was imported before the policy: the wait settings could not take effect
    wait_env: dict[str, str] = field(default_factory=dict)  # WAIT_ENV variables in force (ours or the user's)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _cpu_jiffies(cpus: set[int] | None) -> tuple[int, int] | None:
    """(idle, total) jiffies summed over ``cpus`` (all when None) from ``/proc/stat``; None if unreadable."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    idle = total = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        try:
            if cpus is not None and int(name[3:]) not in cpus:
                continue
            vals = [int(v) for v in rest.split()]
        except ValueError:
            continue
        # user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
        idle += vals[3] + (vals[4] if len(vals) > 4 else 0)
        total += sum(vals[:8])
    return (idle, total) if total else None


def _own_jiffies() -> float:
    """This process's CPU time (all its threads, user + system) in ``/proc/stat``'s unit (USER_HZ)."""
    t = os.times()
    return (t.user + t.system) * os.sysconf("SC_CLK_TCK")


def free_cores(sample_s: float = SAMPLE_S, meanwhile: Callable[[], object] | None = None) -> float | None:
    """Cores left idle by every other process over ``sample_s`` seconds (this one sleeps meanwhile).

    ``free = usable_cores * (idle jiffies / all jiffies)`` over the cores this process may use;
    None where ``/proc/stat`` cannot be read (not Linux). With ``meanwhile``, that runs during the
    sample instead of the sleep (the sample then lasts at least ``sample_s``) and this process's
    own CPU time over it counts as idle, as it is not another process's:
    ``free = usable_cores * min(1, (idle + own) / all)``. ``model infer`` imports its modules
    there, so the sample costs no wall time (0.1 s of a 12 MP image's 3 s on idle cores).
    """
    try:
        cpus: set[int] | None = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    a = _cpu_jiffies(cpus)
    if a is None:
        if meanwhile is not None:
            meanwhile()
        return None
    if meanwhile is None:
        time.sleep(sample_s)
        own = 0.0
    else:
        t0, own0 = time.monotonic(), _own_jiffies()
        meanwhile()
        own = _own_jiffies() - own0
        time.sleep(max(0.0, sample_s - (time.monotonic() - t0)))
    b = _cpu_jiffies(cpus)
    if b is None or b[1] <= a[1]:
        return None
    return usable_cores() * min(1.0, (b[0] - a[0] + own) / (b[1] - a[1]))


def _parse(value: str, where: str) -> int | None:
    """An explicit count (int >= 1), or None for ``auto``; a bad value is one line naming ``where``."""
    v = value.strip().lower()
    if v in ("", "auto"):
        return None
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        from hzsr.core.errors import ConfigError

        raise ConfigError(f"expected an integer >= 1 or 'auto', got {value!r}", field=where)
    return n


def choose_wait(threads: int, free: float | None, local_ranks: int,
                env: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """How idle OpenMP workers wait: ``(wait, variables to set)``; pure (no measurement, no side effect).

    Args:
        threads: intra-op threads per rank.
        free: cores found free (``free_cores``), None when unmeasured.
        local_ranks: ranks on this machine, each with ``threads`` threads.
        env: the user's own settings among ``WAIT_ENV`` (ours from an earlier verb left out).

    Returns:
        ``("user", {the user's})`` when any is set: kept, nothing added; else
        ``("spin", {GOMP_SPINCOUNT, KMP_BLOCKTIME})`` when ``threads > 1`` and
        ``free >= threads * local_ranks - SLACK_CORES``; else ``("passive", {OMP_WAIT_POLICY: PASSIVE})``.
    """
    user = {k: env[k] for k in WAIT_ENV if env.get(k)}
    if user:
        return "user", user
    if threads > 1 and free is not None and free >= threads * local_ranks - SLACK_CORES:
        return "spin", {"GOMP_SPINCOUNT": str(SPIN_COUNT), "KMP_BLOCKTIME": str(BLOCKTIME_MS)}
    return "passive", {"OMP_WAIT_POLICY": "PASSIVE"}


def _user_wait_env() -> dict[str, str]:
    """The ``WAIT_ENV`` variables set by the user (not by an earlier ``apply`` in this process)."""
    return {k: v for k in WAIT_ENV if (v := os.environ.get(k)) and v != _OURS.get(k)}


def choose(requested: str | None = None, *, sample_s: float = SAMPLE_S,
           meanwhile: Callable[[], object] | None = None) -> ThreadPolicy:
    """Decide the policy (does not apply it): see the module docstring for the precedence.

    The free cores are measured for the measured count, and for an explicit count above one when the
    user set no wait variable (``choose_wait`` needs them). ``meanwhile`` (work of this process
    that loads no torch) runs during the measurement (``free_cores``), or before deciding when
    nothing is measured.
    """
    cores = usable_cores()
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    per_rank = max(1, cores // ranks)
    loaded = "torch" in sys.modules
    user_wait = _user_wait_env()
    n: int | None = None
    source = "measured"
    for value, where in ((requested, "--threads"), (os.environ.get(ENV_THREADS), ENV_THREADS)):
        if value is not None and (n := _parse(value, where)) is not None:
            source = where
            break
    omp = os.environ.get("OMP_NUM_THREADS")
    if (n is None and omp and omp != _OURS.get("OMP_NUM_THREADS")
            and "TORCHELASTIC_RUN_ID" not in os.environ):
        if (n := _parse(omp, "OMP_NUM_THREADS")) is not None:
            source = "OMP_NUM_THREADS"
    free = None
    if n is None or (n > 1 and not user_wait):
        free = free_cores(sample_s) if meanwhile is None else free_cores(sample_s, meanwhile)
    elif meanwhile is not None:
        meanwhile()
    if n is None:
        n = per_rank if free is None else max(1, min(per_rank, round(free / ranks)))
    wait, wait_env = choose_wait(n, free, ranks, user_wait)
    return ThreadPolicy(n, wait, source, cores, None if free is None else round(free, 2), ranks, loaded, wait_env)


def _limit_blas(threads: int) -> None:
    """Hold the BLAS libraries already loaded in this process to ``threads`` (threadpoolctl,
    installed with the ``train`` extra; without it they keep the count they read at load)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="blas")


def apply(requested: str | None = None, *, sample_s: float = SAMPLE_S, load_torch: bool = True,
          meanwhile: Callable[[], object] | None = None) -> ThreadPolicy:
    """Choose the policy, set the environment, then load torch and set its thread count.

    Call it before anything imports torch: the wait settings only take effect at OpenMP's load.
    Without torch installed the environment is still set and the policy returned (the caller then
    reports the missing extra). With ``load_torch=False`` (``model infer``, whose ONNX runtimes need
    no torch) torch's count is set only if torch is already loaded; if it loads later it reads the
    environment set here. ``meanwhile`` (see ``choose``) runs before the environment is set: it
    must not load torch or OpenMP.
    """
    pol = choose(requested, sample_s=sample_s) if meanwhile is None else choose(requested, sample_s=sample_s,
                                                                                 meanwhile=meanwhile)
    if pol.wait != "user":
        # Ours from an earlier verb in this process go (a child process reads the new decision).
        for k in WAIT_ENV:
            if k in _OURS and os.environ.get(k) == _OURS.pop(k):
                del os.environ[k]
        for k, v in pol.wait_env.items():
            os.environ[k] = _OURS[k] = v
    if not pol.torch_was_loaded:
        # Read by OpenMP at load; child processes (DataLoader workers, torchrun ranks) inherit it.
        os.environ["OMP_NUM_THREADS"] = _OURS["OMP_NUM_THREADS"] = str(pol.threads)
    os.environ[ENV_OURS] = ";".join(f"{k}={v}" for k, v in sorted(_OURS.items()))
    if "numpy" in sys.modules:
        # numpy's BLAS read OMP_NUM_THREADS when it loaded, which ``meanwhile`` (or an earlier
        # import) may have done before it was set: hold it to the policy's count as well.
        _limit_blas(pol.threads)
    if not load_torch and "torch" not in sys.modules:
        return pol
    try:
        import torch
    except ImportError:
        return pol
    torch.set_num_threads(pol.threads)
    return pol
