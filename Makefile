# Computeflow: `make run` brings the marketplace up, `make test` runs every test.
# Both create .venv/ and install what they need; with DATABASE_URL / REDIS_URL unset they start
# embedded PostgreSQL and Redis (data under .local/).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test lint format install install-dev browser bench clean

run: $(VENV)/.runtime
	$(PY) -m config.localservices run

test: $(VENV)/.dev browser
	$(PY) -m ruff check .
	$(PY) -m config.localservices exec -- $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(PY) -m ruff check .

format: $(VENV)/.dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

browser:
	@scripts/ensure-chromium.sh

bench: $(VENV)/.dev
	$(PY) -m config.localservices exec -- $(PY) -m bench $(BENCH_ARGS)

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Computeflow needs Python 3.11 or newer (set PYTHON=python3.11)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "Could not create .venv: on Debian/Ubuntu install the venv module first (apt-get install python3-venv)"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt requirements-local.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-local.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache
