# Two entry points, both of which set up a local virtual environment first:
#   make run   - the default experiment (`hwsearch run`)
#   make test  - the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup run test bench lint

setup: $(VENV)/.installed

# torch is pinned to the CPU wheel first, so that the loose `torch>=2.3` in pyproject.toml is already
# satisfied and pip never pulls a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: setup
	$(BIN)/hwsearch run

test: setup
	$(BIN)/python -m pytest --durations=10

lint: setup
	$(BIN)/ruff check hwsearch tests benchmarks
