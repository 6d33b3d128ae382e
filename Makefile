# The two commands of the README. Both work on a fresh Debian with Python 3.11.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# TensorFlow comes with the project; `make run EXTRAS=gpu` adds the CUDA libraries for an
# NVIDIA GPU (`EXTRAS=gpu,postgres` for several).
EXTRAS ?=
SPEC    = .$(if $(EXTRAS),[$(EXTRAS)])
STAMP   = $(VENV)/.installed$(if $(EXTRAS),-$(subst $(comma),-,$(EXTRAS)))
comma  := ,

.PHONY: run test lint typecheck clean venv wheel-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e "$(SPEC)"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,postgres]"
	touch $@

venv: $(STAMP)

## make run: install, then start the daemon in the foreground on ./config.toml
run: $(STAMP)
	mkdir -p var/inbox var/outbox
	@echo "cervixbatch: drop photos or DICOM files into $(CURDIR)/var/inbox/"
	@echo "cervixbatch: results appear in $(CURDIR)/var/outbox/ (see: $(BIN)/cervixbatch report)"
	$(BIN)/cervixbatch --config config.toml run

## make test: install with the test extras, then lint, type-check and run the whole suite
test: $(VENV)/.installed-test lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

LINTED = cervixbatch daemon tests benchmarks scripts migrations
lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

## make wheel-check: build the wheel, install it with no extras into a fresh venv, and
## process a synthetic photo with it (CI runs it after `make test`)
wheel-check: $(VENV)/.installed-test
	PYTHON=$(BIN)/python .ci/wheel_check.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
