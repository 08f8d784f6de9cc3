#!/usr/bin/env bash
# In-kernel allocator benchmark on the tgoskits ArceOS line: build the
# tests/kernel-tgoskits app with its `bench` feature for each heap (same
# source, cargo profile `kbench`: release without debug assertions), boot
# each RUNS times on QEMU (the heaps interleaved), take the median per
# workload and CPU count, and print a table with every heap and the ratio
# of the first heap to each of the others.
#
# Usage: scripts/kernel-tgoskits-bench.sh ARCH [RUNS]
#   ARCH   riscv64 | aarch64 | x86_64
#   RUNS   boots per heap (default 3)
# Environment:
#   SMP      number of CPUs (default 4)
#   MEM      guest memory (default 128M)
#   ALLOCS   heaps, first is the one compared (default "buddy-slab tlsf seed":
#            this project's, ax-alloc/'s stock TLSF, the published ax-alloc's
#            own buddy-slab backend; also seed-tlsf, the published TLSF; see
#            scripts/kernel-tgoskits-lib.sh)
#   TIMEOUT  seconds per boot before QEMU is killed (default 600)
#   OUT      results file (default tests/kernel-tgoskits/results/bench-ARCH.md;
#            OUT=- writes none)
#   SMOKE=1  build with `bench-smoke` (iteration counts / 100) in the
#            release profile of the tests, boot buddy-slab once, check that
#            it completes; no results file
# Each boot must exit 0 and print `bench done` (the kernel checks every
# block's tags and prints `bench FAILED: ...` on a corrupted one). Boot logs
# are kept in tests/kernel-tgoskits/target/kernel-test/bench-ARCH-ALLOC-smpSMP-runN.log.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
ARCH=$1
RUNS=${2:-3}
SMP=${SMP:-4}
MEM=${MEM:-128M}
TIMEOUT=${TIMEOUT:-600}
SMOKE=${SMOKE:-0}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "kernel-tgoskits-bench: bad RUNS '$RUNS'" >&2; exit 2; }
if [[ $SMOKE == 1 ]]; then
  ALLOCS=${ALLOCS:-buddy-slab}
  RUNS=1
  KERNEL_FEATURES=bench-smoke
  # The test kernels' profile: right after the tests only the app crate is
  # rebuilt, so the smoke costs seconds.
  KERNEL_PROFILE=release
else
  ALLOCS=${ALLOCS:-buddy-slab tlsf seed}
  KERNEL_FEATURES=bench
  KERNEL_PROFILE=kbench
fi
KERNEL_TAG=kernel-tgoskits-bench
# shellcheck source=scripts/kernel-tgoskits-lib.sh
source "$(dirname "$0")/kernel-tgoskits-lib.sh"
# shellcheck source=scripts/kernel-bench-lib.sh
source "$(dirname "$0")/kernel-bench-lib.sh"
OUT=${OUT:-$repo/tests/kernel-tgoskits/results/bench-$ARCH.md}
[[ $SMOKE == 1 ]] && OUT=-

# --- build each heap ------------------------------------------------------
declare -A img build_s name_of
for alloc in $ALLOCS; do
  tgo_setup "$ARCH" "$alloc" "$SMP"
  name="bench-$ARCH-$alloc-smp$SMP"
  t0=$(date +%s)
  tgo_build "$name" warn
  build_s[$alloc]=$(($(date +%s) - t0))
  img[$alloc]=$image
done

# --- boot: RUNS rounds, the heaps interleaved -----------------------------
data="$out_dir/bench-$ARCH-smp$SMP.data"
: >"$data"
declare -A boot_s
for ((run = 1; run <= RUNS; run++)); do
  for alloc in $ALLOCS; do
    name="bench-$ARCH-$alloc-smp$SMP"
    log="$out_dir/$name-run$run.log"
    tgo_qemu "${img[$alloc]}"
    echo "$KERNEL_TAG: run $run/$RUNS: booting $name: ${qemu[*]}" >&2
    t0=$(date +%s)
    tgo_boot "$log" "$TIMEOUT"
    boot_s[$alloc]=$((${boot_s[$alloc]:-0} + $(date +%s) - t0))
    fail() { echo "$KERNEL_TAG: $name run $run FAILED: $*" >&2; echo "$KERNEL_TAG: full output in $log" >&2; exit 1; }
    bench_collect "$log" "$status" "$alloc" "$data"
    name_of[$alloc]=$(sed -n -E 's/^bench: [0-9]+ CPUs, (.*) allocator, scale.*/\1/p' "$log" | head -1)
  done
done

for alloc in $ALLOCS; do
  echo "$KERNEL_TAG: $ARCH $alloc (${name_of[$alloc]}): build ${build_s[$alloc]}s, $RUNS boots ${boot_s[$alloc]}s" >&2
done
if [[ $SMOKE == 1 ]]; then
  echo "$KERNEL_TAG: $ARCH smoke ok ($ALLOCS)" >&2
  exit 0
fi

# --- table ----------------------------------------------------------------
qemu_version=$("$qemu_bin/qemu-system-$ARCH" --version | head -1 | sed 's/^QEMU emulator version //')
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$repo" status --porcelain -- src ax-alloc tests/kernel-tgoskits/src tests/kernel-common 2>/dev/null | head -1)
read -r -a heaps <<<"$ALLOCS"
first=${heaps[0]}
table=$(
  head="| workload | CPUs |"
  rule="|---|---|"
  for alloc in "${heaps[@]}"; do head+=" $alloc ns/pair (min–max) |"; rule+="---|"; done
  for alloc in "${heaps[@]:1}"; do head+=" $first / $alloc |"; rule+="---|"; done
  echo "$head"
  echo "$rule"
  while read -r wl cpus; do
    row="| $(bench_describe "$wl") | $cpus |"
    declare -A med=()
    for alloc in "${heaps[@]}"; do
      read -r m lo hi < <(awk -v a="$alloc" -v w="$wl" -v c="$cpus" '$1 == a && $2 == w && $3 == c { print $4 }' "$data" | bench_stats)
      med[$alloc]=$m
      row+=" $m ($lo–$hi) |"
    done
    for alloc in "${heaps[@]:1}"; do
      row+=" $(awk -v x="${med[$first]}" -v y="${med[$alloc]}" 'BEGIN { if (y > 0) printf "%.2f", x / y; else print "-" }') |"
    done
    echo "$row"
  done < <(awk '{ print $2, $3 }' "$data" | sort -u -k1,1 -k2,2n)
)
names=$(for alloc in "${heaps[@]}"; do printf '%s = %s; ' "$alloc" "${name_of[$alloc]}"; done)
header="ARCH=$ARCH, SMP=$SMP, MEM=$MEM, median of $RUNS boots per heap (min–max in brackets), \
ns per alloc+free pair per CPU; heaps (the name each kernel reports): ${names%; }; \
QEMU $qemu_version (TCG, no KVM) on $(nproc) shared host cores; \
commit $commit${dirty:+ (uncommitted changes)}, $(date -u +%Y-%m-%d)."
echo
echo "$header"
echo
echo "$table"
if [[ $OUT != - ]]; then
  mkdir -p "$(dirname "$OUT")"
  {
    echo "# In-kernel benchmark (tgoskits line): $ARCH"
    echo
    echo "Made by \`scripts/kernel-tgoskits-bench.sh $ARCH $RUNS\` (\`make bench-kernel-tgoskits ARCH=$ARCH\`)."
    echo "$header"
    echo
    echo "$table"
  } >"$OUT"
  echo "$KERNEL_TAG: written to $OUT" >&2
fi
