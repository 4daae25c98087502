# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast test-integration test-e2e setup setup-test setup-test-tools sample lint lint-only ui dev docs

run: setup sample  ## Set up, ingest the sample knowledge base, start the chat UI
	$(BIN)/hybrid ui

test: setup-test  ## Set up with test tools, lint, run every test tier (what CI runs)
	$(MAKE) --no-print-directory lint-only
	$(BIN)/python -m pytest $(ARGS)

# One tier each (docs/testing.md). ARGS passes pytest options: make test-fast ARGS="-k router -x"
test-fast: setup-test-tools  ## The unit tier: fakes only, for the edit-test loop (well under a minute)
	$(BIN)/python -m pytest -m unit $(ARGS)

test-integration: setup-test-tools  ## The integration tier: SQLite, embedded Chroma, MiniLM
	$(BIN)/python -m pytest -m integration $(ARGS)

test-e2e: setup-test  ## The e2e tier: real models, PostgreSQL, servers, Chromium
	$(BIN)/python -m pytest -m e2e $(ARGS)

setup:
	scripts/bootstrap.sh

setup-test:
	scripts/bootstrap.sh --test
	scripts/test-services.sh

setup-test-tools:
	scripts/bootstrap.sh --test

sample: setup
	$(BIN)/hybrid ingest data/knowledge

lint: setup-test-tools  ## ruff, and the import layers (import-linter, contracts in pyproject.toml)
	$(MAKE) --no-print-directory lint-only

lint-only:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

ui: setup
	$(BIN)/hybrid ui

dev: setup
	$(BIN)/hybrid dev

docs: setup  ## Regenerate docs/cli.md (from --help) and docs/configuration.md (from Settings)
	$(BIN)/python scripts/cli_reference.py --write
