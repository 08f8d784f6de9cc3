#!/usr/bin/env bash
# Runs each cargo-fuzz target for SECONDS seconds on its corpus (kept in
# fuzz/corpus/<target>, not in git) and prints one summary line per target:
# executions and corpus size. An empty corpus starts from the committed,
# minimised seeds (fuzz/seeds.tar.gz, `make fuzz-seeds` refreshes them).
# Exits non-zero on the first crash; the input is left in
# fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
toolchain=${NIGHTLY:-nightly-2026-05-20}
targets=(${FUZZ_TARGETS:-buddy slab global})

cargo "+$toolchain" fuzz build >/dev/null
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    if [ -f seeds.tar.gz ] && [ -z "$(ls -A "corpus/$t")" ]; then
        tar -xzf seeds.tar.gz -C corpus "$t"
    fi
    log=$(mktemp)
    if ! cargo "+$toolchain" fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        grep -vE '^#[0-9]+' "$log" | tail -40
        echo "fuzz $t: FAILED (input in fuzz/artifacts/$t/)"
        rm -f "$log"
        exit 1
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz $t: $execs executions in ${seconds} s, corpus $(ls "corpus/$t" | wc -l) inputs"
    rm -f "$log"
done
