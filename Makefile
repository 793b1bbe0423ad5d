# Two entry points: `make train` runs the default job on the embedded data, `make test`
# runs the checks. Both create the virtual environment .venv on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test lint

# The runtime is its own distribution (runtime/), installed editable beside bnn-core; its
# install builds the C kernels in place, so a change to them reinstalls.
$(STAMP): pyproject.toml runtime/pyproject.toml runtime/setup.py \
		$(wildcard runtime/bnn_runtime/*.c runtime/bnn_runtime/*.h runtime/bnn_runtime/include/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ./runtime -e '.[test,onnx,bench]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/bnn train recipes/default.yaml

# lint-imports checks the layering contracts written in .importlinter.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest
