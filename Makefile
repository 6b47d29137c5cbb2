# Set-up is part of every target: the first run creates .venv and installs the package.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.scdx-installed

.PHONY: install demo test test-fast lint format docs tutorials clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: 2.13.0 resolves to the local CPU build here and to the CUDA build on GPU hosts.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/scdx demo

# Everything, the slow end-to-end tests included (what CI runs).
test: $(STAMP) lint
	$(BIN)/python -m pytest

# The unit tests only (no shared-data training, tutorials, benchmarks, docs build or demo run).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tutorials
	$(BIN)/ruff format --check src tests benchmarks tutorials

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks tutorials
	$(BIN)/ruff format src tests benchmarks tutorials

# HTML documentation in docs/_build/html; warnings are errors.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

# Execute every tutorial script with the full settings and rewrite its stored notebook
# (jupytext, nbclient and ipykernel come with the docs extra).
tutorials: $(STAMP)
	$(BIN)/python tutorials/build.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache .ruff_cache docs/_build docs/generated docs/tutorials
