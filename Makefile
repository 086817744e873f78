# pykops developer targets. `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck unit demo bench clean golden cloud-init etcd

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

# Debian's cloud-init, for the test that checks the launch templates' user data against its schema
# (`cloud-init schema`). Installed with apt when missing (sudo when not root); the test skips without it.
SUDO := $(shell [ "$$(id -u)" = 0 ] || ! command -v sudo >/dev/null || echo sudo)
cloud-init:
	@command -v cloud-init >/dev/null || { echo "installing Debian's cloud-init (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends cloud-init >/dev/null; } || \
	  echo "warning: could not install cloud-init; the user data schema test will be skipped" >&2

# Debian's etcd-server: the sandbox runs one real etcd member per simulated control-plane machine.
etcd:
	@command -v etcd >/dev/null || { echo "installing Debian's etcd-server (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	  --no-install-recommends etcd-server >/dev/null; }
	@command -v etcd >/dev/null || { echo "error: etcd is needed by the sandbox (apt-get install etcd-server)" >&2; exit 1; }

unit: install cloud-init etcd
	$(BIN)/pytest -q

test: lint typecheck unit

# Regenerate golden files after an intended change; review the diff before committing.
golden: install
	PYKOPS_UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/test_golden_create.py tests/test_golden_plan.py tests/test_addons_golden.py

# Benchmarks (not run by `make test`): AWS calls and wall time of create / no-op update / delete; rolling-update
# wall time against the ideal (an in-memory fake here; `bench/bench_rolling.py --sandbox` runs it in the sandbox).
bench: install
	$(BIN)/python bench/bench_update.py
	$(BIN)/python bench/bench_rolling.py

demo: install etcd
	$(BIN)/python -m pykops.demo

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
