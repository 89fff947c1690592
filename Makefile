# Two commands for people: `make run` (the fleet, locally) and `make test` (everything).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

# The local fleet: Redis, worker, beat, Flower (and the sandbox when no API credentials are
# configured) under honcho; see scripts/run_local.py. RUN_ARGS=--sandbox forces the sandbox.
run: $(VENV)/.installed
	$(BIN)/python scripts/run_local.py $(RUN_ARGS)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .run .pytest_cache
