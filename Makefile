# pykops developer targets. `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck unit demo bench clean golden

install: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy src/pykops

unit: install
	$(BIN)/pytest -q

test: lint typecheck unit

# Regenerate golden files after an intended change; review the diff before committing.
golden: install
	PYKOPS_UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/test_golden_create.py tests/test_golden_plan.py

# Benchmarks (not run by `make test`): AWS calls and wall time of create / no-op update / delete.
bench: install
	$(BIN)/python bench/bench_update.py

demo: install
	$(BIN)/python -m pykops.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
