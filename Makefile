# Computeflow: `make run` brings the marketplace up, `make test` runs every test.
# Both create .venv/ and install what they need; with DATABASE_URL / REDIS_URL unset they start
# embedded PostgreSQL and Redis (data under .local/).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run run-production smoke test lint format install install-dev browser bench lock clean messages messages-compiled

# PORT=8001 make run serves on another port (default 8000).
run: $(VENV)/.runtime node_modules/.installed messages-compiled
	$(PY) -m config.localservices run

# The same services with docker-compose's web process: gunicorn, DJANGO_DEBUG off, collected static files.
run-production: $(VENV)/.runtime node_modules/.installed messages-compiled
	$(PY) -m config.localservices run --production

# Run smoke test: a fresh clone of HEAD with a runtime-only venv must come up (`make run`, then
# `run-production`), stay up 30 s with a live worker and beat, and leave no process behind on Ctrl-C.
smoke:
	$(PYTHON) scripts/smoke_run.py

test: $(VENV)/.dev node_modules/.installed browser messages-compiled
	@scripts/ensure-gettext.sh
	$(PY) -m ruff check .
	$(PY) -m config.localservices exec -- $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(PY) -m ruff check .

format: $(VENV)/.dev
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

install: $(VENV)/.runtime node_modules/.installed messages-compiled
install-dev: $(VENV)/.dev node_modules/.installed

browser:
	@scripts/ensure-chromium.sh

# The Chinese catalog: `make messages` extracts every marked string into locale/zh_Hans/LC_MESSAGES/*.po
# (xgettext, from Debian's gettext package); translate the new entries there, using locale/GLOSSARY.md.
# The .mo files are compiled from the .po files by Babel (pure Python) and are not committed.
messages: $(VENV)/.dev
	@scripts/ensure-gettext.sh
	$(PY) -m config.i18n extract

messages-compiled: $(VENV)/.runtime
	@$(PY) -m config.i18n

bench: $(VENV)/.dev node_modules/.installed
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

# Browser libraries (Chart.js) from npm, exactly as package-lock.json pins them; served as static files
# from node_modules/ (config/settings.py STATICFILES_DIRS), never committed.
node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "Computeflow needs npm (Node.js 18 or newer) for the charts: apt-get install npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Recompile the pinned locks from the *.in files (every transitive dependency pinned). Edit the .in files,
# then run this; never edit requirements*.txt by hand.
lock: $(VENV)/.dev
	$(VENV)/bin/uv pip compile requirements.in --universal --python-version 3.11 --quiet -o requirements.txt
	$(VENV)/bin/uv pip compile requirements-local.in -c requirements.txt --universal --python-version 3.11 --quiet -o requirements-local.txt
	$(VENV)/bin/uv pip compile requirements-dev.in -c requirements.txt -c requirements-local.txt --universal --python-version 3.11 --quiet -o requirements-dev.txt

clean:
	rm -rf $(VENV) .local .pytest_cache .ruff_cache node_modules
