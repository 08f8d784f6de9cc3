# Shared by scripts/kernel-test.sh, scripts/kernel-apps.sh and
# scripts/kernel-bench.sh (sourced, not run): build an ArceOS app of the
# tests/kernel workspace for one arch and backend, boot it on QEMU, check
# its output. Bash with `set -euo pipefail` in the caller.
#
#   kernel_setup ARCH ALLOC SMP   tools (setup-toolchain/setup-qemu), arch and
#                                 backend settings; bad arguments end in the
#                                 caller's `usage` (exit 2)
#   kernel_build NAME LOG         axconfig + cargo build; sets $elf, $image
#                                 (x86_64: the ELF itself; else NAME.bin);
#                                 a failed cargo build exits 3
#   kernel_qemu IMAGE             sets the array $qemu (the QEMU command line)
#   kernel_boot LOGFILE TIMEOUT   runs $qemu without stdin; the output, ANSI
#                                 colours and CRs stripped, goes to LOGFILE;
#                                 sets $status (124: timed out)
#   kernel_expect LOGFILE EXPECT  arceos-apps' app_test.sh matching: every
#                                 line of EXPECT is a grep (basic) regex that
#                                 must match some line of LOGFILE, in any
#                                 order; prints each line that matches none;
#                                 returns 1 if any
#   kernel_check LOGFILE EXPECT STATUS TIMEOUT  every check of one run:
#                                 QEMU's STATUS is 0 (124: timed out after
#                                 TIMEOUT s), kernel_expect, no line holds
#                                 `panicked at`, kernel_ktap; prints each
#                                 problem; returns 0, 1 (failed) or 4 (timed out)
#   kernel_ktap LOGFILE           if LOGFILE holds `KTAP version 1`: the plan
#                                 `1..N` follows, then result lines `ok I` /
#                                 `not ok I` numbered 1..N, all `ok`, and a
#                                 summary `N passed, 0 failed` if there is
#                                 one; prints each problem, returns 1 if any
#
# Variables read: MEM (guest memory, default 128M), KERNEL_TAG (message
# prefix), KERNEL_APP (the app's directory, default tests/kernel: the
# workspace root; the other apps are its members under tests/kernel/apps/),
# KERNEL_PROFILE (cargo profile, default release), KERNEL_FEATURES (cargo
# features of the app besides the backend's, space-separated; `axstd/X`
# selects an ArceOS feature), CARGO_TARGET_DIR (default
# tests/kernel/target, shared by every app of the workspace).
# Variables set by kernel_setup: repo workspace app app_name bin tools_bin
# qemu_bin triple platform plat_pkg features target_dir out_dir,
# KERNEL_MEM_BYTES (MEM in bytes: plat.phys-memory-size, and
# KERNEL_TEST_MEM_BYTES for the app) and KERNEL_MEM_TAG ("-memMEM" unless
# MEM is 128M; in config and run names).

KERNEL_TAG=${KERNEL_TAG:-kernel}
KERNEL_PROFILE=${KERNEL_PROFILE:-release}
KERNEL_FEATURES=${KERNEL_FEATURES:-}
MEM=${MEM:-128M}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

