#!/usr/bin/env bash
# Build the in-kernel allocator test app (tests/kernel) for one architecture,
# boot it on QEMU and check its output.
#
# Usage: scripts/kernel-test.sh ARCH [ALLOC] [SMP] [LOG]
#   ARCH   riscv64 | aarch64 | x86_64
#   ALLOC  tlsf (stock ArceOS: TLSF bytes + bitmap pages, the default)
#          | buddy-slab (this crate, through axalloc's `buddy-slab` feature)
#   SMP    number of CPUs (default 4); also the kernel's plat.max-cpu-num
#   LOG    kernel log level baked in at build time: off|error|warn|info|debug|trace
#          (default info; the expect files rely on info-level boot lines)
# Environment:
#   MEM        guest memory (default 128M): QEMU's -m and, on riscv64 and
#              aarch64 (which take RAM from the config, not from firmware),
#              the kernel's plat.phys-memory-size. Plain numbers are MiB;
#              suffixes M and G. Builds and logs for MEM other than 128M
#              carry it in their names (ARCH-ALLOC-smpSMP-memMEM.log).
#   TIMEOUT    seconds before QEMU is killed and the run fails (default 120)
#   MODE=run   boot and show the output only, no checks (used by `make kernel-run`)
#   EXPECT     expect file to use instead of tests/kernel/expect/ALLOC.out
#   BUDDY_SLAB_CONFIG  knobs file of the allocator (default configs/default.toml)
#
# Checks, all of which must hold:
#   1. QEMU exits 0 through the platform's shutdown (not the timeout);
#   2. every line of tests/kernel/expect/ALLOC.out, a regex, matches a line of
#      the output, in order (like ArceOS's scripts/app_test.sh); `{SMP}` is
#      replaced by the CPU count; a line `[LEVEL] regex` is only checked when
#      LOG is LEVEL or finer (e.g. `[debug]` for axalloc's init line);
#   3. the output has the closing line `N passed, 0 failed` with N > 0, and
#      no test line ends in FAILED.
# The output is kept in target/kernel-test/ARCH-ALLOC-smpSMP.log.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $# -le 4 ]] || usage
ARCH=$1
ALLOC=${2:-tlsf}
SMP=${3:-4}
LOG=${4:-info}
MEM=${MEM:-128M}
TIMEOUT=${TIMEOUT:-120}
MODE=${MODE:-test}

repo=$(cd "$(dirname "$0")/.." && pwd)
app="$repo/tests/kernel"
tools_bin=$("$repo/scripts/setup-toolchain.sh" | tail -1)
qemu_bin=$("$repo/scripts/setup-qemu.sh" | tail -1)

case $ARCH in
  riscv64) triple=riscv64gc-unknown-none-elf; platform=riscv64-qemu-virt; plat_pkg=axplat-riscv64-qemu-virt ;;
  aarch64) triple=aarch64-unknown-none-softfloat; platform=aarch64-qemu-virt; plat_pkg=axplat-aarch64-qemu-virt ;;
  x86_64) triple=x86_64-unknown-none; platform=x86-pc; plat_pkg=axplat-x86-pc ;;
  *) echo "kernel-test: unknown ARCH '$ARCH'" >&2; usage ;;
esac
case $ALLOC in
  tlsf) features=() ;;
  buddy-slab) features=(--features buddy-slab) ;;
  *) echo "kernel-test: unknown ALLOC '$ALLOC'" >&2; usage ;;
esac
[[ $SMP =~ ^[1-9][0-9]*$ ]] || { echo "kernel-test: bad SMP '$SMP'" >&2; exit 2; }
expect=${EXPECT:-$app/expect/$ALLOC.out}

cd "$app"
# One target dir for every arch and allocator: switching arch rebuilds
# nothing already built for the other triples. CARGO_TARGET_DIR may move it.
target_dir=${CARGO_TARGET_DIR:-$app/target}
out_dir="$target_dir/kernel-test"
mkdir -p "$out_dir"
# MEM in bytes, for plat.phys-memory-size.
case $MEM in
  *[Gg]) mem_bytes=$((${MEM%[Gg]} << 30)) ;;
  *[Mm]) mem_bytes=$((${MEM%[Mm]} << 20)) ;;
  *) mem_bytes=$((MEM << 20)) ;;
esac
[[ $mem_bytes -gt 0 ]] || { echo "kernel-test: bad MEM '$MEM'" >&2; exit 2; }
mem_tag=""
[[ $mem_bytes == $((128 << 20)) ]] || mem_tag="-mem$MEM"
name="$ARCH-$ALLOC-smp$SMP$mem_tag"

# --- configuration: defconfig + the platform crate's axconfig.toml ---------
# The platform crate's source path comes from cargo itself (it is fetched on
# first use); no registry path is hard-coded.
plat_manifest=$(cargo metadata --locked --format-version 1 --filter-platform "$triple" 2>/dev/null \
  | grep -o "\"manifest_path\":\"[^\"]*/$plat_pkg-[^\"/]*/Cargo.toml\"" | head -1 | cut -d'"' -f4)
