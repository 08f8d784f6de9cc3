#!/usr/bin/env bash
# Host tests of the ax-alloc member (`make ax-alloc-test`): the drop-in for
# the published ax-alloc 0.9.2 of the tgoskits line.
#
# For each feature set the line forwards to ax-alloc (ax-std:
# global-allocator; axklib/axplat-dyn: buddy-slab, tlsf; tracking):
#   1. cargo test -p ax-alloc: the unit tests (reclaim policy and lease),
#      tests/api.rs (the published crate's API, item by item) and
#      tests/heap.rs (the global allocator over a host arena: accounting,
#      figures, reclaim under pressure, GlobalPage, placement and DMA32,
#      bad frees) — except with global-allocator, which would make the
#      test binary's own heap an uninitialised kernel allocator (checked
#      only);
#   2. tests/api.rs checked against the published ax-alloc itself
#      (ax-alloc/api-published), so the API test cannot drift from the real
#      API;
# then clippy -D warnings for the sets stable can build, the crate docs,
# the core's `tgoskits` binding as a kernel builds it (no std, riscv64), and
# a check of every set for riscv64 with -D warnings.
#
# Toolchains: `buddy-slab` pulls ax-plat, whose rdrive/acpi need a nightly
# compiler even on the host, so those sets (and api-published) use the
# tgoskits pin (scripts/setup-tgoskits.sh installs it); the rest use the
# default toolchain. Sets that touch per-CPU variables (buddy-slab,
# tracking) link their test binaries with ax-percpu's host linker script
# (its `host-test` mode, as ax-percpu's own tests do) and get a CPU area per
# test thread (tests/common). Own target dir: target/ax-alloc-test.
#
# Usage: scripts/ax-alloc-test.sh [FEATURE_SET...]   (default: all below;
# "default" names no features)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

all_sets=(default tlsf tracking tlsf,tracking buddy-slab buddy-slab,tracking tlsf,buddy-slab global-allocator buddy-slab,global-allocator)
clippy_sets=(default tlsf tracking tlsf,tracking)

if (($#)); then sets=("$@"); else sets=("${all_sets[@]}"); fi

nightly=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' tests/kernel-tgoskits/rust-toolchain.toml)
"$repo/scripts/setup-tgoskits.sh" >/dev/null
export CARGO_TARGET_DIR=$repo/target/ax-alloc-test
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
host=$(rustc -vV | sed -n 's/^host: //p')

features() {
    [[ $1 == default ]] || echo "--features=$1"
}

# ax-percpu's host linker script (places the per-CPU template sections),
# found through cargo like the kernel scripts find their crates.
percpu_ld() {
    local manifest
    manifest=$(cargo metadata --locked --format-version 1 |
        grep -o '"manifest_path":"[^"]*/ax-percpu-0\.4\.[0-9]*/Cargo.toml"' | head -1 | cut -d'"' -f4)
    [[ -n $manifest ]] || { echo "ax-alloc-test: cannot locate ax-percpu (cargo metadata)" >&2; exit 1; }
    echo "$(dirname "$manifest")/host-test.ld"
}

for set in "${sets[@]}"; do
    toolchain=()
    [[ $set == *buddy-slab* ]] && toolchain=("+$nightly")
    if [[ $set == *global-allocator* ]]; then
        echo "== ax-alloc [$set]: cargo check --tests (the test binary cannot run on a kernel heap)"
        # shellcheck disable=SC2046
        cargo "${toolchain[@]}" check -q -p ax-alloc --tests $(features "$set")
    else
        echo "== ax-alloc [$set]: cargo test"
        flags=()
        if [[ $set == *buddy-slab* || $set == *tracking* ]]; then
            # --target: the link argument must reach the test binaries only,
            # not build scripts or proc macros.
            flags=(--target "$host")
            export RUSTFLAGS="-C link-arg=-T$(percpu_ld)"
        fi
        # shellcheck disable=SC2046
        cargo "${toolchain[@]}" test -q -p ax-alloc "${flags[@]}" $(features "$set")
        unset RUSTFLAGS
    fi
    echo "== ax-alloc [$set]: tests/api.rs against the published ax-alloc 0.9.2"
    # shellcheck disable=SC2046
    (cd ax-alloc/api-published &&
        CARGO_TARGET_DIR=$repo/target/api-published cargo check -q --locked --tests $(features "$set"))
done

if (($# == 0)); then
    for set in "${clippy_sets[@]}"; do
        echo "== ax-alloc [$set]: clippy"
        # shellcheck disable=SC2046
        cargo clippy -q -p ax-alloc --all-targets $(features "$set") -- -D warnings
    done
    for set in default tlsf,tracking; do
        echo "== ax-alloc [$set]: docs without broken links"
        # shellcheck disable=SC2046
        RUSTDOCFLAGS="-D warnings" cargo doc -q --no-deps -p ax-alloc $(features "$set")
    done
    echo "== buddy-slab-allocator [tgoskits, no std]: clippy (riscv64)"
    cargo clippy -q -p buddy-slab-allocator --lib --no-default-features --features tgoskits \
        --target riscv64gc-unknown-none-elf -- -D warnings
    for set in tlsf buddy-slab buddy-slab,tracking tlsf,tracking; do
        echo "== ax-alloc [$set]: no_std check, warnings denied (riscv64gc-unknown-none-elf)"
        RUSTFLAGS="-D warnings" cargo "+$nightly" check -q -p ax-alloc \
            --target riscv64gc-unknown-none-elf --features "$set"
    done
fi
echo "ax-alloc-test: all passed"
