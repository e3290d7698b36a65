"""The thread policy of every torch entry point (train, eval, infer, export, each DDP rank).

Two settings, both made before torch loads (OpenMP reads its environment once, when the library
is first loaded):

- **Passive waiting** (``OMP_WAIT_POLICY=PASSIVE``). With OpenMP's default policy an idle worker
  spins for a while before it sleeps; on a shared machine those spins take the cores the other
  processes (and our own other threads) need. Measured on 2 shared cores (issue 19): two threads
  spent 11 CPU-s per 12 MP image on the UNet against 5.1 CPU-s for one; passive waiting removed
  most of it. A user's own ``OMP_WAIT_POLICY`` is kept.
- **A measured thread count.** The intra-op thread count is the number of cores that were free
  over a short sample of ``/proc/stat`` (``sample_s``, 0.1 s) when the verb started, shared among the
  local DDP ranks (``LOCAL_WORLD_SIZE``), at least 1 and at most the cores this process may run on:

      threads = clamp(round(free_cores / local_ranks), 1, usable_cores // local_ranks)

  where ``free_cores = usable_cores * idle_jiffies / all_jiffies`` over the sample. A thread
  beyond the free cores only time-slices with the other processes, and each OpenMP barrier then
  waits for the slowest, descheduled thread. On the loaded 2-core machine the policy (passive,
  one thread) trained 3.4-4.5x and inferred 1.5-2.0x faster than torch's defaults; at load 3 it
  kept two threads and matched them (``docs/benchmarks.md``, issue 19).

Overrides, first that is set wins: the verb's ``--threads N`` (``auto`` = measure), the environment
``HZSR_TORCH_THREADS`` (same values), then ``OMP_NUM_THREADS`` when not under ``torchrun`` (which
sets it to 1 for every rank by default, which is not a choice by the user).

This module imports nothing heavy: ``apply`` imports torch itself, after setting the environment.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

#: Environment variable overriding the thread count: an integer >= 1, or ``auto``.
ENV_THREADS = "HZSR_TORCH_THREADS"
#: Seconds of ``/proc/stat`` sampled to count the free cores.
SAMPLE_S = 0.1
#: The OMP_NUM_THREADS this module set, so a later verb in the same process (the demo runs its
#: verbs in-process) measures again instead of taking it for the user's choice.
_OURS: dict[str, str] = {}


@dataclass(frozen=True)
class ThreadPolicy:
    threads: int  # torch intra-op threads chosen
    wait_policy: str  # OMP_WAIT_POLICY in force ("PASSIVE" unless the user set another)
    source: str  # where ``threads`` came from: "--threads", ENV_THREADS, "OMP_NUM_THREADS" or "measured"
    usable_cores: int  # cores this process may run on (sched_getaffinity)
    free_cores: float | None  # measured free cores (None when not measured)
    local_ranks: int  # DDP ranks on this machine sharing the cores
    torch_was_loaded: bool  # torch was imported before the policy: the wait policy could not take effect

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


def free_cores(sample_s: float = SAMPLE_S) -> float | None:
    """Cores left idle by every other process over ``sample_s`` seconds (this one sleeps meanwhile).

    ``free = usable_cores * (idle jiffies / all jiffies)`` over the cores this process may use;
    None where ``/proc/stat`` cannot be read (not Linux).
    """
    try:
        cpus: set[int] | None = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    a = _cpu_jiffies(cpus)
    if a is None:
        return None
    time.sleep(sample_s)
    b = _cpu_jiffies(cpus)
    if b is None or b[1] <= a[1]:
        return None
    return usable_cores() * (b[0] - a[0]) / (b[1] - a[1])


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


def choose(requested: str | None = None, *, sample_s: float = SAMPLE_S) -> ThreadPolicy:
    """Decide the policy (does not apply it): see the module docstring for the precedence."""
    cores = usable_cores()
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    per_rank = max(1, cores // ranks)
    wait = os.environ.get("OMP_WAIT_POLICY", "PASSIVE").upper() or "PASSIVE"
    loaded = "torch" in sys.modules
    free = None
    for value, where in ((requested, "--threads"), (os.environ.get(ENV_THREADS), ENV_THREADS)):
        if value is not None and (n := _parse(value, where)) is not None:
            return ThreadPolicy(n, wait, where, cores, free, ranks, loaded)
    omp = os.environ.get("OMP_NUM_THREADS")
    if omp and omp != _OURS.get("OMP_NUM_THREADS") and "TORCHELASTIC_RUN_ID" not in os.environ:
        n = _parse(omp, "OMP_NUM_THREADS")
        if n is not None:
            return ThreadPolicy(n, wait, "OMP_NUM_THREADS", cores, free, ranks, loaded)
    free = free_cores(sample_s)
    n = per_rank if free is None else max(1, min(per_rank, round(free / ranks)))
    return ThreadPolicy(n, wait, "measured", cores, None if free is None else round(free, 2), ranks, loaded)


def apply(requested: str | None = None, *, sample_s: float = SAMPLE_S) -> ThreadPolicy:
    """Choose the policy, set the environment, then load torch and set its thread count.

    Call it before anything imports torch: ``OMP_WAIT_POLICY`` only takes effect at OpenMP's load.
    Without torch installed the environment is still set and the policy returned (the caller then
    reports the missing extra).
    """
    pol = choose(requested, sample_s=sample_s)
    os.environ.setdefault("OMP_WAIT_POLICY", pol.wait_policy)
    if not pol.torch_was_loaded:
        # Read by OpenMP at load; child processes (DataLoader workers, torchrun ranks) inherit it.
        os.environ["OMP_NUM_THREADS"] = _OURS["OMP_NUM_THREADS"] = str(pol.threads)
    try:
        import torch
    except ImportError:
        return pol
    torch.set_num_threads(pol.threads)
    return pol
