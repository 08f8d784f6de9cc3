#!/usr/bin/env bash
# Install what building and booting the tgoskits-line kernels
# (tests/kernel-tgoskits) needs, idempotently:
#   - the pinned nightly from tests/kernel-tgoskits/rust-toolchain.toml,
#     with rust-src, llvm-tools and the three bare-metal targets;
#   - libclang (Debian `libclang-dev`): ax-std 0.7.5 depends on ax-posix-api,
#     whose build script runs bindgen on its C headers. Installed with
#     apt-get (a plain package, no conflict with the system's);
#   - OVMF (Debian `ovmf`), the UEFI firmware the x86_64 kernel needs (it is
#     a PE32+ EFI application, not a multiboot ELF): `apt-get download`ed and
#     `dpkg -x`ed into tools/ovmf, as scripts/setup-qemu.sh does for QEMU,
#     so the system's packages are not touched.
# QEMU itself comes from scripts/setup-qemu.sh.
# Fast no-op when everything is there. Only the Rust distribution server
# (rustup) and the Debian package registry are contacted, and only when
# something is missing.
#
# Usage: scripts/setup-tgoskits.sh   (prints the OVMF firmware dir on the last line)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
toolchain_file="$repo/tests/kernel-tgoskits/rust-toolchain.toml"
OVMF_DIR=${OVMF_DIR:-$repo/tools/ovmf}
# The firmware files the boot uses (4 MiB flash layout, as tgoskits' ktest).
ovmf_files=(OVMF_CODE_4M.fd OVMF_VARS_4M.fd)

command -v rustup >/dev/null || { echo "setup-tgoskits: rustup not found" >&2; exit 1; }

# --- the nightly pin -------------------------------------------------------
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$toolchain_file")
[[ -n $channel ]] || { echo "setup-tgoskits: no channel in $toolchain_file" >&2; exit 1; }
components=(rust-src llvm-tools)
targets=(riscv64gc-unknown-none-elf aarch64-unknown-none-softfloat x86_64-unknown-none)

have_toolchain() {
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

if ! have_toolchain; then
  echo "setup-tgoskits: installing $channel" >&2
  rustup toolchain install "$channel" --profile minimal \
    "${components[@]/#/--component=}" "${targets[@]/#/--target=}" >&2
  have_toolchain || { echo "setup-tgoskits: $channel still incomplete" >&2; exit 1; }
fi

# --- package lists, refreshed at most once and only when needed ------------
apt_ready=0
apt_lists() {
  [[ $apt_ready == 1 ]] && return 0
  command -v apt-get >/dev/null || { echo "setup-tgoskits: apt-get not found (Debian/Ubuntu only)" >&2; exit 1; }
  if ! apt-cache show "$1" >/dev/null 2>&1; then
    echo "setup-tgoskits: apt-get update" >&2
    apt-get update -qq
  fi
  apt_ready=1
}

# --- libclang ----------------------------------------------------------------
if ! dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'install ok installed'; then
  apt_lists libclang-dev
  echo "setup-tgoskits: apt-get install libclang-dev" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >&2
fi

# --- OVMF into tools/ovmf ----------------------------------------------------
fw="$OVMF_DIR/root/usr/share/OVMF"
have_ovmf() {
  local f
  for f in "${ovmf_files[@]}"; do
    [[ -s $fw/$f ]] || return 1
  done
}
if ! have_ovmf; then
  apt_lists ovmf
  rm -rf "$OVMF_DIR"
  mkdir -p "$OVMF_DIR/debs"
  # apt drops privileges to _apt for downloads; let it write into the folder.
  chmod 0777 "$OVMF_DIR/debs" 2>/dev/null || true
  echo "setup-tgoskits: downloading ovmf into $OVMF_DIR" >&2
  (cd "$OVMF_DIR/debs" && apt-get download -qq ovmf)
  dpkg -x "$OVMF_DIR"/debs/ovmf_*.deb "$OVMF_DIR/root"
  rm -rf "$OVMF_DIR/debs"
  have_ovmf || { echo "setup-tgoskits: ${ovmf_files[*]} missing from the ovmf package" >&2; exit 1; }
fi

echo "$fw"
