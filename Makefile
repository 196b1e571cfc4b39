# Two set-up commands: `make demo` and `make test`. Both create or refresh .venv.
# torch is installed first and pinned, so that no other package can replace it
# (an unpinned torch pulls gigabytes of CUDA wheels). Override: make demo TORCH=torch
# Any Python >= 3.11: the first of these that runs (override: make demo PYTHON=/path/to/python).
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for p in python3.11 python3.12 python3.13 python3.14 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { echo $$p; break; }; done)
endif
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv install install-dev demo test lint params clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "error: no Python >= 3.11 found (tried python3.11 ... python3.14, python3); install one or pass PYTHON=/path/to/python" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"

install: venv
	$(BIN)/pip install -q -e .

install-dev: venv
	$(BIN)/pip install -q -e ".[dev,ray]"

demo: install
	$(BIN)/scaleflow demo

# Lint and types first (seconds), then the tests.
test: install-dev
	$(BIN)/ruff check src tests
	$(BIN)/mypy
	$(BIN)/python -m pytest

params: install
	$(BIN)/scaleflow params

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
