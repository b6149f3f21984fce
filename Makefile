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

## Benchmarks (results are recorded in README.md); BENCH_DATABASE_URL is emptied by them. The trajectory
## benchmark creates and empties its own database next to it (hc_bench_trajectory; --smoke: a quick run).
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/hospiconnect_bench
bench: $(STAMP)
	-psql -q -d "$(BENCH_DATABASE_URL:/hospiconnect_bench=/postgres)" -c "CREATE DATABASE hospiconnect_bench" 2>/dev/null
	$(BIN)/python benchmarks/directory.py
	$(BIN)/python benchmarks/directory.py --database-url "$(BENCH_DATABASE_URL)"
	rm -rf $(CURDIR)/.bench-instance
	HOSPICONNECT_DATABASE_URL="$(BENCH_DATABASE_URL)" HOSPICONNECT_INSTANCE_PATH=$(CURDIR)/.bench-instance \
	  sh -c '$(BIN)/hospiconnect init >/dev/null && \
	  $(BIN)/python benchmarks/authenticators.py && $(BIN)/python benchmarks/webauthn_bench.py 1000'
	rm -rf $(CURDIR)/.bench-instance
	$(BIN)/python benchmarks/idp.py --database-url "$(BENCH_DATABASE_URL)"
	npm ci --prefix benchmarks/peer --no-audit --no-fund
	$(BIN)/python benchmarks/side_by_side.py --database-url "$(BENCH_DATABASE_URL)"
	$(BIN)/python benchmarks/trajectory.py --database-url "$(BENCH_DATABASE_URL:/hospiconnect_bench=/hc_bench_trajectory)"

lint: $(STAMP)
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) instance .pytest_cache
