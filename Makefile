# make demo: set up .venv if missing, then train the MLP demo.
# make test: set up .venv if missing, then lint and run the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,demo,plot]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo_mlp.py

lint: $(STAMP)
	$(BIN)/ruff check flowc tests scripts
	$(BIN)/ruff format --check flowc tests scripts

test: lint
	$(BIN)/python -m pytest -q -n 2 tests

format: $(STAMP)
	$(BIN)/ruff format flowc tests scripts
	$(BIN)/ruff check --fix flowc tests scripts

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
