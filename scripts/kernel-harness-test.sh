#!/usr/bin/env bash
# The kernel test harness's own test, on canned outputs (no build, no QEMU,
# about two seconds): every check of scripts/kernel-test.sh
# (kernel_check in scripts/kernel-lib.sh) must fail where it should — a
# wrong or missing expect line, a `not ok`, a missing or misnumbered KTAP
# result, a summary that disagrees, a panic, a bad exit status, a timeout —
# and pass a good output; and scripts/kernel-apps.sh must read test_cmd
# lines as app_test.sh does (ARCH from the run, `${ARCH}` in expect names)
# and refuse what it cannot build.
#
# Usage: scripts/kernel-harness-test.sh   (exit 0: every case behaved)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
KERNEL_TAG=kernel-harness-test
# shellcheck source=scripts/kernel-lib.sh
source "$repo/scripts/kernel-lib.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cases=0 bad=0

# expect_rc NAME WANT_RC LOG EXPECT [STATUS [WANT_MSG]]: kernel_check must
# return WANT_RC, and its report hold WANT_MSG (an ERE) if given.
expect_rc() {
  local name=$1 want=$2 log=$3 expect=$4 status=${5:-0} msg=${6:-} rc=0 out
  out=$(kernel_check "$log" "$expect" "$status" 120) || rc=$?
  cases=$((cases + 1))
  if [[ $rc != "$want" ]] || { [[ -n $msg ]] && ! grep -q -E -- "$msg" <<<"$out"; }; then
    bad=$((bad + 1))
    echo "kernel-harness-test: FAILED: $name: rc $rc, wanted $want${msg:+ and /$msg/}; report:" >&2
    sed 's/^/    /' <<<"$out" >&2
  fi
}

# A passing suite output (KTAP among kernel log lines, colours stripped).
cat >"$tmp/good.log" <<'EOF'
smp = 4
[  0.14 axruntime:291]   use buddy-slab allocator.
[  0.15 axalloc:438] initialize global allocator at: [0xffffffc08034f000, 0xffffffc088000000)
alloc-kernel-test: 4 CPUs, buddy-slab allocator
# baseline: UsageStats { RustHeap: 1 }
KTAP version 1
1..3
ok 1 alloc_on_every_cpu
[  1.20 1:9 axtask::run_queue:413] task block: Task(9, "gc")
ok 2 cross_cpu_free
# 16 MiB of 128 MiB RAM as 2 MiB runs
ok 3 usage_back_to_baseline
3 passed, 0 failed
[  4.43 axplat_riscv64_qemu_virt::power:25] Shutting down...
EOF
# app_test.sh semantics: any order, basic regexes (\+ repeats, + and ( are
# literal), leading blanks kept, an empty line matches anything.
cat >"$tmp/good.out" <<'EOF'
Shutting down\.\.\.
^3 passed, 0 failed$
^smp = 4$
  use buddy-slab allocator\.
initialize global allocator at: \[0x[0-9a-f]\+, 0x[0-9a-f]\+)

^KTAP version 1$
^ok 2 cross_cpu_free$
EOF
expect_rc "good output" 0 "$tmp/good.log" "$tmp/good.out"
expect_rc "exit status 1" 1 "$tmp/good.log" "$tmp/good.out" 1 'QEMU exited with status 1'
expect_rc "timeout" 4 "$tmp/good.log" "$tmp/good.out" 124 'timed out'
expect_rc "no expect file" 1 "$tmp/good.log" "$tmp/missing.out" 0 'not found'

wrong() { # NAME LINE: the good expect file plus LINE must fail
  printf '%s\n' "$2" >"$tmp/wrong.out"
  cat "$tmp/good.out" >>"$tmp/wrong.out"
  expect_rc "expect line: $1" 1 "$tmp/good.log" "$tmp/wrong.out" 0 'not matched'
}
wrong "absent text" '^ok 4 oom_is_an_error$'
wrong "other backend" '  use TLSF allocator\.'
wrong "ERE syntax is literal in BRE" '^smp = [0-9]+$'
wrong "leading blanks are kept" '    use buddy-slab allocator\.'
wrong "anchors" '^use buddy-slab allocator\.$'
printf '%s' '^ok 9 no_newline_at_end$' >"$tmp/nonl.out"
expect_rc "expect line without a newline is checked" 1 "$tmp/good.log" "$tmp/nonl.out" 0 'no_newline_at_end'

# Mutations of the good output, checked against an expect file that does
# not see them: the KTAP and panic checks alone must catch each.
printf 'Shutting down\\.\\.\\.\n' >"$tmp/min.out"
mutate() { # NAME SED WANT_MSG: the good output edited by SED must fail so
  sed "$2" "$tmp/good.log" >"$tmp/mut.log"
  expect_rc "$1" 1 "$tmp/mut.log" "$tmp/min.out" 0 "$3"
}
expect_rc "good output, minimal expect file" 0 "$tmp/good.log" "$tmp/min.out"
mutate "KTAP not ok" 's/^ok 1 alloc_on_every_cpu$/# alloc_on_every_cpu: lost a block\nnot ok 1 alloc_on_every_cpu/' 'KTAP: failed: not ok 1'
mutate "KTAP result missing" '/^ok 3 /d' 'KTAP: plan 1..3 but 2 result lines'
mutate "KTAP results out of order" 's/^ok 1 /ok 4 /' 'KTAP: result 4 out of order'
mutate "KTAP plan missing" '/^1\.\.3$/d' 'KTAP: result before the plan'
mutate "KTAP plan larger than the results" 's/^1\.\.3$/1..4/' 'KTAP: plan 1..4 but 3'
mutate "summary disagrees" 's/^3 passed, 0 failed$/2 passed, 1 failed/' 'KTAP: summary'
mutate "second KTAP version line (reboot)" 's/^ok 3 \(.*\)$/ok 3 \1\nKTAP version 1/' 'KTAP: KTAP version line printed 2 times'
mutate "panic" 's/^ok 3 \(.*\)$/ok 3 \1\npanicked at src\/main.rs:10:5:/' '^panic: panicked at'

