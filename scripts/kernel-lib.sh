# Shared by scripts/kernel-test.sh and scripts/kernel-bench.sh (sourced, not
# run): build the tests/kernel ArceOS app for one arch and backend, boot it
# on QEMU. Bash with `set -euo pipefail` in the caller.
#
#   kernel_setup ARCH ALLOC SMP   tools (setup-toolchain/setup-qemu), arch and
#                                 backend settings; bad arguments end in the
#                                 caller's `usage` (exit 2)
#   kernel_build NAME LOG         axconfig + cargo build; sets $elf, $image
#                                 (x86_64: the ELF itself; else NAME.bin)
#   kernel_qemu IMAGE             sets the array $qemu (the QEMU command line)
#   kernel_boot LOGFILE TIMEOUT   runs $qemu without stdin; the output, ANSI
#                                 colours and CRs stripped, goes to LOGFILE;
#                                 sets $status (124: timed out)
#
# Variables read: MEM (guest memory, default 128M), KERNEL_TAG (message
# prefix), KERNEL_PROFILE (cargo profile, default release),
# KERNEL_FEATURES (app features besides the backend's, space-separated),
# CARGO_TARGET_DIR (default tests/kernel/target).
# Variables set by kernel_setup: repo app tools_bin qemu_bin triple platform
# plat_pkg features target_dir out_dir, KERNEL_MEM_BYTES (MEM in bytes:
# plat.phys-memory-size, and KERNEL_TEST_MEM_BYTES for the app) and
# KERNEL_MEM_TAG ("-memMEM" unless MEM is 128M; in config and run names).

KERNEL_TAG=${KERNEL_TAG:-kernel}
KERNEL_PROFILE=${KERNEL_PROFILE:-release}
KERNEL_FEATURES=${KERNEL_FEATURES:-}
MEM=${MEM:-128M}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

kernel_setup() {
  local arch=$1 alloc=$2 smp=$3
  app="$repo/tests/kernel"
  tools_bin=$("$repo/scripts/setup-toolchain.sh" | tail -1)
  qemu_bin=$("$repo/scripts/setup-qemu.sh" | tail -1)

  case $arch in
    riscv64) triple=riscv64gc-unknown-none-elf; platform=riscv64-qemu-virt; plat_pkg=axplat-riscv64-qemu-virt ;;
    aarch64) triple=aarch64-unknown-none-softfloat; platform=aarch64-qemu-virt; plat_pkg=axplat-aarch64-qemu-virt ;;
    x86_64) triple=x86_64-unknown-none; platform=x86-pc; plat_pkg=axplat-x86-pc ;;
    *) echo "$KERNEL_TAG: unknown ARCH '$arch'" >&2; usage ;;
  esac
  local feats=$KERNEL_FEATURES
  case $alloc in
    tlsf) ;;
    buddy-slab) feats="buddy-slab${feats:+ $feats}" ;;
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
  # One target dir for every arch and allocator: switching arch rebuilds
  # nothing already built for the other triples. CARGO_TARGET_DIR may move it.
  target_dir=${CARGO_TARGET_DIR:-$app/target}
  out_dir="$target_dir/kernel-test"
  mkdir -p "$out_dir"
}

