# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast test-integration test-e2e setup setup-test setup-test-tools sample lint ui dev docs

run: setup sample  ## Set up, ingest the sample knowledge base, start the chat UI
	$(BIN)/hybrid ui

test: setup-test  ## Set up with test tools, lint, run every test tier (what CI runs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
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

setup-test: setup-test-tools
	scripts/test-services.sh

setup-test-tools:
	scripts/bootstrap.sh --test

sample: setup
	$(BIN)/hybrid ingest data/knowledge

lint: setup-test
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

ui: setup
	$(BIN)/hybrid ui

dev: setup
	$(BIN)/hybrid dev

docs: setup  ## Regenerate the README's CLI reference from --help
	$(BIN)/python scripts/cli_reference.py --write
