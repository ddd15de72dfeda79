# make serve: set up and run the gateway on the embedded default (SQLite, local files, demo models).
# make test:  set up and run every check: lint, types, unit, integration and end-to-end tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEV    := $(VENV)/.installed-dev-stamp

.PHONY: serve test lint typecheck unit bench fmt clean

# What `make serve` needs: the gateway alone (no torch, no test tools).
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "gengate needs Python >= 3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $(STAMP)

# What the checks need: the test tools and the optional diffusers extra. torch goes first, pinned
# to the CPU build this machine keeps on disk; left to the extra, pip may pick a multi-GB CUDA build.
$(DEV): $(STAMP)
	$(BIN)/python -m pip install --quiet 'torch==2.13.0'
	$(BIN)/python -m pip install --quiet -e '.[dev,diffusers]'
	@touch $(DEV)

serve: $(STAMP)
	$(BIN)/gengate serve

lint: $(DEV)
	$(BIN)/ruff check src tests bench examples clients
	$(BIN)/ruff format --check src tests bench examples clients

typecheck: $(DEV)
	$(BIN)/mypy

test: lint typecheck
	./scripts/ensure-services.sh
	./scripts/ensure-postgres.sh
	./scripts/ensure-chromium.sh
	./scripts/ensure-promtool.sh
	$(BIN)/pytest

bench: $(DEV)
	$(BIN)/python -m bench.run --rounds 3
	$(BIN)/python -m bench.longpoll
	./scripts/ensure-postgres.sh
	$(BIN)/python -m bench.drain
	$(BIN)/python -m bench.drain --pg
	$(BIN)/python -m bench.drain --pg --layout split --no-peer
	$(BIN)/python -m bench.scale
	$(BIN)/python -m bench.scale --pg

fmt: $(DEV)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
