#!/usr/bin/env bash
# Run ArceOS apps the way arceos-apps' scripts/app_test.sh does: for each
# architecture and each app directory, source the app's `test_cmd`, whose
# lines are `test_one "MAKE_ARGS" expect_FILE.out`; each line is one kernel
# configuration, built, booted on QEMU and checked by scripts/kernel-test.sh
# (every line of the expect file, a grep regex, found anywhere in the output;
# exit status 0; no panic; KTAP if the app prints it). A table of the results
# per app, configuration, arch and backend closes the run; any failure shows
# its unmatched lines and the tail of the output, and the exit status is 1.
#
# Usage: scripts/kernel-apps.sh [OPTIONS] [APP_DIR...]
#   APP_DIR       directories with a test_cmd (default: tests/kernel and
#                 every tests/kernel/apps/*/ that has one)
# Options:
#   --arch "A..."   architectures (default "riscv64 aarch64 x86_64")
#   --alloc "B..."  backends (default "tlsf buddy-slab")
#   --only "V=X.."  run only the lines whose configuration has every V=X
#                   (repeatable: a line runs if it matches any --only)
#   --skip "V=X.."  leave out the lines whose configuration has every V=X
#                   (repeatable)
#   --list          print the runs and the builds they need; run nothing
#   For --only/--skip, FEATURES=X means "X is among the FEATURES" and
#   FEATURES= means "no FEATURES"; any other V=X compares the value (after
#   the defaults below are applied; ARCH and ALLOC are the run's).
# Environment: TIMEOUT (seconds per boot, default 120), QEMU_DIR, TOOLS_ROOT
#   (as for scripts/setup-qemu.sh and scripts/setup-toolchain.sh).
#
# MAKE_ARGS, as app_test.sh passes them to ArceOS's make: words NAME=VALUE,
# split at blanks, a later one overriding an earlier one. Understood here:
#   SMP (default 1, as ArceOS), LOG (default warn), MEM (default 128M),
#   FEATURES (axstd features, comma-separated: sched-rr / sched-cfs turn on
#   axtask's `preempt`), APP_FEATURES, MODE (release only), ACCEL, BLK, NET,
#   GRAPHIC (ignored when n: QEMU is TCG only and no devices are attached),
#   ARCH (overridden by the run's arch, as app_test.sh appends ARCH=$ARCH),
#   ALLOC (tlsf | buddy-slab, this project's: a line without ALLOC runs once
#   per backend, so its expect file must hold for both; a line with ALLOC
#   runs only in that backend's pass).
# Anything else is an error: a line this runner cannot build must not pass.
# test_cmd is bash, sourced once per arch with ARCH and APP set (as in
# app_test.sh, a line may say "expect_debug_${ARCH}.out"); its lines are
# queued, then run per arch grouped by SMP, MEM and LOG (which reconfigure
# and rebuild the kernel; backends and FEATURES are separate cargo units
# that stay built side by side).
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
ARCHS="riscv64 aarch64 x86_64"
ALLOCS="tlsf buddy-slab"
ONLY=()
SKIP=()
LIST=0
apps=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --arch) ARCHS=$2; shift 2 ;;
    --alloc) ALLOCS=$2; shift 2 ;;
    --only) ONLY+=("$2"); shift 2 ;;
    --skip) SKIP+=("$2"); shift 2 ;;
    --list) LIST=1; shift ;;
    -h | --help) usage ;;
    -*) echo "kernel-apps: unknown option $1" >&2; usage ;;
    *) apps+=("$1"); shift ;;
  esac
