#!/usr/bin/env bash
# Host tests of the axalloc member (`make axalloc-test`), run the way
# ArceOS's `make unittest` runs a module: `cargo test` on the host with
# AX_CONFIG_PATH unset (axconfig's dummy config, max-cpu-num = 1) and
# percpu's sp-naive mode (axalloc's dev-dependencies).
#
# For each feature set ArceOS forwards to axalloc (axfeat, axruntime) and
# the combinations with this project's backend:
#   1. cargo test -p axalloc: tests/api.rs (the published crate's API, item
#      by item), tests/heap.rs (the facade over the selected backend),
#      tests/tracking.rs (with `tracking`);
#   2. tests/api.rs checked against the published axalloc 0.3.0-preview.3
#      itself (axalloc/api-published, for the sets it has features for), so
#      the API test cannot drift from the real API;
# then clippy -D warnings with the backend features, the crate docs, the
# core's `arceos` binding as a kernel builds it (no std), and a no_std
# check of the tracking and hv code for riscv64.
#
# Usage: scripts/axalloc-test.sh [FEATURE_SET...]   (default: all below;
# "default" names the default features)
set -euo pipefail
cd "$(dirname "$0")/.."
unset AX_CONFIG_PATH

# Feature sets: the published crate's (first line: default = tlsf with the
# 256 MiB bitmap), then this project's backend.
all_sets=(
    default slab buddy level-1 page-alloc-4g page-alloc-64g tracking level-1,tracking hv hv,tracking
    buddy-slab buddy-slab,tracking
)
clippy_sets=(buddy-slab hv tracking hv,tracking level-1)

if (($#)); then sets=("$@"); else sets=("${all_sets[@]}"); fi

features() {
    [[ $1 == default ]] || echo "--features=$1"
}

for set in "${sets[@]}"; do
    echo "== axalloc [$set]: cargo test"
    # shellcheck disable=SC2046 # no features: no argument
    cargo test -q -p axalloc $(features "$set")
    if [[ $set != *buddy-slab* ]]; then
        echo "== axalloc [$set]: tests/api.rs against the published axalloc"
        # shellcheck disable=SC2046
        (cd axalloc/api-published &&
            cargo check -q --locked --tests --target-dir ../../target/api-published $(features "$set"))
    fi
done

if (($# == 0)); then
    for set in "${clippy_sets[@]}"; do
        echo "== axalloc [$set]: clippy"
        cargo clippy -q -p axalloc --all-targets --features "$set" -- -D warnings
    done
    for set in default hv,tracking; do
        echo "== axalloc [$set]: docs without broken links"
        # shellcheck disable=SC2046
        RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p axalloc $(features "$set")
    done
    echo "== buddy-slab-allocator [arceos, no std]: clippy"
    cargo clippy -q -p buddy-slab-allocator --lib --no-default-features --features arceos -- -D warnings
    # `ipi` calls the platform's IRQ interface, which only a kernel links:
    # checked, not tested, on the host (the in-kernel suite runs it).
    echo "== buddy-slab-allocator [arceos, ipi, no std]: clippy"
    cargo clippy -q -p buddy-slab-allocator --lib --no-default-features --features ipi -- -D warnings
    for set in tracking hv,tracking ipi-reclaim; do
        echo "== axalloc [$set]: no_std check (riscv64gc-unknown-none-elf)"
        cargo check -q -p axalloc --target riscv64gc-unknown-none-elf --features "$set"
    done
fi
echo "axalloc-test: all passed"
