# ltgcast — the two commands a fresh machine needs are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
DEMO_DIR ?= var/demo
PYTEST_ARGS ?=

.PHONY: install run demo test lint format clean services-up services-down

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"ltgcast needs Python 3.11, found {sys.version.split()[0]} at {sys.executable}"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,serve,kafka,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

## The main job: the embedded service with its defaults (prints its plan until the stages exist).
run: install
	$(BIN)/ltgcast run

## The synthetic scenario, offline: 30 minutes of a mesoscale sector, a summary of the last frames,
## then the ingest daemon announcing every file of the same scenario once (in-process bus).
demo: install
	$(BIN)/ltgcast simulate --out $(DEMO_DIR) --sector M1 --start 2024-06-15T18:00Z --minutes 30 --seed 1
	$(BIN)/ltgcast inspect $(DEMO_DIR)/OR_ABI-*.nc | tail -n 3
	$(BIN)/ltgcast ingest --source 'sim:?sector=M1&start=2024-06-15T18:00Z&minutes=30&seed=1' \
		--state $(DEMO_DIR)/state --once

## Kafka, Redis and Prometheus on loopback (idempotent; addresses from LTGCAST_KAFKA/REDIS/PROMETHEUS).
services-up:
	deploy/local/services.sh up

services-down:
	deploy/local/services.sh down

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Installs, checks, starts the local services and runs the whole suite (every marker; nothing is deselected).
## The services stay up for the next run; `make services-down` stops them.
test: install lint services-up
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