# An app without KTAP (memtest-like): only the expect file, status, panics.
printf 'Running memory tests...\ntest_vec() OK!\nMemory tests run OK!\nShutting down...\n' >"$tmp/app.log"
printf '^test_vec() OK!$\n^Memory tests run OK!$\n' >"$tmp/app.out"
expect_rc "app without KTAP" 0 "$tmp/app.log" "$tmp/app.out"
sed 's/^Memory tests run OK!$/panicked at src\/main.rs:1:1:/' "$tmp/app.log" >"$tmp/app-panic.log"
expect_rc "app that panicked" 1 "$tmp/app-panic.log" "$tmp/app.out" 0 '^panic: '

# --- scripts/kernel-apps.sh reads test_cmd as app_test.sh does -------------
list_ok() { # NAME WANT_RUNS ARGS...: --list must succeed with WANT_RUNS runs
  local name=$1 want=$2 out rc=0
  shift 2
  out=$("$repo/scripts/kernel-apps.sh" --list "$@" 2>&1) || rc=$?
  cases=$((cases + 1))
  local runs
  runs=$(sed -n 's/^kernel-apps: \([0-9]*\) runs.*/\1/p' <<<"$out")
  if [[ $rc != 0 || $runs != "$want" ]]; then
    bad=$((bad + 1))
    echo "kernel-harness-test: FAILED: runner: $name: rc $rc, $runs runs, wanted $want:" >&2
    sed 's/^/    /' <<<"$out" >&2
  fi
  LIST_OUT=$out
}
list_refused() { # NAME TEST_CMD: the runner must refuse the line (exit 2)
  mkdir -p "$tmp/refuse"
  printf '%s\n' "$2" >"$tmp/refuse/test_cmd"
  local rc=0
  "$repo/scripts/kernel-apps.sh" --list "$tmp/refuse" >/dev/null 2>&1 || rc=$?
  cases=$((cases + 1))
  [[ $rc == 2 ]] || { bad=$((bad + 1)); echo "kernel-harness-test: FAILED: runner accepted $1 (rc $rc)" >&2; }
}
mkdir -p "$tmp/app"
cat >"$tmp/app/test_cmd" <<'EOF'
test_one "SMP=4 LOG=info" "expect_info_smp4_fifo.out"
test_one "SMP=4 LOG=info ALLOC=buddy-slab ARCH=aarch64" "expect_info_smp4_fifo_buddy-slab.out"
test_one "LOG=debug FEATURES=sched-rr" "expect_debug_${ARCH}.out"
EOF
list_ok "three lines, two arches, two backends" 10 --arch "riscv64 x86_64" "$tmp/app"
cases=$((cases + 1))
grep -q "x86_64 *buddy-slab *SMP=4 LOG=info .*expect_info_smp4_fifo_buddy-slab.out" <<<"$LIST_OUT" &&
  grep -q "x86_64 *tlsf *SMP=1 LOG=debug FEATURES=sched-rr .*expect_debug_x86_64.out" <<<"$LIST_OUT" &&
  ! grep -q "aarch64" <<<"$LIST_OUT" ||
  { bad=$((bad + 1)); echo "kernel-harness-test: FAILED: runner: ARCH, ALLOC or \${ARCH} misread:" >&2; sed 's/^/    /' <<<"$LIST_OUT" >&2; }
list_ok "--only FEATURES=sched-rr" 2 --arch x86_64 --only FEATURES=sched-rr "$tmp/app"
list_ok "--skip FEATURES=sched-rr --alloc tlsf" 1 --arch x86_64 --alloc tlsf --skip FEATURES=sched-rr "$tmp/app"
list_ok "--only ALLOC=buddy-slab SMP=4" 2 --arch x86_64 --only "ALLOC=buddy-slab SMP=4" "$tmp/app"
list_refused "a device (NET=y)" 'test_one "LOG=info NET=y" "expect_info.out"'
list_refused "an unknown variable" 'test_one "LOG=info FOO=1" "expect_info.out"'
list_refused "a bad LOG" 'test_one "LOG=loud" "expect_info.out"'
list_refused "a debug build" 'test_one "MODE=debug" "expect_info.out"'
list_refused "an unknown backend" 'test_one "ALLOC=talc" "expect_info.out"'

if [[ $bad -gt 0 ]]; then
  echo "kernel-harness-test: $bad of $cases cases FAILED" >&2
  exit 1
fi
echo "kernel-harness-test: all $cases cases behaved (each failing check fails, good outputs pass)"
