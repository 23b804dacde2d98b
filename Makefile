# ltgcast — the two commands a fresh machine needs are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
DEMO_DIR ?= var/demo
PYTEST_ARGS ?=
VIEWER := serve/viewer
VIEWER_STAMP := $(VIEWER)/vendor-dist/.built-$(shell cat $(VIEWER)/package-lock.json $(VIEWER)/build.mjs | cksum | cut -d' ' -f1)

.PHONY: install lock run demo test lint format clean services-up services-down default-model

install: $(STAMP) $(VIEWER_STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"ltgcast needs Python 3.11, found {sys.version.split()[0]} at {sys.executable}"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,serve,kafka,dev]'
	rm -f $(VENV)/.installed-*
	touch $@

## Re-pin constraints.txt to the newest releases pyproject.toml allows (in a scratch venv), then run `make test`
## before committing it: this is the only way a new upstream version reaches CI.
lock:
	rm -rf var/lock-venv
	$(PYTHON) -m venv var/lock-venv
	var/lock-venv/bin/python -m pip install --quiet --upgrade pip
	var/lock-venv/bin/python -m pip install --quiet '.[train,serve,kafka,dev]'
	{ sed -n '1,3p' constraints.txt; var/lock-venv/bin/pip freeze --exclude-editable | grep -v '^ltgcast' | LC_ALL=C sort -f; } > constraints.new
	mv constraints.new constraints.txt
	rm -rf var/lock-venv

## The viewer's map, chart and basemap packages from npm, pinned by serve/viewer/package-lock.json, copied into
## serve/viewer/vendor-dist/ (served at /static/vendor/); redone when the lockfile or the build script changes.
$(VIEWER_STAMP): $(VIEWER)/package-lock.json $(VIEWER)/build.mjs
	@command -v npm > /dev/null || { echo "make install: npm (Node.js 18+) is needed for the viewer's map library; install nodejs and npm" >&2; exit 1; }
	npm ci --prefix $(VIEWER) --no-audit --no-fund --loglevel=error
	node $(VIEWER)/build.mjs
	touch $@

## The main job: the embedded service on NOAA's GOES-19 bucket, CONUS (viewer and API on http://127.0.0.1:8080/).
## Offline it says that the network is unreachable and exits 1; `make demo` is the offline twin.
run: install
	$(BIN)/ltgcast run --source s3://noaa-goes19 --sectors C

## The synthetic scenario, offline: 30 minutes of a mesoscale sector, a summary of the last frames, the last
## frame scored once into var/demo/grid.nc (with the frame 15 min before it, for the trend), then the whole service (`ltgcast run`) on the same scenario
## replayed 30 times faster than real time: grids in var/demo/grids, viewer on http://127.0.0.1:8080/
## (Ctrl-C stops it; DEMO_RUN_ARGS=--exit-when-idle stops it once the replay is scored). Each demo starts fresh:
## the last one's checkpoint, quarantine and grids are removed first (a kept checkpoint would replay nothing).
DEMO_RUN_ARGS ?=
demo: install
	rm -rf $(DEMO_DIR)/run $(DEMO_DIR)/grids
	$(BIN)/ltgcast simulate --out $(DEMO_DIR) --sector M1 --start 2024-06-15T18:00Z --minutes 30 --seed 1
	$(BIN)/ltgcast inspect $(DEMO_DIR)/OR_ABI-*.nc | tail -n 3
	$(BIN)/ltgcast nowcast --ir "$$(ls $(DEMO_DIR)/OR_ABI-*.nc | tail -n 1)" --glm $(DEMO_DIR)/OR_GLM-*.nc \
		--previous "$$(ls $(DEMO_DIR)/OR_ABI-*.nc | tail -n 16 | head -n 1)" --out $(DEMO_DIR)/grid.nc
	$(BIN)/ltgcast run --source 'sim:?sector=M1&start=2024-06-15T18:00Z&minutes=30&seed=1&speed=30' \
		--sectors M1 --max-age-minutes 0 --glm-deadline 5 --store $(DEMO_DIR)/grids --state $(DEMO_DIR)/run \
		$(DEMO_RUN_ARGS)

