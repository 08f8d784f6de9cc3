# Shared by scripts/kernel-tgoskits-test.sh and scripts/kernel-tgoskits-bench.sh
# (sourced, not run): build the tests/kernel-tgoskits app (the tgoskits
# ArceOS line: ax-std 0.7.5, ax-runtime 0.13.5, ax-alloc 0.9) for one arch
# and heap, boot it on QEMU. Bash with `set -euo pipefail` in the caller.
# The 0.3 line's counterpart is scripts/kernel-lib.sh; the differences are
# the line's: no axconfig (build settings are environment variables), a
# PIE kernel whose linker script the build scripts write, a raw image on
# every arch, and UEFI firmware (OVMF) for x86_64.
#
#   tgo_setup ARCH ALLOC SMP   tools (setup-tgoskits, setup-qemu), arch and
#                              heap settings; bad arguments end in the
#                              caller's `usage` (exit 2)
#   tgo_build NAME LOG         cargo build + objcopy; sets $elf, $image
#   tgo_qemu IMAGE             sets the array $qemu (the QEMU command line)
#   tgo_boot LOGFILE TIMEOUT   runs $qemu without stdin; the output, ANSI
#                              colours and CRs stripped, goes to LOGFILE;
#                              sets $status (124: timed out)
#
# ALLOC (the heap):
#   buddy-slab  this project's, through ax-alloc/ patched in (the default
#               backend of every ax-runtime kernel)
#   tlsf        ax-alloc/'s stock TLSF backend (feature `tlsf`)
#   seed        the published ax-alloc 0.9.2's own buddy-slab backend
#               (buddy-slab-allocator 0.6): tests/kernel-tgoskits/seed, the
#               same source built without the patch
#   seed-tlsf   the published ax-alloc's TLSF backend (seed/ with `tlsf`)
#
# Variables read: MEM (guest memory, default 128M), KERNEL_TAG (message
# prefix), KERNEL_PROFILE (cargo profile, default release), KERNEL_FEATURES
# (app features besides the heap's, space-separated), CARGO_TARGET_DIR
# (default tests/kernel-tgoskits/target, shared by every arch and heap),
# CARGO_BUILD_JOBS (default 2: the machines are small and shared).
# Variables set by tgo_setup: repo app tools_bin qemu_bin ovmf_dir triple
# features target_dir out_dir, KERNEL_MEM_BYTES (MEM in bytes, also the
# app's KERNEL_TEST_MEM_BYTES) and KERNEL_MEM_TAG ("-memMEM" unless MEM is
# 128M; in image and log names).

KERNEL_TAG=${KERNEL_TAG:-kernel-tgoskits}
KERNEL_PROFILE=${KERNEL_PROFILE:-release}
KERNEL_FEATURES=${KERNEL_FEATURES:-}
MEM=${MEM:-128M}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

tgo_setup() {
  local arch=$1 alloc=$2 smp=$3
  ovmf_dir=$("$repo/scripts/setup-tgoskits.sh" | tail -1)
  qemu_bin=$("$repo/scripts/setup-qemu.sh" | tail -1)

  case $arch in
    riscv64) triple=riscv64gc-unknown-none-elf ;;
    aarch64) triple=aarch64-unknown-none-softfloat ;;
    x86_64) triple=x86_64-unknown-none ;;
    *) echo "$KERNEL_TAG: unknown ARCH '$arch'" >&2; usage ;;
  esac
  local feats=$KERNEL_FEATURES
  app="$repo/tests/kernel-tgoskits"
  case $alloc in
    buddy-slab) ;;
    tlsf) feats="tlsf${feats:+ $feats}" ;;
    seed) app="$app/seed" ;;
    seed-tlsf) app="$app/seed" feats="tlsf${feats:+ $feats}" ;;
    *) echo "$KERNEL_TAG: unknown ALLOC '$alloc'" >&2; usage ;;
  esac
  features=()
  [[ -z $feats ]] || features=(--features "$feats")
  [[ $smp =~ ^[1-9][0-9]*$ ]] || { echo "$KERNEL_TAG: bad SMP '$smp'" >&2; exit 2; }
  KERNEL_ARCH=$arch KERNEL_SMP=$smp
  case $MEM in
    *[Gg]) KERNEL_MEM_BYTES=$((${MEM%[Gg]} << 30)) ;;
    *[Mm]) KERNEL_MEM_BYTES=$((${MEM%[Mm]} << 20)) ;;
    *) KERNEL_MEM_BYTES=$((MEM << 20)) ;;
  esac
  [[ $KERNEL_MEM_BYTES -gt 0 ]] || { echo "$KERNEL_TAG: bad MEM '$MEM'" >&2; exit 2; }
  KERNEL_MEM_TAG=""
  [[ $KERNEL_MEM_BYTES == $((128 << 20)) ]] || KERNEL_MEM_TAG="-mem$MEM"

  cd "$app"
  # One target dir for every arch and heap (seed/ included: the crates
  # below ax-alloc are shared). CARGO_TARGET_DIR may move it.
  target_dir=${CARGO_TARGET_DIR:-$repo/tests/kernel-tgoskits/target}
  out_dir="$target_dir/kernel-test"
  mkdir -p "$out_dir"
}

