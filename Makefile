# lkm: `make demo` runs the main job end to end; `make test` runs the whole suite.
# Both do every set-up step on a fresh Debian 12 machine (as root).

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: all setup system venv fixtures demo test lint check bench clean

all: demo

system:
	sh scripts/install-system

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

fixtures: system
	$(PY) scripts/test-fixtures.py

setup: system venv fixtures

demo: setup
	bash scripts/demo.sh

lint: venv
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build src/*.egg-info
