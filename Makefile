# Bellwether: `make demo` to try it, `make test` to check it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/test
PYTEST := $(BIN)/python -m pytest

.PHONY: demo serve test test-sqlite test-postgres install install-test bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed  ## create .venv and install Bellwether

install-test: $(VENV)/.installed-test  ## install Bellwether with the test tools

demo: install  ## migrate, load the demo newsroom, print the editor login, serve on :8000
	$(BIN)/bellwether demo

serve: install  ## serve the existing database on :8000
	$(BIN)/bellwether serve

test: install-test  ## the whole suite on SQLite, then on PostgreSQL ($(PG_TEST_URL))
	$(PYTEST) -q
	DATABASE_URL=$(PG_TEST_URL) $(PYTEST) -q

test-sqlite: install-test  ## the whole suite on SQLite only
	$(PYTEST) -q

test-postgres: install-test  ## the whole suite on PostgreSQL only
	DATABASE_URL=$(PG_TEST_URL) $(PYTEST) -q

bench: install-test  ## page benchmark (see docs/performance.md)
	$(BIN)/python benchmarks/pages.py

clean:  ## remove the virtualenv and the local database
	rm -rf $(VENV) var