tgo_build() {
  local name=$1 log=$2
  # Build settings of the line, read by build scripts (no axconfig):
  # SMP is the CPU capacity (ax-hal, ax-runtime, axplat-dyn's linker
  # script, and this project's tgoskits binding); AX_LOG the log level baked
  # in; AX_MODE/AX_TARGET/AX_ARCH what the banner prints.
  export SMP=$KERNEL_SMP AX_ARCH=$KERNEL_ARCH AX_MODE=release AX_LOG=$log AX_TARGET=$triple
  # The app's all_memory_usable and page_reclaim tests read the RAM size.
  export KERNEL_TEST_MEM_BYTES=$KERNEL_MEM_BYTES
  # tgoskits' own link contract (os/arceos/scripts/make/cargo.mk): a PIE
  # kernel (someboot relocates itself); linker.x is written by ax-runtime's
  # build script into its OUT_DIR, which is on the link search path.
  export RUSTFLAGS="-A unsafe_op_in_unsafe_fn -C relocation-model=pic -C link-arg=-pie \
-C link-arg=-znostart-stop-gc -C link-arg=-Tlinker.x"
  local profile_dir=$KERNEL_PROFILE profile_args=(--release)
  if [[ $KERNEL_PROFILE != release ]]; then profile_args=(--profile "$KERNEL_PROFILE"); fi
  echo "$KERNEL_TAG: building $name" >&2
  # --locked: a stale Cargo.lock (say, after the root crate gained a
  # dependency) must fail loudly, not be rewritten behind the pins.
  cargo build --locked "${profile_args[@]}" --target "$triple" --target-dir "$target_dir" \
    -Z build-std=core,alloc "${features[@]}"
  elf="$target_dir/$triple/$profile_dir/alloc-kernel-test"
  # A raw image on every arch: riscv64 and aarch64 boot it as a Linux-style
  # Image; on x86_64 it is a PE32+ EFI application (someboot's EFI stub).
  image="$out_dir/$name.bin"
  local objcopy
  objcopy="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy"
  "$objcopy" "$elf" --strip-all -O binary "$image"
}

tgo_qemu() {
  local image=$1
  case $KERNEL_ARCH in
    riscv64) qemu=(qemu-system-riscv64 -machine virt -bios default) ;;
    aarch64) qemu=(qemu-system-aarch64 -cpu cortex-a72 -machine virt) ;;
    x86_64)
      # OVMF loads the EFI image given as -kernel (tgoskits' ktest recipe);
      # each boot gets a fresh copy of the variable store.
      cp "$ovmf_dir/OVMF_VARS_4M.fd" "$image.vars.fd"
      qemu=(qemu-system-x86_64 -machine q35
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_dir/OVMF_CODE_4M.fd"
        -drive "if=pflash,format=raw,unit=1,file=$image.vars.fd")
      ;;
  esac
  qemu[0]="$qemu_bin/${qemu[0]}"
  qemu+=(-m "$MEM" -smp "$KERNEL_SMP" -kernel "$image" -nographic -no-reboot)
}

tgo_boot() {
  local log=$1 timeout=$2
  set +e
  timeout --foreground "$timeout" "${qemu[@]}" </dev/null >"$log.raw" 2>&1
  status=$?
  set -e
  # Strip ANSI escapes (OVMF draws with cursor moves too) and CRs so the
  # expect regexes see plain text.
  sed -e 's/\x1b\[[0-9;=?]*[a-zA-Z]//g' -e 's/\r//g' "$log.raw" >"$log"
  rm -f "$log.raw"
}
