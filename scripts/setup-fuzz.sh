#!/usr/bin/env bash
# Installs what `make fuzz`, `make miri` and `make loom` need on a fresh
# machine, with rustup and cargo only: a pinned nightly with Miri and
# rust-src, Miri's sysroot, and cargo-fuzz. Idempotent: each step is skipped
# when already done. (loom is an ordinary crate: cargo fetches it.)
set -euo pipefail

toolchain=${NIGHTLY:-nightly-2026-05-20}

if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$toolchain" --profile minimal --component miri,rust-src
fi
components=$(rustup component list --installed --toolchain "$toolchain")
for c in miri rust-src; do
    grep -q "^$c" <<<"$components" || rustup component add "$c" --toolchain "$toolchain"
done
# Builds Miri's sysroot once (cached under ~/.cache/miri).
cargo "+$toolchain" miri setup >/dev/null

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