kernel_setup() {
  local arch=$1 alloc=$2 smp=$3
  workspace="$repo/tests/kernel"
  app=$(cd "${KERNEL_APP:-$workspace}" 2>/dev/null && pwd) ||
    { echo "$KERNEL_TAG: no app directory '${KERNEL_APP}'" >&2; exit 2; }
  case $app/ in
    "$workspace"/*) ;;
    *) echo "$KERNEL_TAG: app $app is not in the tests/kernel workspace" >&2; exit 2 ;;
  esac
  # The binary is named after the package (the first `name =` of the manifest).
  bin=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$app/Cargo.toml" | head -1)
  [[ -n $bin ]] || { echo "$KERNEL_TAG: no package name in $app/Cargo.toml" >&2; exit 2; }
  app_name=$(basename "$app")
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
  # One target dir for every app, arch and allocator: switching arch rebuilds
  # nothing already built for the other triples, and every app of one
  # configuration links the same dependency units. CARGO_TARGET_DIR may move it.
  target_dir=${CARGO_TARGET_DIR:-$workspace/target}
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
  # EXTRA_CONFIG (ArceOS's variable): one more file merged in, say with the
  # allocator's knob tables ([buddy-slab], [buddy-slab-cpu], ...).
  "$tools_bin/axconfig-gen" "$workspace/configs/defconfig.toml" "$(dirname "$plat_manifest")/axconfig.toml" \
    ${EXTRA_CONFIG:+"$EXTRA_CONFIG"} \
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
  if ! cargo build --locked "${profile_args[@]}" --target "$triple" --target-dir "$target_dir" "${features[@]}"; then
    echo "$KERNEL_TAG: build of $name failed" >&2
    exit 3
  fi
  elf="$target_dir/$triple/$profile_dir/$bin"
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

kernel_expect() {
  local log=$1 expect=$2 line rc=0
  if [[ ! -f $expect ]]; then
    echo "expected output file \"$expect\" not found!"
    return 1
  fi
  # As app_test.sh's compare(): each line, read verbatim (IFS='', read -r:
  # leading blanks kept, empty lines match everything), is a basic regular
  # expression for `grep -a`, found anywhere in the output, in any order.
  # Beyond app_test.sh: every unmatched line is reported (not only the
  # first), a last line without a newline is checked too, and `-e` keeps a
  # line that starts with `-` a pattern.
  while IFS= read -r line || [[ -n $line ]]; do
    local found=0
    grep -q -a -e "$line" -- "$log" 2>/dev/null || found=$?
    case $found in
      0) ;;
      1) echo "pattern \"$line\" not matched!"; rc=1 ;;
      *) echo "pattern \"$line\" is not a valid grep regex!"; rc=1 ;;
    esac
  done <"$expect"
  return $rc
}

kernel_ktap() {
  local log=$1
  grep -q -a -x 'KTAP version 1' "$log" || return 0
  # Top level only (KTAP nests subtests by indentation); lines of other
  # kinds between them (kernel log lines, diagnostics) are allowed.
  awk '
    function bad(msg) { print msg; failed = 1 }
    $0 == "KTAP version 1" { versions++; next }
    versions == 1 && plan == "" && /^1\.\.[0-9]+$/ { plan = substr($0, 4) + 0; next }
    versions == 1 && /^(not )?ok [0-9]+( |$)/ {
      if (plan == "") { bad("result before the plan: " $0); next }
      n = ($1 == "not") ? $3 : $2
      if (n != results + 1) bad("result " n " out of order (expected " results + 1 "): " $0)
      results++
      if ($1 == "not") bad("failed: " $0)
      next
    }
    /^[0-9]+ passed, [0-9]+ failed$/ { summary = $0 }
    END {
      if (versions > 1) bad("KTAP version line printed " versions " times (a second boot?)")
      if (plan == "") bad("no KTAP plan line 1..N after `KTAP version 1`")
      else if (results != plan) bad("plan 1.." plan " but " results " result lines (a test never finished?)")
      if (summary != "" && summary != plan " passed, 0 failed") bad("summary \"" summary "\" does not match the plan 1.." plan)
      exit failed
    }' "$log"
}

kernel_check() {
  local log=$1 expect=$2 status=$3 timeout=$4 out rc=0
  if [[ $status == 124 ]]; then
    echo "timed out after ${timeout}s"
    rc=4
  elif [[ $status != 0 ]]; then
    echo "QEMU exited with status $status"
    rc=1
  fi
  # An ArceOS panic prints `panicked at FILE:LINE:COL:` and powers off:
  # QEMU's status is 0 then.
  out=$(grep -a 'panicked at' "$log" | head -3 | sed 's/^/panic: /') || true
  [[ -z $out ]] || { echo "$out"; [[ $rc != 0 ]] || rc=1; }
  out=$(kernel_expect "$log" "$expect") || { echo "$out"; [[ $rc != 0 ]] || rc=1; }
  out=$(kernel_ktap "$log" | sed 's/^/KTAP: /'; exit "${PIPESTATUS[0]}") || { echo "$out"; [[ $rc != 0 ]] || rc=1; }
  return $rc
}
