#!/usr/bin/env bash
# Build one ArceOS app of the tests/kernel workspace (by default the
# in-kernel allocator suite, tests/kernel) for one architecture, boot it on
# QEMU and check its output. One configuration: scripts/kernel-apps.sh runs
# every line of every app's test_cmd through this script.
#
# Usage: scripts/kernel-test.sh ARCH [ALLOC] [SMP] [LOG]
#   ARCH   riscv64 | aarch64 | x86_64
#   ALLOC  tlsf (stock ArceOS: TLSF bytes + bitmap pages, the default)
#          | buddy-slab (this crate, through axalloc's `buddy-slab` feature)
#   SMP    number of CPUs (default 4); also the kernel's plat.max-cpu-num
#   LOG    kernel log level baked in at build time: off|error|warn|info|debug|trace
#          (default info)
# Environment:
#   APP        the app's directory (default tests/kernel; the other apps are
#              tests/kernel/apps/NAME)
#   FEATURES   ArceOS features, as ArceOS's `make FEATURES=`: features of
#              axstd, separated by commas or blanks; e.g. sched-rr (the
#              round-robin scheduler: axtask's `preempt`)
#   APP_FEATURES  the app's own cargo features
#   MEM        guest memory (default 128M): QEMU's -m and, on riscv64 and
#              aarch64 (which take RAM from the config, not from firmware),
#              the kernel's plat.phys-memory-size. Plain numbers are MiB;
#              suffixes M and G.
#   TIMEOUT    seconds before QEMU is killed and the run fails (default 120)
#   MODE=run   boot and show the output only, no checks (used by `make kernel-run`)
#   EXPECT     expect file (default APP/expect_LOG_smpSMP_SCHED_ALLOC.out if
#              it exists, else APP/expect_LOG_smpSMP_SCHED.out; SCHED is rr,
#              cfs or fifo after the scheduler FEATURES select)
#   EXTRA_CONFIG       a file axconfig-gen merges into the kernel's config,
#                      e.g. with the allocator's knob tables (configs/default.toml)
#   BUDDY_SLAB_CONFIG  a file of the allocator's knobs to override
#
# Checks, all of which must hold:
#   1. QEMU exits 0 through the platform's shutdown (not the timeout);
#   2. every line of EXPECT is found in the output, in any order: arceos-apps'
#      scripts/app_test.sh semantics (each line a `grep` basic regex; ANSI
#      colours and CRs are stripped from the output first, so `^` and `$`
#      anchor at the printed line);
#   3. no line holds `panicked at` (an ArceOS panic, which shuts down with
#      QEMU exit status 0);
#   4. if the output holds `KTAP version 1`: the plan `1..N`, result lines
#      numbered 1..N, none `not ok`, and the summary `N passed, 0 failed`
#      (if printed) agrees with the plan.
# Exit status: 0 passed, 1 a check failed, 2 bad usage, 3 the build failed,
# 4 timed out.
# The output is kept in tests/kernel/target/kernel-test/NAME.log, NAME =
# APPDIR-ARCH-ALLOC-smpSMP[-memMEM][-FEATURES], APPDIR the app directory's
# name (`kernel` for the suite).
# Build and boot steps live in scripts/kernel-lib.sh (shared with
# scripts/kernel-apps.sh and scripts/kernel-bench.sh).
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
case $LOG in off | error | warn | info | debug | trace) ;; *) echo "kernel-test: bad LOG '$LOG'" >&2; usage ;; esac

# ArceOS's FEATURES name axstd features (its Makefile prefixes them with
# `axstd/` for Rust apps); APP_FEATURES are the app's own.
ax_features=$(tr ',' ' ' <<<"${FEATURES:-}" | xargs)
KERNEL_FEATURES=$(for f in $ax_features; do printf 'axstd/%s ' "$f"; done)$(tr ',' ' ' <<<"${APP_FEATURES:-}" | xargs)
KERNEL_FEATURES=$(xargs <<<"$KERNEL_FEATURES")
KERNEL_APP=${APP:-}
KERNEL_TAG=kernel-test
# shellcheck source=scripts/kernel-lib.sh
source "$(dirname "$0")/kernel-lib.sh"
kernel_setup "$ARCH" "$ALLOC" "$SMP"
feature_tag=$(tr ' ' '+' <<<"$ax_features${APP_FEATURES:+ $(tr ',' ' ' <<<"$APP_FEATURES" | xargs)}")
name="$app_name-$ARCH-$ALLOC-smp$SMP$KERNEL_MEM_TAG${feature_tag:+-$feature_tag}"
# arceos-apps' naming: expect_LOG_smpN_SCHED.out, SCHED the scheduler
# (fifo unless FEATURES selects sched-rr or sched-cfs); a backend suffix
# where the lines differ per backend.
sched=fifo
case " $ax_features " in *" sched-rr "*) sched=rr ;; *" sched-cfs "*) sched=cfs ;; esac
if [[ -n ${EXPECT:-} ]]; then
  expect=$EXPECT
elif [[ -f $app/expect_${LOG}_smp${SMP}_${sched}_$ALLOC.out ]]; then
  expect=$app/expect_${LOG}_smp${SMP}_${sched}_$ALLOC.out
else
  expect=$app/expect_${LOG}_smp${SMP}_$sched.out
fi

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
times="build $((t1 - t0))s, boot $((t2 - t1))s"

# --- checks -----------------------------------------------------------------
check_rc=0
report=$(kernel_check "$log" "$expect" "$status" "$TIMEOUT") || check_rc=$?
if [[ $check_rc != 0 ]]; then
  tail -n 25 "$log"
  echo "kernel-test: $name FAILED ($times), expect file $expect:" >&2
  sed 's/^/kernel-test:   /' <<<"$report" >&2
  echo "kernel-test: full output in $log" >&2
  exit "$check_rc"
fi
summary=$(grep -a -x -E '[0-9]+ passed, 0 failed' "$log" | tail -1 || true)
echo "kernel-test: $name ok (${summary:+$summary; }$(grep -c '' "$expect") expect lines; $times)" >&2
