# Each target creates .venv and installs into it when needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 5000

.PHONY: install demo test test-sqlite test-postgres bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Prepare SQLite under ./instance, seed a demo establishment and serve it on http://127.0.0.1:$(PORT)/
demo: $(STAMP)
	HOSPICONNECT_ENV=demo HOSPICONNECT_INSTANCE_PATH=$(CURDIR)/instance $(BIN)/hospiconnect demo --port $(PORT)

## Run the whole suite on SQLite, then on PostgreSQL when HOSPICONNECT_TEST_DATABASE_URL is set.
test: $(STAMP) test-sqlite test-postgres

test-sqlite: $(STAMP)
	HOSPICONNECT_TEST_DATABASE_URL= $(BIN)/python -m pytest -q -p no:cacheprovider

test-postgres: $(STAMP)
	@if [ -n "$$HOSPICONNECT_TEST_DATABASE_URL" ]; then \
	  echo "== PostgreSQL: $$HOSPICONNECT_TEST_DATABASE_URL"; \
	  $(BIN)/python -m pytest -q -p no:cacheprovider; \
	else echo "HOSPICONNECT_TEST_DATABASE_URL is not set: PostgreSQL run skipped"; fi

## Benchmarks (results are recorded in README.md)
bench: $(STAMP)
	$(BIN)/python benchmarks/directory.py

lint: $(STAMP)
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) instance .pytest_cache
