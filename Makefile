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

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

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
# that breaks a suite fails CI. JUnit files land in .gateway/reports/.
evals: install
	@set -e; for suite in evals/*.yaml; do \
	  $(BIN)/gateway eval run $$suite --junit .gateway/reports/$$(basename $$suite .yaml).junit.xml; \
	done

# `make bench`: all features on, one worker, ~3-4 minutes. `make bench-full` adds each feature's
# own configuration and the 2-worker scaling run (~12 minutes). Options: python -m bench.run -h.
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-full: install
	$(BIN)/python -m bench.run --features all --workers 1,2 $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .gateway .pytest_cache .mypy_cache .ruff_cache
