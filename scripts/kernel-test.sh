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
# Build and boot steps live in scripts/kernel-lib.sh (shared with
# scripts/kernel-bench.sh).
set -euo pipefail

usage() { sed -n '2,/^# Build and boot steps/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $# -le 4 ]] || usage
ARCH=$1
ALLOC=${2:-tlsf}
SMP=${3:-4}
LOG=${4:-info}
MEM=${MEM:-128M}
TIMEOUT=${TIMEOUT:-120}
MODE=${MODE:-test}

KERNEL_TAG=kernel-test
# shellcheck source=scripts/kernel-lib.sh
source "$(dirname "$0")/kernel-lib.sh"
kernel_setup "$ARCH" "$ALLOC" "$SMP"
expect=${EXPECT:-$app/expect/$ALLOC.out}
name="$ARCH-$ALLOC-smp$SMP$KERNEL_MEM_TAG"

t0=$(date +%s)
kernel_build "$name" "$LOG"
t1=$(date +%s)

# --- boot -------------------------------------------------------------------
kernel_qemu "$image"
log="$out_dir/$name.log"
echo "kernel-test: booting $name: ${qemu[*]}" >&2
if [[ $MODE == run ]]; then
  exec "${qemu[@]}"
fi
kernel_boot "$log" "$TIMEOUT"
t2=$(date +%s)
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
