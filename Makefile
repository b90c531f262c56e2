# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install
# the project with the training and test extras first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ugss-installed
DEMO_OUT ?= demo-out

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m ugss.demo --out $(DEMO_OUT)

# Two pytest-xdist workers on the 2 CI cores; an idle one takes tests from the other's queue
# (worksteal: 152-155 s of tests on 2 cores, 157-167 s with a file per worker, 281 s on one).
# tests/conftest.py gives each worker its share of the cores' OpenMP threads.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

# Unit tests only (under a minute on 2 cores): no other program, nothing slow, no GPU.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not integration and not slow and not gpu"

lint: $(STAMP)
	$(BIN)/ruff check ugss tests benchmarks scripts
	$(BIN)/ruff format --check ugss tests benchmarks scripts

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
