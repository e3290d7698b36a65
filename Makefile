# Every target builds its own venv, so a fresh clone needs nothing but python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo-out

.PHONY: demo test test-slow bench results int8 lint clean shell-tools

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,train,hf,quantize]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m hzsr.demo --out $(DEMO_DIR)

# Real mksh and toybox (Debian packages) for the virtual shell's differential test
# (tests/vphone/test_shell_differential.py); without them that test is skipped, saying why.
shell-tools:
	@command -v mksh >/dev/null && command -v toybox >/dev/null || \
	  apt-get install -y -q mksh toybox >/dev/null 2>&1 || sudo -n apt-get install -y -q mksh toybox >/dev/null 2>&1 || \
	  echo "note: could not install mksh and toybox (apt-get); the shell differential test will be skipped"

# Two pytest-xdist workers per core, at most 4: a test file stays on one worker (its module-scoped rigs and
# order as in a serial run). The suite waits on its virtual rigs (adb round trips, phones' capture
# pipelines) for a large part of its time, so a second worker per core fills those waits, and on a shared
# machine four workers keep the suite's share of the cores against other busy processes (docs/benchmarks.md,
# "The test suite's workers"). `$(PY) -m pytest -q` alone still runs serially.
# TEST_WORKERS=0 for a serial run (no xdist worker); at most 4 workers either way: each builds its own sessions and
# rigs (adb server, phones), and a many-core runner would otherwise start dozens. The 15 slowest tests are
# listed at the end: where the run's 10 minutes go.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; n = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1; print(min(4, 2 * n))")
test: $(STAMP) shell-tools
	$(PY) -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	@for b in bench/*.py; do [ "$$b" = bench/eval.py ] && continue; echo "== $$b"; $(PY) $$b || exit 1; done

# Every results table in docs/model.md, regenerated from the pinned recipe (bench/_data.py).
results: $(STAMP)
	cd bench && ../$(PY) eval.py

# The shipped checkpoint's int8 graph (weights/shipped.int8.xml/.bin/.json: --runtime openvino-int8), re-made
# whenever shipped.pt or the pipeline's settings change (a stale graph is never run: runtime.int8_check). Renders
# the four training sessions of "Reproduce the shipped model" (docs/model.md: seeds 11-14, 24 captures each,
# 640x480, --textures train) into $(INT8_DATA)/sNN unless there, then calibrates on them; deterministic (same
# sessions, same files). Needs nncf (the [quantize] extra).
INT8_DATA ?= bench/.data/int8
int8: $(STAMP)
	@for s in 11 12 13 14; do [ -f $(INT8_DATA)/s$$s/session.json ] || \
	  $(PY) -m hzsr.cli sim session --out $(INT8_DATA)/s$$s --captures 24 --seed $$s --textures train --truth --quiet || exit 1; done
	$(PY) -m hzsr.cli model quantize $(INT8_DATA)/s11 $(INT8_DATA)/s12 $(INT8_DATA)/s13 $(INT8_DATA)/s14

lint: $(STAMP)
	$(VENV)/bin/ruff check hzsr tests bench

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
