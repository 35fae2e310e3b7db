# The commands README and CI use. `make install` is idempotent and quick when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install lock licenses run test lint format bench bench-full evals clean

install: $(STAMP)

# Every package comes from requirements.lock: exact versions, and pip checks each file against
# the lock's sha256 (--require-hashes). pip itself first, at its locked version (a new venv has
# whatever pip Python bundled). Then the gateway, editable, with --no-deps (the lock brought
# them) and --no-build-isolation (the build backend is the locked setuptools, not a fresh one).
# pip shows what it fetches: with download bars on a terminal, as plain lines in CI logs.
LOCK := requirements.lock
$(STAMP): $(LOCK) pyproject.toml
	@echo "make install: installing the gateway and its locked dependencies into $(VENV)/"
	@echo "  (the first time ~2 GB, mostly torch for the local embedding model: a few minutes;"
	@echo "   afterwards only when $(LOCK) or pyproject.toml changes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@awk '/^pip==/{p=1} p{print} p&&!/\\$$/{exit}' $(LOCK) > $(VENV)/pip.lock
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(VENV)/pip.lock
	@if [ -t 1 ]; then bar=on; else bar=off; fi; \
	  echo "$(BIN)/python -m pip install --progress-bar $$bar --require-hashes -r $(LOCK)"; \
	  $(BIN)/python -m pip install --progress-bar $$bar --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "make install: done"

# `make lock`: after a change of pyproject.toml's pins, the one command that brings the supply
# chain files along: requirements.lock (pip-compile keeps the other pins; LOCK_ARGS=--upgrade
# moves them all, LOCK_ARGS="--upgrade-package NAME" one), the install, docs/licenses.md and,
# when PyPI answers, supply-chain/audit-state.json. torch stays the CPU build: pip-compile sees
# the local torch-*+cpu wheel through pip's own configuration, as `make install` does.
lock: install
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --extra dev \
	  --build-deps-for editable --no-emit-index-url --no-emit-find-links \
	  --output-file $(LOCK) $(LOCK_ARGS) pyproject.toml
	$(BIN)/python -m tools.supply_chain lock-digest
	$(MAKE) install
	$(BIN)/python -m tools.supply_chain licenses
	-$(BIN)/python -m tools.supply_chain audit --save-snapshot

licenses: install
	$(BIN)/python -m tools.supply_chain licenses

run: install
	$(BIN)/gateway serve

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The supply chain step: the lock agrees with pyproject.toml, docs/licenses.md and
# docs/frontend-assets.md with what is installed, and no known vulnerability is left
# unaccepted (PyPI when it answers, else the last known state: never a failure for a network).
lint: install
	$(BIN)/ruff check gateway tests bench tools
	$(BIN)/ruff format --check gateway tests bench tools
	$(BIN)/mypy
	BIN=$(BIN) deploy/validate.sh  # Dockerfile, compose, collector, Prometheus, Kubernetes, CI
	$(BIN)/python -m tools.supply_chain check

format: install
	$(BIN)/ruff check --fix gateway tests bench tools
	$(BIN)/ruff format gateway tests bench tools

# The project's own eval suites, against the deterministic local/echo model: a prompt edit
# that breaks a suite fails CI. Every suite runs through one gateway; the exit code is the
# worst, and one JUnit file (a <testsuite> per suite) lands in .gateway/reports/.
evals: install
	$(BIN)/gateway eval run evals/ --junit .gateway/reports/evals.junit.xml

# `make bench`: all features on, one worker, then 1 vs 2 workers under a CPU quota of half a core
# each (this machine has two cores for everything), then one client with the gateway confined to
# one CPU (all-on and the embedded limits configuration; bench/confined.py), ~6 minutes. The
# confined processes run at real-time priority (needs root): on a machine other work keeps
# busy, a normal-priority wake-up waits milliseconds for the CPU, whatever the gateway does.
# `make bench-full` adds each feature's own configuration (~14 minutes). Options: bench.run -h.
SCALING := --workers 1,2 --cores-per-worker 0.5
CONFINED := --confined --realtime
bench: install
	$(BIN)/python -m bench.run $(SCALING) $(CONFINED) $(BENCH_ARGS)

bench-full: install
	$(BIN)/python -m bench.run --features all $(SCALING) $(CONFINED) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .gateway .pytest_cache .mypy_cache .ruff_cache
