# The commands README and CI use. `make install` is idempotent and quick when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test lint format bench bench-full evals clean

install: $(STAMP)

# pip shows what it fetches: with download bars on a terminal, as plain lines in CI logs.
$(STAMP): pyproject.toml
	@echo "make install: installing the gateway and its pinned dependencies into $(VENV)/"
	@echo "  (the first time ~2 GB, mostly torch for the local embedding model: a few minutes;"
	@echo "   afterwards only when pyproject.toml changes)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if [ -t 1 ]; then bar=on; else bar=off; fi; \
	  echo "$(BIN)/python -m pip install --progress-bar $$bar -e '.[dev]'"; \
	  $(BIN)/python -m pip install --progress-bar $$bar -e '.[dev]'
	@touch $(STAMP)
	@echo "make install: done"

run: install
	$(BIN)/gateway serve

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix gateway tests bench
	$(BIN)/ruff format gateway tests bench

# The project's own eval suites, against the deterministic local/echo model: a prompt edit
# that breaks a suite fails CI. Every suite runs through one gateway; the exit code is the
# worst, and one JUnit file (a <testsuite> per suite) lands in .gateway/reports/. The
# retrieval suite (docs-rag) searches the example collection of the project's docs: built
# first (~30 s with the bundled model), and only again when the docs change.
evals: install
	$(BIN)/gateway index build-example
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
