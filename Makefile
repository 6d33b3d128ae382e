# The two commands of the README. Both work on a fresh Debian with Python 3.11.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# CPU TensorFlow by default; `make run EXTRAS=gpu` on a machine with an NVIDIA GPU.
EXTRAS ?= cpu

.PHONY: run test lint typecheck clean venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[cpu,test,postgres]"
	touch $@

venv: $(VENV)/.installed-$(EXTRAS)

## make run: install, then start the daemon in the foreground on ./config.toml
run: $(VENV)/.installed-$(EXTRAS)
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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