[[ -n $plat_manifest ]] || { echo "kernel-test: cannot locate $plat_pkg (cargo metadata)" >&2; exit 1; }
config="$out_dir/$ARCH-smp$SMP$mem_tag.axconfig.toml"
"$tools_bin/axconfig-gen" configs/defconfig.toml "$(dirname "$plat_manifest")/axconfig.toml" \
  -w "arch=\"$ARCH\"" -w "platform=\"$platform\"" -w "plat.max-cpu-num=$SMP" \
  -w "plat.phys-memory-size=$(printf '%#x' "$mem_bytes")" -o "$config.new"
# Replace only on change: a rewritten file would rebuild axconfig and everything above it.
if cmp -s "$config.new" "$config"; then rm "$config.new"; else mv "$config.new" "$config"; fi

# --- build ------------------------------------------------------------------
# Flags found to work with the pinned nightly (see tests/kernel/README.md):
# axio uses the unstable core_io feature; axhal's build script writes the
# linker script next to the final artifacts before the final link.
# KERNEL_TEST_MEM_BYTES: the guest RAM, for the app's all_memory_usable test.
export KERNEL_TEST_MEM_BYTES=$mem_bytes
export AX_CONFIG_PATH=$config AX_LOG=$LOG AX_ARCH=$ARCH AX_PLATFORM=$platform AX_SMP=$SMP AX_MODE=release
export RUSTFLAGS="-Zcrate-attr=feature(core_io) -A unsafe_op_in_unsafe_fn -A unused_features \
-C link-arg=-T$target_dir/$triple/release/linker_$platform.lds -C link-arg=-no-pie -C link-arg=-znostart-stop-gc"
echo "kernel-test: building $name" >&2
t0=$(date +%s)
cargo build --locked --release --target "$triple" --target-dir "$target_dir" "${features[@]}"
t1=$(date +%s)
elf="$target_dir/$triple/release/alloc-kernel-test"
case $ARCH in
  x86_64) image=$elf ;; # multiboot ELF
  *)
    image="$out_dir/$name.bin"
    objcopy="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy"
    "$objcopy" "$elf" --strip-all -O binary "$image"
    ;;
esac

# --- boot -------------------------------------------------------------------
case $ARCH in
  riscv64) qemu=(qemu-system-riscv64 -machine virt -bios default) ;;
  aarch64) qemu=(qemu-system-aarch64 -cpu cortex-a72 -machine virt) ;;
  x86_64) qemu=(qemu-system-x86_64 -machine q35) ;;
esac
qemu[0]="$qemu_bin/${qemu[0]}"
qemu+=(-m "$MEM" -smp "$SMP" -kernel "$image" -nographic -no-reboot)
log="$out_dir/$name.log"
echo "kernel-test: booting $name: ${qemu[*]}" >&2
if [[ $MODE == run ]]; then
  exec "${qemu[@]}"
fi
set +e
timeout --foreground "$TIMEOUT" "${qemu[@]}" </dev/null >"$log.raw" 2>&1
status=$?
set -e
t2=$(date +%s)
# Strip ANSI colours and CRs so the expect regexes see plain text.
sed -e 's/\x1b\[[0-9;]*m//g' -e 's/\r//g' "$log.raw" >"$log"
rm -f "$log.raw"
tail -n 25 "$log"

fail() { echo "kernel-test: $name FAILED: $*" >&2; echo "kernel-test: full output in $log" >&2; exit 1; }
[[ $status != 124 ]] || fail "timed out after ${TIMEOUT}s"
[[ $status == 0 ]] || fail "QEMU exited with status $status"

level_rank() {
  case $1 in off) echo 0 ;; error) echo 1 ;; warn) echo 2 ;; info) echo 3 ;; debug) echo 4 ;; trace) echo 5 ;; *) echo 3 ;; esac
}
[[ -f $expect ]] || fail "no expect file $expect"
line_no=0
while IFS= read -r pattern || [[ -n $pattern ]]; do
  [[ -z $pattern || $pattern == '#'* ]] && continue
  # `[LEVEL] regex`: only checked when the kernel logs at LEVEL or finer.
  if [[ $pattern =~ ^\[(error|warn|info|debug|trace)\]\ (.*)$ ]]; then
    [[ $(level_rank "$LOG") -ge $(level_rank "${BASH_REMATCH[1]}") ]] || continue
    pattern=${BASH_REMATCH[2]}
  fi
  pattern=${pattern//\{SMP\}/$SMP}
  hit=$(tail -n +"$((line_no + 1))" "$log" | grep -m1 -n -E -a -- "$pattern" | cut -d: -f1) || true
  [[ -n $hit ]] || fail "expected pattern not found (in order): $pattern"
  line_no=$((line_no + hit))
done <"$expect"

grep -q -a -E ' \.\.\. FAILED$' "$log" && fail "$(grep -a -E ' \.\.\. FAILED$' "$log" | head -5)"
summary=$(grep -a -x -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1) || true
[[ -n $summary ]] || fail "no 'N passed, M failed' line"
[[ $summary =~ ^([0-9]+)\ passed,\ 0\ failed$ && ${BASH_REMATCH[1]} -gt 0 ]] || fail "summary: $summary"

echo "kernel-test: $name ok ($summary; build $((t1 - t0))s, boot $((t2 - t1))s)" >&2
