# Commands for people: `make run` (the fleet, locally), `make test` (everything) and
# `make test-fast` (lint and the tests that need no worker and no sandbox: under a minute).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast lint bench clean install lock floors

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The locked versions (requirements/dev.txt: the fleet, the sandbox, honcho, the test tools;
# requirements/build.txt: setuptools, the project's build requirement), hash-checked, then the
# project itself, editable, built with that setuptools (no build isolation: nothing unchecked).
$(VENV)/.installed: pyproject.toml requirements/dev.txt requirements/build.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements/dev.txt \
		-r requirements/build.txt
	$(BIN)/python -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

install: $(VENV)/.installed

# The local fleet: Redis, worker, beat, Flower (and the sandbox when no API credentials are
# configured) under honcho; see scripts/run_local.py. RUN_ARGS=--sandbox forces the sandbox.
run: $(VENV)/.installed
	$(BIN)/python scripts/run_local.py $(RUN_ARGS)

# The programs the tests need besides Python packages (prometheus, promtool, redis-server
# with TLS, openssl): from PATH, else Debian's packages unpacked into .run/tools without
# root (scripts/test_tools.py); where they cannot be had, their tests skip, saying so
# (under CI=true they fail instead).
test: $(VENV)/.installed
	$(BIN)/python scripts/test_tools.py
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The quick lane: no worker process, no sandbox server (tests/conftest.py marks the tests
# that use one `integration`), nothing marked slow; a test that hangs fails in 60 s.
test-fast: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not integration and not slow" --timeout=60 $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .

# Regenerate the locks from pyproject.toml with uv (a development tool only: the images and
# `make install` use pip). Existing pins are kept unless UPGRADE=1. dev.txt is resolved
# first and pins the other two, so the three never disagree on a version. build.txt locks
# pyproject's [build-system] requires. Then the base images' digests move to what their tags
# name today (scripts/pin_images.py: docker, or the registry; kept, with a note, offline).
UV_OPTIONS = --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml $(UV_OPTIONS)
BUILD_REQUIRES = $(BIN)/python -c 'import tomllib; \
	print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))'
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(UV_COMPILE) --extra test -o requirements/dev.txt
	$(UV_COMPILE) --extra sandbox -c requirements/dev.txt -o requirements/sandbox.txt
	$(UV_COMPILE) -c requirements/dev.txt -o requirements/fleet.txt
	$(BUILD_REQUIRES) | $(BIN)/uv pip compile - $(UV_OPTIONS) -o requirements/build.txt
	$(BIN)/python scripts/pin_images.py

# The floors of pyproject.toml, tested: every direct dependency at the lowest version it
# allows (uv's lowest-direct resolution) in .run/venv-floors, then the tests
# (PYTEST_ARGS='--deselect tests/fleet/test_install.py' skips the fresh-venv installs).
floors: | $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	rm -rf .run/venv-floors
	$(BIN)/uv venv --quiet --seed --python $(PYTHON) .run/venv-floors
	VIRTUAL_ENV=.run/venv-floors $(BIN)/uv pip install --quiet --resolution lowest-direct -e '.[test]'
	.run/venv-floors/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .run .pytest_cache
