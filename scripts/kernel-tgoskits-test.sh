#!/usr/bin/env bash
# Build the in-kernel allocator test app of the tgoskits ArceOS line
# (tests/kernel-tgoskits: ax-std 0.7.5, ax-alloc 0.9) for one architecture,
# boot it on QEMU and check its output.
#
# Usage: scripts/kernel-tgoskits-test.sh ARCH [ALLOC] [SMP] [LOG]
#   ARCH   riscv64 | aarch64 | x86_64
#   ALLOC  buddy-slab (this crate, through ax-alloc/ patched in; the default)
#          | tlsf (ax-alloc/'s stock TLSF backend)
#          | seed | seed-tlsf (the published ax-alloc's own backends,
#          unpatched; the suite is not expected to pass there: the published
#          backends panic in alloc_pages_at)
#   SMP    number of CPUs (default 4); also the kernel's CPU capacity (the
#          line's SMP build setting)
#   LOG    kernel log level baked in at build time: off|error|warn|info|debug|trace
#          (default info; the expect files rely on info-level boot lines)
# Environment:
#   MEM        guest memory (default 128M), QEMU's -m; riscv64 and aarch64
#              find it in the FDT, x86_64 in the UEFI memory map. Plain
#              numbers are MiB; suffixes M and G.
#   TIMEOUT    seconds before QEMU is killed and the run fails (default 180)
#   MODE=run   boot and show the output only, no checks (`make tgoskits-run`)
#   EXPECT     expect file to use instead of tests/kernel-tgoskits/expect/ALLOC.out
# Checks, all of which must hold:
#   1. QEMU exits 0 through the platform's shutdown (not the timeout);
#   2. every line of the expect file, a regex, matches a line of the
#      output, in order; `{SMP}` is replaced by the CPU count and `{SLOTS}`
#      by SMP + 1 (the core's CPU slots plus the shared one); a line
#      `[LEVEL] regex` is only checked when LOG is LEVEL or finer; a line
#      `!regex` must match no line of the output at all;
#   3. the output has the closing line `N passed, 0 failed` with N > 0, and
#      no test line ends in FAILED.
# The output is kept in tests/kernel-tgoskits/target/kernel-test/ARCH-ALLOC-smpSMP.log.
# Build and boot steps live in scripts/kernel-tgoskits-lib.sh (shared with
# scripts/kernel-tgoskits-bench.sh).
set -euo pipefail

usage() { sed -n '2,/^# Build and boot steps/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $# -le 4 ]] || usage
ARCH=$1
ALLOC=${2:-buddy-slab}
SMP=${3:-4}
LOG=${4:-info}
MEM=${MEM:-128M}
TIMEOUT=${TIMEOUT:-180}
MODE=${MODE:-test}

KERNEL_TAG=kernel-tgoskits-test
# shellcheck source=scripts/kernel-tgoskits-lib.sh
source "$(dirname "$0")/kernel-tgoskits-lib.sh"
tgo_setup "$ARCH" "$ALLOC" "$SMP"
expect=${EXPECT:-$repo/tests/kernel-tgoskits/expect/$ALLOC.out}
name="$ARCH-$ALLOC-smp$SMP$KERNEL_MEM_TAG"

t0=$(date +%s)
tgo_build "$name" "$LOG"
t1=$(date +%s)

# --- boot -------------------------------------------------------------------
tgo_qemu "$image"
log="$out_dir/$name.log"
echo "$KERNEL_TAG: booting $name: ${qemu[*]}" >&2
if [[ $MODE == run ]]; then
  exec "${qemu[@]}"
fi
tgo_boot "$log" "$TIMEOUT"
t2=$(date +%s)
sed -n '/^alloc-kernel-test:/,$p' "$log" | tail -n 30

fail() { echo "$KERNEL_TAG: $name FAILED: $*" >&2; echo "$KERNEL_TAG: full output in $log" >&2; exit 1; }
[[ $status != 124 ]] || fail "timed out after ${TIMEOUT}s"
[[ $status == 0 ]] || fail "QEMU exited with status $status"

level_rank() {
  case $1 in off) echo 0 ;; error) echo 1 ;; warn) echo 2 ;; info) echo 3 ;; debug) echo 4 ;; trace) echo 5 ;; *) echo 3 ;; esac
}
[[ -f $expect ]] || fail "no expect file $expect"
line_no=0
while IFS= read -r pattern || [[ -n $pattern ]]; do
  [[ -z $pattern || $pattern == '#'* ]] && continue
  pattern=${pattern//\{SMP\}/$SMP}
  pattern=${pattern//\{SLOTS\}/$((SMP + 1))}
  # `!regex`: nowhere in the output.
  if [[ $pattern == '!'* ]]; then
    bad=$(grep -m1 -E -a -- "${pattern#!}" "$log") || true
    [[ -z $bad ]] || fail "forbidden pattern ${pattern#!} found: $bad"
    continue
  fi
  # `[LEVEL] regex`: only checked when the kernel logs at LEVEL or finer.
  if [[ $pattern =~ ^\[(error|warn|info|debug|trace)\]\ (.*)$ ]]; then
    [[ $(level_rank "$LOG") -ge $(level_rank "${BASH_REMATCH[1]}") ]] || continue
    pattern=${BASH_REMATCH[2]}
  fi
  hit=$(tail -n +"$((line_no + 1))" "$log" | grep -m1 -n -E -a -- "$pattern" | cut -d: -f1) || true
  [[ -n $hit ]] || fail "expected pattern not found (in order): $pattern"
  line_no=$((line_no + hit))
done <"$expect"

grep -q -a -E ' \.\.\. FAILED$' "$log" && fail "$(grep -a -E -A1 ' \.\.\. FAILED$' "$log" | head -10)"
summary=$(grep -a -x -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -1) || true
[[ -n $summary ]] || fail "no 'N passed, M failed' line"
[[ $summary =~ ^([0-9]+)\ passed,\ 0\ failed$ && ${BASH_REMATCH[1]} -gt 0 ]] || fail "summary: $summary"

echo "$KERNEL_TAG: $name ok ($summary; build $((t1 - t0))s, boot $((t2 - t1))s)" >&2
