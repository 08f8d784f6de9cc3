#!/usr/bin/env bash
# Installs what host tests and cross builds need on a fresh machine:
# rustfmt/clippy on the default toolchain and the three bare-metal targets.
# Idempotent: rustup skips what is already installed.
set -euo pipefail

targets=(riscv64gc-unknown-none-elf aarch64-unknown-none-softfloat x86_64-unknown-none)
installed=$(rustup target list --installed)
missing=()
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || missing+=("$t")
done
if ((${#missing[@]})); then
    rustup target add "${missing[@]}"
fi
components=$(rustup component list --installed)
for c in rustfmt clippy; do
    grep -q "^$c" <<<"$components" || rustup component add "$c"
done
