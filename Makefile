# Two entry points: `make train` runs the default job on the embedded data, `make test`
# runs the checks. Both create the virtual environment .venv on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test lint

$(STAMP): pyproject.toml setup.py $(wildcard bnn/runtime/*.c bnn/runtime/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,onnx]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/bnn train recipes/default.yaml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest
