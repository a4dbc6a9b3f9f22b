# shop_recs — the two commands in the README, and their building blocks.
#
#   make test   install (venv, requirements, redis-server/postgresql/chromium when missing,
#               axe-core from npm into var/npm when npm is there), start private Redis +
#               PostgreSQL, run the suite on SQLite and on PostgreSQL
#   make demo   install the venv only (no system packages: SQLite, a filesystem broker), migrate,
#               import UCI Online Retail, start a Celery worker and the site, train a first model
#               (DEMO_ARGS="--smoke" starts, checks the pages answer, and stops)
#
# CI runs .ci/run, which runs `make test` and nothing else.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV_PY := .venv/bin/python
export PYTHON

AXE_CORE := axe-core@4.14.1

.PHONY: help install venv system-packages browser-tools test test-sqlite demo clean

help:
	@echo "make test   - install everything, run the test suite on SQLite and PostgreSQL"
	@echo "make demo   - venv, load UCI Online Retail, run worker + site on 127.0.0.1:8000, train"
	@echo "make clean  - remove the demo database, broker folders and caches (keeps .venv)"

venv:
	@bash scripts/bootstrap.sh

system-packages:
	@bash scripts/services.sh install

# axe-core (npm) for the accessibility test in tests/test_browser_widget.py; without npm or
# the registry that test is skipped with its reason, nothing else needs it.
browser-tools:
	@if [ -f var/npm/node_modules/axe-core/axe.min.js ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
		npm install --prefix var/npm --no-audit --no-fund --no-save $(AXE_CORE) >/dev/null \
			|| echo "[make] could not install $(AXE_CORE); the accessibility test will be skipped"; \
	else echo "[make] npm not found; the accessibility test will be skipped"; fi

install: venv system-packages browser-tools

test: install
	@bash scripts/services.sh run -- bash scripts/run_tests.sh

# Quick local loop without services: SQLite only, Redis/PostgreSQL tests skip or fail as they decide.
test-sqlite: venv
	env -u DATABASE_URL $(VENV_PY) -m pytest $(PYTEST_ARGS)

demo: venv
	@$(VENV_PY) scripts/demo.py $(DEMO_ARGS)

clean:
	rm -rf db.sqlite3 var/ .pytest_cache
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +
