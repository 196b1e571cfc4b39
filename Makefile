# Two set-up commands: `make demo` and `make test`. Both create or refresh .venv.
# torch is installed first and pinned, so that no other package can replace it
# (an unpinned torch pulls gigabytes of CUDA wheels). Override: make demo TORCH=torch
PYTHON ?= python3.11
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv install install-dev demo test params clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

venv: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH)"

install: venv
	$(BIN)/pip install -q -e .

install-dev: venv
	$(BIN)/pip install -q -e ".[dev]"

demo: install
	$(BIN)/scaleflow demo

test: install-dev
	$(BIN)/python -m pytest

params: install
	$(BIN)/scaleflow params

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
