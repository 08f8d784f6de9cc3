# Host benchmark targets (bench/, package bsa-bench). Include from the root Makefile:
#     include scripts/bench.mk
#
# Targets:
#   bench        full run (11 trials, 64 MiB arenas; about 10 minutes on 2 vCPUs), results in
#                $(BENCH_OUT): results.md (tables), results.csv, results.svg (plot)
#   bench-smoke  tiny sizes, one trial, a few seconds: checks the harness builds and runs (CI)
#
# Variables:
#   BENCH_PROFILE   cargo profile of `bench` (default bench-release: release + fat LTO,
#                   codegen-units = 1; defined in the root Cargo.toml)
#   BENCH_FEATURES  extra cargo features of bsa-bench (default: none; the package's own
#                   default features decide whether this crate is included, see bench/Cargo.toml)
#   BENCH_OUT       results folder of `bench` (default bench/results)
#   BENCH_ARGS      extra bsa-bench arguments, e.g. `--only a,b --trials 5 --allocators ours,seed-0.6.1`

# Including this file must not change the including Makefile's default goal.
BENCH_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

BENCH_PROFILE  ?= bench-release
BENCH_FEATURES ?=
BENCH_OUT      ?= bench/results
BENCH_ARGS     ?=

BENCH_CARGO_FEATURES = $(if $(strip $(BENCH_FEATURES)),--features "$(BENCH_FEATURES)")

.PHONY: bench bench-smoke

bench:
	cargo run -p bsa-bench --profile $(BENCH_PROFILE) $(BENCH_CARGO_FEATURES) -- --out $(BENCH_OUT) $(BENCH_ARGS)

bench-smoke:
	cargo run -p bsa-bench $(BENCH_CARGO_FEATURES) -- --smoke --out target/bench-smoke $(BENCH_ARGS)

.DEFAULT_GOAL := $(BENCH_SAVED_DEFAULT_GOAL)
