# shop_recs — the two commands in the README, and their building blocks.
#
#   make test   install (venv, requirements, redis-server/postgresql/chromium when missing),
#               start private Redis + PostgreSQL, run the suite on SQLite and on PostgreSQL
#   make demo   install, migrate, import UCI Online Retail, start a Celery worker and the site
#               (DEMO_ARGS="--smoke" starts, checks the pages answer, and stops)
#
# CI runs .ci/run, which runs `make test` and nothing else.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV_PY := .venv/bin/python
export PYTHON

.PHONY: help install venv system-packages test test-sqlite demo clean

help:
	@echo "make test   - install everything, run the test suite on SQLite and PostgreSQL"
	@echo "make demo   - install, load UCI Online Retail, run worker + site on 127.0.0.1:8000"
	@echo "make clean  - remove the demo database, broker folders and caches (keeps .venv)"

venv:
	@bash scripts/bootstrap.sh

system-packages:
	@bash scripts/services.sh install

install: venv system-packages

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
