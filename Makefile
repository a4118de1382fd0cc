# The single source of truth for setting up, testing, linting, benchmarking and running ParkGrid.
SHELL := /bin/bash
BIN := .venv/bin
export PARKGRID_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/parkgrid

.PHONY: setup demo test test-fast lint typecheck loadtest bench bench-search bench-booking bench-gates bench-live profile-gates bench-controllers bench-exports bench-ocpp clean-testdbs fuzz

setup:            ## install everything, start services that are down, migrate (idempotent)
	@bash scripts/setup.sh

demo: setup       ## seed a demo city (if empty) and run API + worker + beat in the foreground
	@bash scripts/demo.sh

test: setup       ## lint, type-check and run the whole test suite against the real services
	@$(MAKE) --no-print-directory lint typecheck
	$(BIN)/python -m pytest tests -q -p no:randomly --durations=15

test-fast: setup  ## the tests only, stop at the first failure
	$(BIN)/python -m pytest tests -q -x

fuzz: setup       ## Schemathesis, longer than make test's run: every phase (stateful too), 100 examples per operation
	PARKGRID_FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100} PARKGRID_FUZZ_SEED=$${FUZZ_SEED:-20} \
	PARKGRID_FUZZ_PHASES=examples,coverage,fuzzing,stateful PARKGRID_FUZZ_TIMEOUT=3600 \
	$(BIN)/python -m pytest tests/api/test_fuzz_schemathesis.py -q -p no:randomly -o timeout=3700 -s

lint:
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache --no-logo

typecheck:
	$(BIN)/mypy api core cli geo booking pricing controllers analytics

bench: setup      ## benchmarks with same-run baselines (not part of make test)
	$(BIN)/python -m loadtests.run_all

bench-search: setup   ## search vs /healthz and raw SQL, knn vs the st_dwithin and h3 baselines
	$(BIN)/python -m loadtests.run_all bench_search

bench-booking: setup  ## holds/s with Redis, without it, on one hot lot; then the reconciler rebuild time
	$(BIN)/python -m loadtests.run_all bench_booking bench_reconcile

bench-gates: setup    ## gate decisions p50/p99 at a fixed rate beside /healthz
	$(BIN)/python -m loadtests.bench_gates

bench-live: setup     ## 200 SSE clients on one lot: gate event to every client, beside gate latency and /healthz
	$(BIN)/python -m loadtests.bench_live

profile-gates: setup  ## CPU ms per gate decision by kind, in process (bench_gates' mix), and a cProfile top list
	$(BIN)/python -m loadtests.profile_gates

loadtest: setup   ## Locust journeys (driver, partner, sensors, operator) headless for 60 s beside /healthz
	$(BIN)/python -m loadtests.loadtest

bench-controllers: setup  ## sensor events/s over HTTP and MQTT; edge agent local decision latency
	$(BIN)/python -m loadtests.bench_sensors
	$(BIN)/python -m loadtests.bench_edge

bench-exports: setup  ## planner exports: rows/s and the writer's peak RSS, CSV and GeoParquet, 1,000 lots x 90 days
	$(BIN)/python -m loadtests.bench_exports

bench-ocpp: setup   ## 1,000 OCPP chargers on one worker: memory, CPU, StatusNotification -> ev_chargers lag
	$(BIN)/python -m loadtests.bench_ocpp

clean-testdbs:    ## drop databases left behind by interrupted test runs
	@psql -h 127.0.0.1 -U postgres -tAc "SELECT datname FROM pg_database WHERE datname LIKE 't\_%' OR datname LIKE 'pgtpl\_%'" \
	  | while read -r db; do psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$$db\" WITH (FORCE)"; done
