# stepper: `make run` starts a local fleet and shows one result of each kind; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the project needs (the tests start their own redis-server).
SYSTEM_PACKAGES := redis-server tesseract-ocr espeak-ng
# Debian packages only the tests need: ffmpeg encodes the screen recordings they give the steps detector;
# chromium opens the how-to guide and the gateway's /docs headless. rabbitmq-server runs the broker matrix (the
# tests start a private node; Sentinel runs as redis-server --sentinel). openssl makes the certificate of the
# HTTPS vendor the TLS tests call.
TEST_PACKAGES := ffmpeg chromium rabbitmq-server openssl
# Tesseract languages (its codes: eng, deu, chi_sim, ...) installed as tesseract-ocr-<code> for OCR's `lang`;
# English and the major European languages unless told otherwise: make run OCR_LANGUAGES="eng deu jpn".
OCR_LANGUAGES ?= eng deu fra ita spa por

.PHONY: run test bench chaos lint typecheck check system-deps venv clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing stepper with its dev tools"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -e '.[dev]'
	@touch $@

venv: $(STAMP)

system-deps:
	@OCR_LANGUAGES="$(OCR_LANGUAGES)" scripts/system-deps.sh $(SYSTEM_PACKAGES) $(TEST_PACKAGES)

run: venv system-deps
	@scripts/run-local.sh

test: venv system-deps
	$(BIN)/pytest

# Speed as ratios against baselines measured in the same run; never a pass/fail test.
bench: venv system-deps
	$(BIN)/python -m bench

# Many trials of the broker fault scenarios (Redis restart, crash, connections reset) on both pools: tasks
# lost, duplicated, workers restarted or stalled. CHAOS_TRIALS, CHAOS_TASKS, CHAOS_FAULTS change the size.
chaos: venv system-deps
	$(BIN)/python -m bench.chaos

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/architecture/import_graph.py scripts/architecture/layout.json

typecheck: venv
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache .hypothesis
