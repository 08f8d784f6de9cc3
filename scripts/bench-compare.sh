#!/usr/bin/env bash
# Before/after benchmark of this crate: builds bsa-bench at REV (in a git
# worktree under target/bench-compare) and at the working tree, then runs
# the two binaries alternately, RUNS times each (one trial per process,
# `--allocators ours`), so both see the same machine over the same minutes;
# prints the median of each metric per side and their ratio (after/before).
#
# Usage: scripts/bench-compare.sh REV [RUNS] [WORKLOADS]
#   REV        the commit to compare against (e.g. main~3, a hash)
#   RUNS       processes per side (default 7)
#   WORKLOADS  bsa-bench --only list (default a,b,c,d,e,g)
# Output: a Markdown table on stdout; per-run CSVs in target/bench-compare/.
set -euo pipefail

rev=${1:?usage: scripts/bench-compare.sh REV [RUNS] [WORKLOADS]}
runs=${2:-7}
only=${3:-a,b,c,d,e,g}
repo=$(cd "$(dirname "$0")/.." && pwd)
work="$repo/target/bench-compare"
old="$work/old"
mkdir -p "$work"

if [[ -d $old ]]; then
    git -C "$repo" worktree remove --force "$old" >/dev/null 2>&1 || rm -rf "$old"
fi
git -C "$repo" worktree add --detach -q "$old" "$rev"
trap 'git -C "$repo" worktree remove --force "$old" >/dev/null 2>&1 || true' EXIT

build() { # dir -> binary path
    (cd "$1" && CARGO_TARGET_DIR="$1/target" cargo build -q -p bsa-bench --profile bench-release)
    echo "$1/target/bench-release/bsa-bench"
}
old_bin=$(build "$old")
new_bin=$(build "$repo")
echo "bench-compare: $(git -C "$old" rev-parse --short HEAD) vs working tree, $runs runs each, workloads $only" >&2

for i in $(seq 1 "$runs"); do
    for side in old new; do
        bin=old_bin
        [[ $side == new ]] && bin=new_bin
        out="$work/$side-$i"
        "${!bin}" --trials 1 --only "$only" --allocators ours --out "$out" >/dev/null
    done
done

python3 - "$work" "$runs" <<'EOF'
import csv, statistics, sys
work, runs = sys.argv[1], int(sys.argv[2])
vals = {}
for side in ("old", "new"):
    for i in range(1, runs + 1):
        with open(f"{work}/{side}-{i}/results.csv") as f:
            for row in csv.DictReader(f):
                if row["allocator"] != "ours":
                    continue
                key = (row["metric"], row["unit"])
                vals.setdefault(key, {"old": [], "new": []})[side].append(float(row["median"]))
print("| metric | unit | before (median) | after (median) | after / before |")
print("|---|---|---:|---:|---:|")
for (metric, unit), v in vals.items():
    if not v["old"] or not v["new"]:
        continue
    a, b = statistics.median(v["old"]), statistics.median(v["new"])
    ratio = f"{b / a:.3f}" if a else "-"
    print(f"| {metric} | {unit} | {a:.2f} | {b:.2f} | {ratio} |")
EOF
