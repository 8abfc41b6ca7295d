# Two entry points, both of which set up a local virtual environment first:
#   make run   - the default experiment (`hwsearch run`)
#   make test  - the whole test suite but the two-node cluster test
#   make test-cluster - the two-node Ray cluster test (tests/search/engine/test_cluster.py, ~5 min): two
#                       `ray start` nodes on loopback addresses, lost node, driver killed and resumed
# Both install exactly the versions in constraints.txt, the set the suite last passed with.
# `make lock` refreshes that lock to the newest versions pyproject.toml allows and runs the suite on them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCK   := constraints.txt
# The CPU wheel, installed first so that nothing pulls a multi-GB CUDA build of torch.
TORCH  ?= torch==2.13.0

.PHONY: setup run test test-cluster bench lint lock

setup: $(VENV)/.installed

# pip and setuptools come from the lock too, and the package is built without build isolation, so that
# a new release of the build backend cannot change what gets installed either.
$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c $(LOCK) pip setuptools
	$(BIN)/pip install -q -c $(LOCK) $(TORCH)
	$(BIN)/pip install -q -c $(LOCK) --no-build-isolation -e '.[dev]'
	touch $@

run: setup
	$(BIN)/hwsearch run

# The cluster test takes minutes (two Ray nodes, four searches), so it has its own target; CI runs both.
test: setup
	$(BIN)/python -m pytest -m "not cluster" --durations=10

test-cluster: setup
	$(BIN)/python -m pytest -m cluster --durations=10

lint: setup
	$(BIN)/ruff check hwsearch tests benchmarks

# A new lock: a fresh environment at the newest allowed versions, the whole suite on it, and only if it
# passes is constraints.txt replaced (review `git diff constraints.txt` and commit it).
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q --upgrade pip setuptools
	.venv-lock/bin/pip install -q $(TORCH)
	.venv-lock/bin/pip install -q --no-build-isolation -e '.[dev]'
	.venv-lock/bin/python -m pytest
	{ sed -n '/^#/p' $(LOCK); .venv-lock/bin/pip freeze --all --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*$$/\1/'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock
