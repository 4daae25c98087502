# The two commands a newcomer needs: `make run` and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test setup setup-test sample lint lint-only ui dev docs

run: setup sample  ## Set up, ingest the sample knowledge base, start the chat UI
	$(BIN)/hybrid ui

test: setup-test  ## Set up with test tools, lint, run the whole test suite
	$(MAKE) --no-print-directory lint-only
	$(BIN)/python -m pytest

setup:
	scripts/bootstrap.sh

setup-test:
	scripts/bootstrap.sh --test
	scripts/test-services.sh

sample: setup
	$(BIN)/hybrid ingest data/knowledge

lint: setup-test  ## ruff, and the import layers (import-linter, contracts in pyproject.toml)
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
