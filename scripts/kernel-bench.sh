#!/usr/bin/env bash
# In-kernel allocator benchmark: build the tests/kernel app with its `bench`
# feature for each backend (same source, cargo profile `kbench`: release
# without debug assertions), boot each RUNS times on QEMU (the backends
# interleaved), take the median per workload and CPU count, and print a
# table with both backends and the ratio buddy-slab / tlsf.
#
# Usage: scripts/kernel-bench.sh ARCH [RUNS]
#   ARCH   riscv64 | aarch64 | x86_64
#   RUNS   boots per backend (default 3)
# Environment:
#   SMP      number of CPUs (default 4)
#   MEM      guest memory (default 128M)
#   ALLOCS   backends (default "buddy-slab tlsf"; the ratio needs both)
#   TIMEOUT  seconds per boot before QEMU is killed (default 600)
#   OUT      results file (default tests/kernel/results/bench-ARCH.md;
#            OUT=- writes none)
#   SMOKE=1  build with `bench-smoke` (iteration counts / 100) in the
#            release profile of the tests, boot buddy-slab once, check that
#            it completes; no results file
# Each boot must exit 0 and print `bench done` (the kernel checks every
# block's tags and prints `bench FAILED: ...` on a corrupted one). Boot logs
# are kept in tests/kernel/target/kernel-test/bench-ARCH-ALLOC-smpSMP-runN.log.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
ARCH=$1
RUNS=${2:-3}
SMP=${SMP:-4}
MEM=${MEM:-128M}
TIMEOUT=${TIMEOUT:-600}
SMOKE=${SMOKE:-0}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "kernel-bench: bad RUNS '$RUNS'" >&2; exit 2; }
if [[ $SMOKE == 1 ]]; then
  ALLOCS=${ALLOCS:-buddy-slab}
  RUNS=1
  KERNEL_FEATURES=bench-smoke
  # The test kernels' profile (debug assertions on): only the app crate is
  # rebuilt after `make kernel-test`, so the smoke costs seconds.
  KERNEL_PROFILE=release
else
  ALLOCS=${ALLOCS:-buddy-slab tlsf}
  KERNEL_FEATURES=bench
  KERNEL_PROFILE=kbench
fi
KERNEL_TAG=kernel-bench
# shellcheck source=scripts/kernel-lib.sh
source "$(dirname "$0")/kernel-lib.sh"
# shellcheck source=scripts/kernel-bench-lib.sh
source "$(dirname "$0")/kernel-bench-lib.sh"
OUT=${OUT:-$(cd "$(dirname "$0")/.." && pwd)/tests/kernel/results/bench-$ARCH.md}
[[ $SMOKE == 1 ]] && OUT=-

# --- build each backend --------------------------------------------------
declare -A img build_s
for alloc in $ALLOCS; do
  kernel_setup "$ARCH" "$alloc" "$SMP"
  name="bench-$ARCH-$alloc-smp$SMP"
  t0=$(date +%s)
  kernel_build "$name" warn
  build_s[$alloc]=$(($(date +%s) - t0))
  # The next backend's build overwrites the ELF: keep a copy to boot.
  img[$alloc]="$out_dir/$name.img"
  cp "$image" "${img[$alloc]}"
done

# --- boot: RUNS rounds, the backends interleaved --------------------------
data="$out_dir/bench-$ARCH-smp$SMP.data"
: >"$data"
declare -A boot_s
for ((run = 1; run <= RUNS; run++)); do
  for alloc in $ALLOCS; do
    name="bench-$ARCH-$alloc-smp$SMP"
    log="$out_dir/$name-run$run.log"
    kernel_qemu "${img[$alloc]}"
    echo "kernel-bench: run $run/$RUNS: booting $name: ${qemu[*]}" >&2
    t0=$(date +%s)
    kernel_boot "$log" "$TIMEOUT"
    boot_s[$alloc]=$((${boot_s[$alloc]:-0} + $(date +%s) - t0))
    fail() { echo "kernel-bench: $name run $run FAILED: $*" >&2; echo "kernel-bench: full output in $log" >&2; exit 1; }
    bench_collect "$log" "$status" "$alloc" "$data"
  done
done

for alloc in $ALLOCS; do
  echo "kernel-bench: $ARCH $alloc: build ${build_s[$alloc]}s, $RUNS boots ${boot_s[$alloc]}s" >&2
done
if [[ $SMOKE == 1 ]]; then
  echo "kernel-bench: $ARCH smoke ok ($ALLOCS)" >&2
  exit 0
fi

# --- table ----------------------------------------------------------------
qemu_version=$("$qemu_bin/qemu-system-$ARCH" --version | head -1 | sed 's/^QEMU emulator version //')
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain -- src axalloc tests/kernel/src tests/kernel-common 2>/dev/null | head -1)
set -- $ALLOCS
table=$(
  echo "| workload | CPUs | $1 ns/pair (min–max) | ${2:-} ns/pair (min–max) | ratio $1 / ${2:-} |"
  echo "|---|---|---|---|---|"
  while read -r wl cpus; do
    read -r m1 lo1 hi1 < <(awk -v a="$1" -v w="$wl" -v c="$cpus" '$1 == a && $2 == w && $3 == c { print $4 }' "$data" | bench_stats)
    cell2="" ratio=""
    if [[ -n ${2:-} ]]; then
      read -r m2 lo2 hi2 < <(awk -v a="$2" -v w="$wl" -v c="$cpus" '$1 == a && $2 == w && $3 == c { print $4 }' "$data" | bench_stats)
      cell2="$m2 ($lo2–$hi2)"
      ratio=$(awk -v x="$m1" -v y="$m2" 'BEGIN { if (y > 0) printf "%.2f", x / y; else print "-" }')
    fi
    echo "| $(bench_describe "$wl") | $cpus | $m1 ($lo1–$hi1) | $cell2 | $ratio |"
  done < <(awk '{ print $2, $3 }' "$data" | sort -u -k1,1 -k2,2n)
)
header="ARCH=$ARCH, SMP=$SMP, MEM=$MEM, median of $RUNS boots per backend (min–max in brackets), \
ns per alloc+free pair per CPU; QEMU $qemu_version (TCG, no KVM) on $(nproc) shared host cores; \
commit $commit${dirty:+ (uncommitted changes)}, $(date -u +%Y-%m-%d)."
echo
echo "$header"
echo
echo "$table"
if [[ $OUT != - ]]; then
  mkdir -p "$(dirname "$OUT")"
  {
    echo "# In-kernel benchmark: $ARCH"
    echo
    echo "Made by \`scripts/kernel-bench.sh $ARCH $RUNS\` (\`make bench-kernel ARCH=$ARCH\`)."
    echo "$header"
    echo
    echo "$table"
  } >"$OUT"
  echo "kernel-bench: written to $OUT" >&2
fi
