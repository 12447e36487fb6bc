#!/usr/bin/env bash
# Scale benchmark: `fleetwave plan` over a synthetic fleet, compared with the cost of just
# reading every file (the floor no planner can beat).
#
#   benches/plan.sh                 # 10,000 clusters, best of 3
#   benches/plan.sh 100000          # any size (or CLUSTERS=100000); RUNS=5 for more repeats
#   BIN=/path/to/fleetwave benches/plan.sh   # another build (e.g. the one before a change)
#   FLEET=DIR benches/plan.sh       # a fleet generated earlier (gen_fleet --clusters N)
#
# Needs GNU find and /usr/bin/time (GNU time, for peak RSS).
set -euo pipefail

CLUSTERS=${1:-${CLUSTERS:-10000}}
RUNS=${RUNS:-3}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${BIN:-target/release/fleetwave}

if [[ ! -x /usr/bin/time ]]; then
    echo "plan.sh: /usr/bin/time (GNU time) is required for peak RSS" >&2
    exit 2
fi

cargo build --release --locked --bin fleetwave --example gen_fleet

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleetwave-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
if [[ -n ${FLEET:-} ]]; then
    DIR=$FLEET
else
    DIR=$TMP/fleet
    mkdir -p "$DIR"
    echo "generating $CLUSTERS clusters into $DIR ..." >&2
    target/release/examples/gen_fleet --out "$DIR" --clusters "$CLUSTERS" > /dev/null
fi

files=$(find "$DIR" -type f | wc -l)
bytes=$(find "$DIR" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d", s }')

now_ns() { date +%s%N; }

read_all() { find "$DIR" -type f -print0 | xargs -0 cat > /dev/null; }

# Warm the page cache so both measurements read from memory, not disk.
read_all
read_all

# Read floor: best wall time of RUNS full reads.
floor_ns=
for _ in $(seq "$RUNS"); do
    t0=$(now_ns)
    read_all
    t=$(( $(now_ns) - t0 ))
    if [[ -z $floor_ns || $t -lt $floor_ns ]]; then floor_ns=$t; fi
done

# Plan: best wall time of RUNS; peak RSS is the largest seen (it barely varies).
# Exit 1 means "valid plan with findings that hold", so 0 and 1 both count as success.
plan_ns=
peak_kb=0
for _ in $(seq "$RUNS"); do
    t0=$(now_ns)
    rc=0
    /usr/bin/time -f '%e %M' -o "$TMP/time" \
        "$BIN" plan --repo "$DIR" --plan "$DIR/plans/bench.yaml" --output json \
        > /dev/null 2> "$TMP/plan.err" || rc=$?
    t=$(( $(now_ns) - t0 ))
    if [[ $rc -ne 0 && $rc -ne 1 ]]; then
        echo "plan.sh: fleetwave plan exited $rc" >&2
        cat "$TMP/plan.err" >&2
        exit 1
    fi
    # GNU time may prepend "Command exited with non-zero status N"; the numbers are last.
    read -r _ kb < <(tail -n 1 "$TMP/time")
    if [[ -z $plan_ns || $t -lt $plan_ns ]]; then plan_ns=$t; fi
    if (( kb > peak_kb )); then peak_kb=$kb; fi
done

awk -v c="$CLUSTERS" -v f="$files" -v b="$bytes" -v fl="$floor_ns" -v pl="$plan_ns" \
    -v kb="$peak_kb" -v runs="$RUNS" 'BEGIN {
    printf "fleetwave plan benchmark: %d clusters, best of %d\n", c, runs
    printf "%-14s %12d\n", "files", f
    printf "%-14s %12d  (%.1f MiB)\n", "bytes", b, b / 1048576
    printf "%-14s %12.3f\n", "read floor s", fl / 1e9
    printf "%-14s %12.3f\n", "plan s", pl / 1e9
    printf "%-14s %12.1f\n", "plan peak MB", kb / 1024
    printf "%-14s %12.2f\n", "plan/floor", (fl > 0 ? pl / fl : 0)
}'