## Re-create the default model from the simulator (needs no network; its steps took 54 min on 2 cores, see README):
## 12 simulated days for train/validation/test, 5 more held out (storm lead times on 2024-07-25; the comparison
## with the old default and the baselines on all 5, resampling days), and 5 days of normal weather on which the per-feature drift
## thresholds are calibrated. REPOSITORY=models/repository adds it as the next version of the committed
## repository (then `ltgcast models promote`); the default writes a repository of its own under MODEL_WORK.
MODEL_WORK ?= var/default-model
REPOSITORY ?= $(MODEL_WORK)/repository
FEATURE_SET ?= ir-ltg-trend/2
OLD_DEFAULT ?= models/repository/lightning/1
default-model: install
	for d in 10 11 12 13 14 15 16 17 18 19 20 21; do \
		$(BIN)/ltgcast simulate --out $(MODEL_WORK)/archive/$$d --sector M1 --start 2024-07-$${d}T17:00Z --minutes 90 --seed $$d > /dev/null; \
	done
	for d in 22 23 24 25 26; do \
		$(BIN)/ltgcast simulate --out $(MODEL_WORK)/heldout/$$d --sector M1 --start 2024-07-$${d}T17:00Z --minutes 150 --seed $$d > /dev/null; \
	done
	$(BIN)/ltgcast dataset build --archive dir:$(MODEL_WORK)/archive --start 2024-07-10T00:00Z --end 2024-07-22T00:00Z \
		--out $(MODEL_WORK)/data --feature-set $(FEATURE_SET) --max-positives 200 --min-negatives 60 --shards 2 --every-minutes 5
	$(BIN)/ltgcast train --data $(MODEL_WORK)/data --out $(MODEL_WORK)/combined --arch combined --width 8 \
		--epochs $(EPOCHS) --batch 128 --patience 2
	$(BIN)/ltgcast evaluate --data $(MODEL_WORK)/data --run $(MODEL_WORK)/combined --out $(MODEL_WORK)/evaluation \
		--lead-archive dir:$(MODEL_WORK)/heldout --lead-start 2024-07-25T17:15Z --lead-end 2024-07-25T19:30Z
	$(BIN)/ltgcast models add --model-base $(REPOSITORY) --run $(MODEL_WORK)/combined \
		--evaluation $(MODEL_WORK)/evaluation --notes "$(DEFAULT_MODEL_NOTES)"
	for d in 27 28 29 30 31; do \
		$(BIN)/ltgcast simulate --out $(MODEL_WORK)/drift-normal/$$d --sector M1 --start 2024-07-$${d}T17:00Z --minutes 90 --seed $$d > /dev/null; \
	done
	$(BIN)/ltgcast models calibrate-drift --model-base $(REPOSITORY) --archive dir:$(MODEL_WORK)/drift-normal \
		--start 2024-07-27T00:00Z --end 2024-08-01T00:00Z --margin 1.3 --cache $(MODEL_WORK)/.cache
	$(BIN)/ltgcast models compare --archive dir:$(MODEL_WORK)/heldout --start 2024-07-22T00:00Z --end 2024-07-27T00:00Z \
		--saved-model old=$(OLD_DEFAULT) --saved-model new=$(REPOSITORY)/lightning/$$(ls $(REPOSITORY)/lightning | grep -E '^[0-9]+$$' | sort -n | tail -n 1) \
		--logistic-data $(MODEL_WORK)/data --out $(MODEL_WORK)/comparison
EPOCHS ?= 5

DEFAULT_MODEL_NOTES := Trained on SIMULATED storms (ltgcast simulate, 12 days of a mesoscale sector), not on \
GOES observations. It exists so that make run and make demo work offline; its skill on real weather is unknown. \
For real skill, build a dataset from the NOAA archive (ltgcast dataset build --archive s3://noaa-goes19) and run ltgcast train.

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
	deploy/local/services.sh tools
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
