"""The wait half of the thread policy (``threads.choose_wait``) and how ``apply`` sets it (issue 19)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hzsr.baseline_model import threads

SPIN = {"GOMP_SPINCOUNT": str(threads.SPIN_COUNT), "KMP_BLOCKTIME": str(threads.BLOCKTIME_MS)}
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize(("n", "free", "ranks", "expected"), [
    (2, 2.0, 1, "spin"),  # idle 2 cores, 2 threads: a bounded spin, not a sleep per barrier
    (2, 2.0 - threads.SLACK_CORES, 1, "spin"),  # the background of an idle machine still counts as free
    (2, 1.6, 1, "passive"),  # round(1.6) = 2 threads but 0.4 core taken: spinning would take it
    (2, 0.0, 1, "passive"),
    (1, 2.0, 1, "passive"),  # one thread: no worker waits, nothing to spin for
    (2, 3.7, 2, "passive"),  # two local ranks of 2 threads need 4 free cores (less the slack)
    (2, 4.0, 2, "spin"),
    (4, None, 1, "passive"),  # unmeasured (no /proc/stat): the safe side on a shared machine
])
def test_wait_follows_the_free_cores(n, free, ranks, expected):
    wait, env = threads.choose_wait(n, free, ranks, {})
    assert (wait, env) == (expected, SPIN if expected == "spin" else PASSIVE)


@pytest.mark.parametrize("var", threads.WAIT_ENV)
def test_wait_keeps_the_users_setting(var):
    for free in (0.0, 2.0):
        assert threads.choose_wait(2, free, 1, {var: "7"}) == ("user", {var: "7"})
    assert threads.choose_wait(2, 2.0, 1, {var: ""})[0] == "spin"  # an empty variable is not a setting


def _clear(monkeypatch):
    for k in (*threads.WAIT_ENV, "HZSR_TORCH_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "TORCHELASTIC_RUN_ID",
              threads.ENV_OURS):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(threads, "_OURS", {})


def test_choose_measures_for_an_explicit_count(monkeypatch):
    """``--threads 2`` still samples the free cores, the wait decision needs them; the record says so."""
    _clear(monkeypatch)
    monkeypatch.setattr(threads, "free_cores", lambda sample_s=0: 2.0)
    pol = threads.choose("2")
    assert (pol.threads, pol.source, pol.free_cores, pol.wait, pol.wait_env) == (2, "--threads", 2.0, "spin", SPIN)
    monkeypatch.setattr(threads, "free_cores", lambda sample_s=0: 0.3)
    assert threads.choose("2").wait == "passive"
    assert threads.choose(None).threads == 1 and threads.choose(None).wait == "passive"  # measured: the loaded case
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    pol = threads.choose("2")
    assert (pol.wait, pol.wait_env, pol.free_cores) == ("user", {"OMP_WAIT_POLICY": "ACTIVE"}, None)
    assert pol.as_dict()["wait_env"] == {"OMP_WAIT_POLICY": "ACTIVE"}  # what bench/ and run records write


def test_apply_replaces_its_own_earlier_decision(monkeypatch):
    """The demo runs verbs in one process: a later verb's decision replaces ours, never the user's."""
    _clear(monkeypatch)
    monkeypatch.setitem(sys.modules, "torch", None)  # apply without loading torch (ImportError path)
    monkeypatch.setattr(threads, "free_cores", lambda sample_s=0: 2.0)
    assert threads.apply("2").wait == "spin"
    assert {k: os.environ.get(k) for k in threads.WAIT_ENV} == {"OMP_WAIT_POLICY": None, **SPIN}
    monkeypatch.setattr(threads, "free_cores", lambda sample_s=0: 0.0)
    assert threads.apply("2").wait == "passive"  # our GOMP_SPINCOUNT is not taken for the user's
    assert {k: os.environ.get(k) for k in threads.WAIT_ENV} == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None,
                                                               "KMP_BLOCKTIME": None}
    monkeypatch.setenv("GOMP_SPINCOUNT", "5")  # the user's, set between two verbs
    pol = threads.apply("2")
    assert (pol.wait, pol.wait_env, os.environ["GOMP_SPINCOUNT"]) == ("user", {"GOMP_SPINCOUNT": "5"}, "5")


def test_a_child_decides_again_over_its_parents_spin():
    """A parent's apply chose the spin on free cores; its child (a script's or a test's ``hzsr``)
    inherits GOMP_SPINCOUNT. Marked as ours, the child decides again (passive on a busy machine);
    the same variable without the mark, or changed since, is the user's and is kept."""
    code = ("from hzsr.baseline_model import threads\n"
            "threads.free_cores = lambda sample_s=0: 0.0\n"
            "p = threads.choose('2')\n"
            "print(p.wait, sorted(p.wait_env.items()))\n")
    base = {k: v for k, v in os.environ.items()
            if k not in (*threads.WAIT_ENV, "OMP_NUM_THREADS", "HZSR_TORCH_THREADS", threads.ENV_OURS)}
    spin = {"GOMP_SPINCOUNT": str(threads.SPIN_COUNT), "KMP_BLOCKTIME": str(threads.BLOCKTIME_MS)}
    mark = ";".join(f"{k}={v}" for k, v in sorted({**spin, "OMP_NUM_THREADS": "2"}.items()))

    def child(**env):
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**base, **env}).stdout.split()[0]

    assert child(**spin, OMP_NUM_THREADS="2", **{threads.ENV_OURS: mark}) == "passive"
    assert child(**spin) == "user"
    assert child(**{**spin, "GOMP_SPINCOUNT": "5"}, **{threads.ENV_OURS: mark}) == "user"
    assert child(**spin, **{threads.ENV_OURS: "GOMP_SPINCOUNT=10000;KMP_BLOCKTIME"}) == "user"  # malformed: user's
    assert threads.inherited_ours({"X": "1", threads.ENV_OURS: "X=1;;=;OMP_NUM_THREADS=3"}) == {}


def test_spin_reaches_torchs_openmp():
    """A fresh process: with free cores the bounded spin is in the environment when torch's libgomp loads."""
    code = ("from hzsr.baseline_model import threads\n"
            "import os, sys\n"
            "threads.free_cores = lambda sample_s=0: 2.0\n"
            "p = threads.apply('2')\n"
            "import torch\n"
            "print(p.wait, os.environ.get('OMP_WAIT_POLICY'), os.environ['GOMP_SPINCOUNT'], torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k not in (*threads.WAIT_ENV, "OMP_NUM_THREADS", "HZSR_TORCH_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["spin", "None", str(threads.SPIN_COUNT), "2"]


def test_work_during_the_sample_counts_as_this_process_not_as_load(monkeypatch):
    """``free_cores(meanwhile=)`` (``model infer`` imports its modules there, issue19x): the work runs
    in place of the sleep, and this process's own CPU over the sample counts as idle."""
    jiffies = iter([(100, 200), (110, 220)])  # others left 10 of 20 jiffies idle; we used 6 of the 10 busy
    own = iter([50.0, 56.0])
    slept, ran = [], []
    monkeypatch.setattr(threads, "_cpu_jiffies", lambda cpus: next(jiffies))
    monkeypatch.setattr(threads, "_own_jiffies", lambda: next(own))
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads.time, "sleep", slept.append)
    free = threads.free_cores(0.1, lambda: ran.append(1))
    assert ran == [1]
    assert free == pytest.approx(2 * (10 + 6) / 20)  # not 2 * 10 / 20: our own 6 jiffies were no other's load
    assert len(slept) == 1 and 0 <= slept[0] <= 0.1  # only what the work left of the sample
    # Without work the sample is the plain one: sleep, idle jiffies only.
    jiffies = iter([(100, 200), (110, 220)])
    slept.clear()
    assert threads.free_cores(0.1) == pytest.approx(1.0) and slept == [0.1]
    # An explicit count with the user's wait setting measures nothing: the work still runs, once.
    _clear(monkeypatch)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    ran.clear()
    assert threads.choose("2", meanwhile=lambda: ran.append(2)).free_cores is None and ran == [2]


def test_numpys_blas_loaded_during_the_sample_keeps_the_policys_count():
    """``model infer`` imports its modules (numpy, so OpenBLAS) during the sample, before
    OMP_NUM_THREADS is set: OpenBLAS read the machine's count at load (2 here). ``apply`` holds it
    to the policy's count afterwards (review finding: 2 BLAS threads under a 1-thread policy)."""
    code = ("from hzsr.baseline_model import threads, cli\n"
            "p = threads.apply('1', load_torch=False, meanwhile=cli._import_infer)\n"
            "from threadpoolctl import threadpool_info\n"
            "print(p.threads, sorted({i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'}))\n")
    env = {k: v for k, v in os.environ.items()
           if k not in (*threads.WAIT_ENV, "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "HZSR_TORCH_THREADS", threads.ENV_OURS)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip().split(maxsplit=1) == ["1", "[1]"], out.stdout
