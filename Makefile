# The two commands of the Quick start. Each sets up what it needs on first use:
# a virtual environment in .venv (Python 3.11), the Java artifacts in ~/.cache/tickflow.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: up down status test lint bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "tickflow needs Python 3.11 (set PYTHON=/path/to/python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

## The main job: the whole pipeline against the exchange simulator, with a live view (Ctrl-C stops it).
up: $(STAMP)
	$(VENV)/bin/tickflow up

down: $(STAMP)
	$(VENV)/bin/tickflow down

status: $(STAMP)
	$(VENV)/bin/tickflow infra status

## The whole test suite, against a real Kafka and registry it starts and stops itself.
test: $(STAMP)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(VENV)/bin/python bench/codec_bench.py && $(VENV)/bin/python bench/produce_bench.py
