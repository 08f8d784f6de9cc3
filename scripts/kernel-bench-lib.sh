#!/usr/bin/env bash
# Steps of the in-kernel benchmark that both ArceOS lines' bench scripts
# share (scripts/kernel-bench.sh, scripts/kernel-tgoskits-bench.sh): the
# kernel is the same source (tests/kernel-common/bench.rs), so its output
# is checked and summed up the same way. Sourced, not run.
#
#   bench_collect LOG STATUS ALLOC DATA
#       shows LOG's `bench` lines, checks the boot (QEMU exit STATUS, no
#       `bench FAILED`, a `bench done`) through the caller's `fail MESSAGE`,
#       and appends `ALLOC workload cpus ns_per_pair` lines to DATA
#   bench_stats     numbers on stdin -> "median min max" (`- - -` for none)
#   bench_describe  workload letter -> its row label

bench_collect() {
  local log=$1 status=$2 alloc=$3 data=$4
  grep -a '^bench' "$log" >&2 || true
  [[ $status != 124 ]] || fail "timed out after ${TIMEOUT}s"
  [[ $status == 0 ]] || fail "QEMU exited with status $status"
  ! grep -q -a '^bench FAILED' "$log" || fail "$(grep -a '^bench FAILED' "$log")"
  grep -q -a -x 'bench done' "$log" || fail "no 'bench done' line"
  sed -n -E "s/^bench ([a-e]) cpus=([0-9]+) ns_per_pair=([0-9.]+).*/$alloc \1 \2 \3/p" "$log" >>"$data"
}

# Median of a list of numbers (mean of the middle two for an even count),
# with the smallest and largest: "median min max".
bench_stats() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- - -"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.1f %.1f %.1f\n", m, v[1], v[NR] }'
}

bench_describe() {
  case $1 in
    a) echo "a: 64 B alloc then free" ;;
    b) echo "b: random 8..2048 B, 10k live, random replacement" ;;
    c) echo "c: 4 KiB pages (page API), 2048 live, shuffled free" ;;
    d) echo "d: 64 B, batches handed CPU 0 → CPU 1, every free remote" ;;
    e) echo "e: as d, random 8..2048 B" ;;
  esac
}
