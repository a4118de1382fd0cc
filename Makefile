# The single source of truth for setting up, testing, linting, benchmarking and running ParkGrid.
SHELL := /bin/bash
BIN := .venv/bin
export PARKGRID_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/parkgrid

.PHONY: setup demo test test-fast lint typecheck bench bench-search bench-booking bench-gates profile-gates bench-controllers clean-testdbs

setup:            ## install everything, start services that are down, migrate (idempotent)
	@bash scripts/setup.sh

demo: setup       ## seed a demo city (if empty) and run API + worker + beat in the foreground
	@bash scripts/demo.sh

test: setup       ## lint, type-check and run the whole test suite against the real services
	@$(MAKE) --no-print-directory lint typecheck
	$(BIN)/python -m pytest tests -q -p no:randomly --durations=15

test-fast: setup  ## the tests only, stop at the first failure
	$(BIN)/python -m pytest tests -q -x

lint:
	$(BIN)/ruff check .

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

profile-gates: setup  ## CPU ms per gate decision by kind, in process (bench_gates' mix), and a cProfile top list
	$(BIN)/python -m loadtests.profile_gates

bench-controllers: setup  ## sensor events/s over HTTP and MQTT; edge agent local decision latency
	$(BIN)/python -m loadtests.bench_sensors
	$(BIN)/python -m loadtests.bench_edge

clean-testdbs:    ## drop databases left behind by interrupted test runs
	@psql -h 127.0.0.1 -U postgres -tAc "SELECT datname FROM pg_database WHERE datname LIKE 't\_%' OR datname LIKE 'pgtpl\_%'" \
	  | while read -r db; do psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS \"$$db\" WITH (FORCE)"; done