done
if [[ ${#apps[@]} -eq 0 ]]; then
  apps=("$repo/tests/kernel")
  for d in "$repo"/tests/kernel/apps/*/; do
    [[ -f $d/test_cmd ]] && apps+=("${d%/}")
  done
fi
for a in $ARCHS; do
  case $a in riscv64 | aarch64 | x86_64) ;; *) echo "kernel-apps: unknown arch '$a'" >&2; exit 2 ;; esac
done
for b in $ALLOCS; do
  case $b in tlsf | buddy-slab) ;; *) echo "kernel-apps: unknown backend '$b'" >&2; exit 2 ;; esac
done

# --- the queue: one entry per run -------------------------------------------
# Q_APP (directory), Q_CFG (the normalized configuration, fixed order:
# ARCH ALLOC SMP LOG MEM FEATURES APP_FEATURES), Q_EXPECT (path).
Q_APP=() Q_CFG=() Q_EXPECT=() Q_KEY=()
cur_app=""

die() { echo "kernel-apps: $cur_app/test_cmd: $*" >&2; exit 2; }

# cfg_get CFG NAME: the value of NAME in a normalized configuration.
cfg_get() {
  local w
  for w in $1; do [[ ${w%%=*} == "$2" ]] && { echo "${w#*=}"; return; }; done
  echo ""
}

# cfg_matches CFG "V=X ...": every V=X holds for CFG.
cfg_matches() {
  local cfg=$1 w name want have
  for w in $2; do
    [[ $w == *=* ]] || { echo "kernel-apps: bad filter word '$w' (want NAME=VALUE)" >&2; exit 2; }
    name=${w%%=*} want=${w#*=}
    have=$(cfg_get "$cfg" "$name")
    case $name in
      FEATURES | APP_FEATURES)
        if [[ -z $want ]]; then [[ -z $have ]] || return 1
        else [[ ,$have, == *,"$want",* ]] || return 1; fi ;;
      *) [[ $have == "$want" ]] || return 1 ;;
    esac
  done
}

# test_one MAKE_ARGS EXPECT_FILE: queue the line for every backend it runs with.
test_one() {
  [[ $# -eq 2 ]] || die "test_one takes 2 arguments, got $#: $*"
  local args=$1 expect=$2 w name value
  local smp=1 log=warn mem=128M features="" app_features="" line_alloc=""
  # Word splitting as the unquoted $args in app_test.sh's make command line.
  for w in $args; do
    [[ $w == *=* ]] || die "'$w' in \"$args\" is not NAME=VALUE"
    name=${w%%=*} value=${w#*=}
    case $name in
      SMP) [[ $value =~ ^[1-9][0-9]*$ ]] || die "bad SMP=$value"; smp=$value ;;
      LOG) case $value in off | error | warn | info | debug | trace) log=$value ;; *) die "bad LOG=$value" ;; esac ;;
      MEM) mem=$value ;;
      FEATURES) features=$(tr ' ' ',' <<<"$value") ;;
      APP_FEATURES) app_features=$(tr ' ' ',' <<<"$value") ;;
      ALLOC) case $value in tlsf | buddy-slab) line_alloc=$value ;; *) die "bad ALLOC=$value" ;; esac ;;
      MODE) [[ $value == release ]] || die "MODE=$value: only release kernels are built here" ;;
      ARCH | ACCEL) ;; # the run's ARCH wins; QEMU is TCG only (app_test.sh adds ACCEL=n)
      BLK | NET | GRAPHIC) [[ $value == n ]] || die "$name=$value: no devices are attached here" ;;
      *) die "unsupported make variable $name (in \"$args\")" ;;
    esac
  done
  local alloc cfg
  for alloc in $ALLOCS; do
    [[ -z $line_alloc || $line_alloc == "$alloc" ]] || continue
    cfg="ARCH=$ARCH ALLOC=$alloc SMP=$smp LOG=$log MEM=$mem FEATURES=$features APP_FEATURES=$app_features"
    if [[ ${#ONLY[@]} -gt 0 ]]; then
      local f hit=0
      for f in "${ONLY[@]}"; do cfg_matches "$cfg" "$f" && { hit=1; break; }; done
      [[ $hit == 1 ]] || continue
    fi
    local s skipped=0
    for s in ${SKIP[@]+"${SKIP[@]}"}; do cfg_matches "$cfg" "$s" && { skipped=1; break; }; done
    [[ $skipped == 0 ]] || continue
    Q_APP+=("$APP") Q_CFG+=("$cfg") Q_EXPECT+=("$APP/$expect")
    # Runs of one arch are ordered by what reconfigures the whole kernel.
    Q_KEY+=("$ARCH smp$smp $mem $log")
  done
}

for ARCH in $ARCHS; do
  export ARCH
  for a in "${apps[@]}"; do
    APP=$(cd "$a" && pwd) || { echo "kernel-apps: no directory $a" >&2; exit 2; }
    cur_app=${APP#"$repo"/}
    [[ -f $APP/test_cmd ]] || { echo "kernel-apps: $cur_app has no test_cmd" >&2; exit 2; }
    # shellcheck disable=SC1091
    source "$APP/test_cmd"
  done
done
unset ARCH
[[ ${#Q_CFG[@]} -gt 0 ]] || { echo "kernel-apps: no test_cmd line selected" >&2; exit 2; }

# Stable order: arches as given, then by SMP/MEM/LOG group in first-seen
# order, then queue order.
order=()
mapfile -t order < <(
  declare -A first=()
  for i in "${!Q_KEY[@]}"; do [[ -n ${first[${Q_KEY[$i]}]:-} ]] || first[${Q_KEY[$i]}]=$i; done
  for i in "${!Q_KEY[@]}"; do printf '%06d %06d\n' "${first[${Q_KEY[$i]}]}" "$i"; done | sort | awk '{print $2 + 0}'
)

label() { # the app directory's name (`kernel` for the suite)
  basename "$1"
}
cfg_text() { # the configuration without ARCH and ALLOC, defaults dropped
  local cfg=$1 out="" w
  for w in $cfg; do
    case $w in ARCH=* | ALLOC=* | MEM=128M | FEATURES= | APP_FEATURES=) ;; *) out+="$w " ;; esac
  done
  echo "${out% }"
}

builds=$(for i in "${order[@]}"; do
  cfg=${Q_CFG[$i]}
  echo "$(cfg_get "$cfg" ARCH) $(cfg_get "$cfg" ALLOC) $(cfg_text "$cfg")"
done | sort -u | wc -l)
echo "kernel-apps: ${#order[@]} runs in $builds kernel configurations (apps: $(for a in "${apps[@]}"; do label "$(cd "$a" && pwd)"; done | xargs); arches: $ARCHS; backends: $ALLOCS)"
if [[ $LIST == 1 ]]; then
  for i in "${order[@]}"; do
    printf '  %-8s %-8s %-10s %-40s %s\n' "$(label "${Q_APP[$i]}")" "$(cfg_get "${Q_CFG[$i]}" ARCH)" \
      "$(cfg_get "${Q_CFG[$i]}" ALLOC)" "$(cfg_text "${Q_CFG[$i]}")" "${Q_EXPECT[$i]#"$repo"/}"
  done
  exit 0
fi

# --- run ----------------------------------------------------------------------
out_dir="$repo/tests/kernel/target/kernel-apps"
mkdir -p "$out_dir"
RESULT=()
failed=0
t_start=$(date +%s)
for i in "${order[@]}"; do
  cfg=${Q_CFG[$i]}
  app=${Q_APP[$i]}
  arch=$(cfg_get "$cfg" ARCH) alloc=$(cfg_get "$cfg" ALLOC)
  what="$(label "$app") $arch $alloc $(cfg_text "$cfg")"
  run_log="$out_dir/run-$i.log"
  t0=$(date +%s)
  rc=0
  APP=$app FEATURES=$(cfg_get "$cfg" FEATURES) APP_FEATURES=$(cfg_get "$cfg" APP_FEATURES) \
    MEM=$(cfg_get "$cfg" MEM) EXPECT=${Q_EXPECT[$i]} TIMEOUT=${TIMEOUT:-120} \
    "$repo/scripts/kernel-test.sh" "$arch" "$alloc" "$(cfg_get "$cfg" SMP)" "$(cfg_get "$cfg" LOG)" \
    >"$run_log" 2>&1 </dev/null || rc=$?
  secs=$(($(date +%s) - t0))
  case $rc in
    0) res="passed" ;;
    3) res="build failed!" ;;
    4) res="timeout!" ;;
    *) res="failed!" ;;
  esac
  RESULT[$i]="$res ${secs}s"
  printf 'kernel-apps: %-62s %s (%ss)\n' "$what" "$res" "$secs"
  if [[ $rc != 0 ]]; then
    failed=$((failed + 1))
    if [[ $rc == 3 ]]; then
      tail -n 30 "$run_log" | sed 's/^/    | /'
    else
      # kernel-test.sh's report: the tail of the output, then each problem.
      sed 's/^/    | /' "$run_log" | grep -v '^    | \(warning\|   Compiling\|    Finished\|kernel-test: building\|kernel-test: booting\)' | tail -n 40
    fi
  fi
done
total=$(($(date +%s) - t_start))

# --- table: per app and configuration, one column per arch -------------------
echo
echo "kernel-apps: results ($(date -u +%Y-%m-%dT%H:%MZ), $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?'), ${total}s)"
printf '  %-9s %-11s %-34s' app backend configuration
for a in $ARCHS; do printf ' %-20s' "$a"; done
echo
declare -A cell=() rows_seen=()
rows=()
for i in "${order[@]}"; do
  cfg=${Q_CFG[$i]}
  row="$(label "${Q_APP[$i]}")|$(cfg_get "$cfg" ALLOC)|$(cfg_text "$cfg")"
  [[ -n ${rows_seen[$row]:-} ]] || { rows_seen[$row]=1; rows+=("$row"); }
  cell["$row|$(cfg_get "$cfg" ARCH)"]=${RESULT[$i]}
done
for row in "${rows[@]}"; do
  IFS='|' read -r r_app r_alloc r_cfg <<<"$row"
  printf '  %-9s %-11s %-34s' "$r_app" "$r_alloc" "$r_cfg"
  for a in $ARCHS; do printf ' %-20s' "${cell["$row|$a"]:--}"; done
  echo
done
if [[ $failed -gt 0 ]]; then
  echo "kernel-apps: $failed of ${#order[@]} runs FAILED (logs: tests/kernel/target/kernel-apps/, tests/kernel/target/kernel-test/)" >&2
  exit 1
fi
echo "kernel-apps: all ${#order[@]} runs passed"
