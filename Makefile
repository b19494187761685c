# The two commands a new user needs: `make demo` and `make test`.
# Each creates .venv on first use and installs malla into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test install lint clean system-deps bench bench-quick

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/malla demo

# System packages the tests use (iptables, Prometheus, ...): installed when missing (root), else named.
system-deps:
	@if [ -x .ci/install-test-deps ]; then .ci/install-test-deps || \
		echo "warning: some system packages are missing; the tests that need them will say which" >&2; fi

test: $(VENV)/.installed-test system-deps
	$(BIN)/lint-imports --config pyproject.toml
	$(BIN)/python -m pytest -n auto --dist loadgroup $(PYTEST_ARGS)

# Benchmarks print figures and ratios (bench/REPORT.md); they are not tests.
bench: $(VENV)/.installed-test
	bench/install-deps
	$(BIN)/python -m bench.run

bench-quick: $(VENV)/.installed-test
	bench/install-deps
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build src/*.egg-info
