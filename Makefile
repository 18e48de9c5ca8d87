# edgeloop: one command to set up, one to see the loop, one to test it.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
LSVENV := .venv-labelstudio
BIN := $(VENV)/bin
VAR := $(CURDIR)/var

# Offline switches for every tool we run (see ../shared/PLATFORM_NOTES.md); nothing writes to $HOME.
export YOLO_CONFIG_DIR := $(VAR)/ultralytics
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := 0
export PREFECT_HOME := $(VAR)/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export DVC_NO_ANALYTICS := 1
export ITERATIVE_DO_NOT_TRACK := 1
export DO_NOT_TRACK := 1
export MPLCONFIGDIR := $(VAR)/matplotlib
export XDG_CONFIG_HOME := $(VAR)/xdg/config
export XDG_CACHE_HOME := $(VAR)/xdg/cache
export XDG_DATA_HOME := $(VAR)/xdg/data

.PHONY: setup demo test lint bench seed reliability clean help

help:
	@echo "make setup   create .venv (project, all extras) and .venv-labelstudio; offline settings in var/"
	@echo "make demo    run the closed loop on this machine (ARGS=--exit: stop at the end)"
	@echo "make test    lint and run the test suite (runs setup when needed)"
	@echo "make seed    dvc repro sim/dvc.yaml: render the seed set, train, export, evaluate the champion"
	@echo "make bench   run the benchmarks under bench/ (each prints JSON)"
	@echo "make reliability  fault injection, hostile input and fuzzing (also part of make test)"

setup: $(VENV)/.deps-ok $(LSVENV)/.ok $(VAR)/.offline-ok

# torch comes from this machine's local wheels through pip (uv cannot see them).
$(VENV)/.torch-ok:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	touch $@

# The rest through uv (same resolution as pip here, ~15 s instead of ~130 s); it keeps that torch.
$(VENV)/.deps-ok: $(VENV)/.torch-ok pyproject.toml
	$(BIN)/pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[edge,cloud,dev]'
	$(BIN)/pip check
	touch $@

# Label Studio's server pins an older Prefect: it lives in its own venv; we talk to it over HTTP.
$(LSVENV)/.ok:
	$(PY) -m venv $(LSVENV)
	$(LSVENV)/bin/pip install --quiet --upgrade pip
	$(LSVENV)/bin/pip install --quiet 'label-studio==1.23.2'
	touch $@

$(VAR)/.offline-ok: $(VENV)/.deps-ok scripts/offline_setup.py
	$(BIN)/python scripts/offline_setup.py --var $(VAR)
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# setup's two venvs build side by side (-j2); the tests run on two workers, a file per worker
# at a time (module fixtures stay whole), in collection order (the long e2e file starts first);
# the slowest tests are listed at the end.
test:
	@$(MAKE) --no-print-directory -j2 setup
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25

# The simulator's seed pipeline: the example project's data/seed and models/champion; a retrain
# of that project is then `dvc repro` here, as in any team's project.
seed: setup
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro sim/dvc.yaml

# The closed loop on this machine; ARGS=--exit stops at the end instead of keeping the UIs up.
demo:
	@$(MAKE) --no-print-directory -j2 setup
	$(BIN)/edgeloop demo $(ARGS)

reliability: setup
	$(BIN)/python -m pytest -q tests/reliability tests/integration/test_hub_kill9.py \
		tests/integration/test_spool_kill9.py tests/integration/test_updater_kill9.py \
		tests/integration/test_uplink.py

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b --json; done

clean:
	rm -rf $(VAR) .pytest_cache .ruff_cache
