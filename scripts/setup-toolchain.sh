#!/usr/bin/env bash
# Install what building the ArceOS kernel tests needs, idempotently:
#   - the pinned nightly from tests/kernel/rust-toolchain.toml, with rust-src,
#     llvm-tools and the three bare-metal targets (rustup would install them
#     lazily too, but doing it here makes the first build's time predictable
#     and fails early with a clear message);
#   - axconfig-gen 0.2.1 (ArceOS's config generator), installed into a
#     project-local root, tools/cargo-bin, so it never clashes with another
#     version in ~/.cargo/bin.
# Fast no-op when everything is there. Only crates.io and the Rust
# distribution server (via rustup) are contacted, and only when needed.
#
# Usage: scripts/setup-toolchain.sh   (prints the tools bin dir on the last line)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
toolchain_file="$repo/tests/kernel/rust-toolchain.toml"
AXCONFIG_GEN_VERSION=0.2.1
TOOLS_ROOT=${TOOLS_ROOT:-$repo/tools/cargo-bin}

command -v rustup >/dev/null || { echo "setup-toolchain: rustup not found" >&2; exit 1; }

# One source of truth for the pin: read the channel from rust-toolchain.toml.
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$toolchain_file")
[[ -n $channel ]] || { echo "setup-toolchain: no channel in $toolchain_file" >&2; exit 1; }
components=(rust-src llvm-tools)
targets=(riscv64gc-unknown-none-elf aarch64-unknown-none-softfloat x86_64-unknown-none)

have_all() {
  local installed c
  rustup run "$channel" rustc --version >/dev/null 2>&1 || return 1
  installed=$(rustup +"$channel" component list --installed 2>/dev/null) || return 1
  for c in "${components[@]}"; do
    grep -q "^$c" <<<"$installed" || return 1
  done
  for c in "${targets[@]}"; do
    grep -qx "rust-std-$c" <<<"$installed" || return 1
  done
}

if ! have_all; then
  echo "setup-toolchain: installing $channel" >&2
  rustup toolchain install "$channel" --profile minimal \
    "${components[@]/#/--component=}" "${targets[@]/#/--target=}" >&2
  have_all || { echo "setup-toolchain: $channel still incomplete" >&2; exit 1; }
fi

# axconfig-gen: build it with the stable toolchain from outside the kernel
# workspace, so the nightly pin does not apply to it.
gen="$TOOLS_ROOT/bin/axconfig-gen"
if ! [[ -x $gen && $("$gen" --version 2>/dev/null) == *"$AXCONFIG_GEN_VERSION"* ]]; then
  echo "setup-toolchain: cargo install axconfig-gen $AXCONFIG_GEN_VERSION" >&2
  (cd / && cargo install --quiet --locked --root "$TOOLS_ROOT" \
    axconfig-gen --version "=$AXCONFIG_GEN_VERSION" >&2)
fi

echo "$TOOLS_ROOT/bin"