kernel_build() {
  local name=$1 log=$2
  # --- configuration: defconfig + the platform crate's axconfig.toml -------
  # The platform crate's source path comes from cargo itself (it is fetched on
  # first use); no registry path is hard-coded.
  local plat_manifest config metadata
  # --locked: a stale tests/kernel/Cargo.lock (say, after the root crate
  # gained a dependency) must fail loudly, not be rewritten behind the pins.
  if ! metadata=$(cargo metadata --locked --format-version 1 --filter-platform "$triple" 2>&1); then
    echo "$KERNEL_TAG: cargo metadata failed; is tests/kernel/Cargo.lock up to date?" >&2
    tail -n 5 <<<"$metadata" >&2
    exit 1
  fi
  plat_manifest=$(grep -o "\"manifest_path\":\"[^\"]*/$plat_pkg-[^\"/]*/Cargo.toml\"" <<<"$metadata" | head -1 | cut -d'"' -f4) || true
  [[ -n $plat_manifest ]] || { echo "$KERNEL_TAG: cannot locate $plat_pkg (cargo metadata)" >&2; exit 1; }
  # riscv64 and aarch64 take their RAM size from plat.phys-memory-size.
  config="$out_dir/$KERNEL_ARCH-smp$KERNEL_SMP$KERNEL_MEM_TAG.axconfig.toml"
  "$tools_bin/axconfig-gen" configs/defconfig.toml "$(dirname "$plat_manifest")/axconfig.toml" \
    -w "arch=\"$KERNEL_ARCH\"" -w "platform=\"$platform\"" -w "plat.max-cpu-num=$KERNEL_SMP" \
    -w "plat.phys-memory-size=$(printf '%#x' "$KERNEL_MEM_BYTES")" -o "$config.new"
  # Replace only on change: a rewritten file would rebuild axconfig and everything above it.
  if cmp -s "$config.new" "$config"; then rm "$config.new"; else mv "$config.new" "$config"; fi

  # --- build ----------------------------------------------------------------
  # Flags found to work with the pinned nightly (see tests/kernel/README.md):
  # axio uses the unstable core_io feature; axhal's build script writes the
  # linker script next to the final artifacts before the final link.
  local profile_dir=$KERNEL_PROFILE profile_args=(--release)
  if [[ $KERNEL_PROFILE != release ]]; then profile_args=(--profile "$KERNEL_PROFILE"); fi
  # The app's all_memory_usable test reads the guest RAM size.
  export KERNEL_TEST_MEM_BYTES=$KERNEL_MEM_BYTES
  export AX_CONFIG_PATH=$config AX_LOG=$log AX_ARCH=$KERNEL_ARCH AX_PLATFORM=$platform AX_SMP=$KERNEL_SMP AX_MODE=release
  export RUSTFLAGS="-Zcrate-attr=feature(core_io) -A unsafe_op_in_unsafe_fn -A unused_features \
-C link-arg=-T$target_dir/$triple/$profile_dir/linker_$platform.lds -C link-arg=-no-pie -C link-arg=-znostart-stop-gc"
  echo "$KERNEL_TAG: building $name" >&2
  cargo build --locked "${profile_args[@]}" --target "$triple" --target-dir "$target_dir" "${features[@]}"
  elf="$target_dir/$triple/$profile_dir/alloc-kernel-test"
  case $KERNEL_ARCH in
    x86_64) image=$elf ;; # multiboot ELF
    *)
      image="$out_dir/$name.bin"
      local objcopy
      objcopy="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy"
      "$objcopy" "$elf" --strip-all -O binary "$image"
      ;;
  esac
}

kernel_qemu() {
  local image=$1
  case $KERNEL_ARCH in
    riscv64) qemu=(qemu-system-riscv64 -machine virt -bios default) ;;
    aarch64) qemu=(qemu-system-aarch64 -cpu cortex-a72 -machine virt) ;;
    x86_64) qemu=(qemu-system-x86_64 -machine q35) ;;
  esac
  qemu[0]="$qemu_bin/${qemu[0]}"
  qemu+=(-m "$MEM" -smp "$KERNEL_SMP" -kernel "$image" -nographic -no-reboot)
}

kernel_boot() {
  local log=$1 timeout=$2 attempt
  for attempt in 1 2; do
    set +e
    timeout --foreground "$timeout" "${qemu[@]}" </dev/null >"$log.raw" 2>&1
    status=$?
    set -e
    # Strip ANSI colours and CRs so the expect regexes see plain text.
    sed -e 's/\x1b\[[0-9;]*m//g' -e 's/\r//g' "$log.raw" >"$log"
    rm -f "$log.raw"
    # Known riscv64 platform race, not the allocator's: now and then a second
    # hart enters the kernel's primary entry, the boot banner (`smp = N`)
    # appears twice and axruntime panics re-initialising per-CPU state. Boot
    # once more in that case only, and say so; any other failure stands.
    if [[ $KERNEL_ARCH == riscv64 && $attempt == 1 && $(grep -a -c -x 'smp = [0-9]*' "$log") -gt 1 ]]; then
      echo "$KERNEL_TAG: a second hart took the primary boot path (riscv64 boot race); booting again" >&2
      cp "$log" "$log.boot-race"
      continue
    fi
    return 0
  done
}
