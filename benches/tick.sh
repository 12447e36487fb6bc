#!/usr/bin/env bash
# Tick benchmark: what `fleetwave reconcile --once --clusters sim --forge local` costs on a
# synthetic fleet, next to one `fleetwave plan` of the same fleet measured in the same run.
#
#   benches/tick.sh                 # 10,000 clusters, idle ticks best of 5
#   benches/tick.sh 1000            # or CLUSTERS=1000; RUNS=N sets the repeats
#
# The ticks, in order, on one cache (as a CI job or `serve` keeps it):
#   first    plans the fleet (empty cache), starts the rollout, pushes step 1 of the canary
#   merge    the canary's gate is green: merges step 1 (the pushed branch is reused)
#   moved    the base moved: plans the new base once, records the merge
#   idle     nothing changed (same fleet tree, plan, state and clock): best of RUNS
#   fresh    an idle tick on an empty cache (a fresh CI runner): plans once, walks no more
#            history than the simulated Flux needs
# Needs git and GNU time (/usr/bin/time) for peak RSS.
set -euo pipefail

CLUSTERS=${1:-${CLUSTERS:-10000}}
RUNS=${RUNS:-5}

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=$PWD/target/release/fleetwave

if [[ ! -x /usr/bin/time ]]; then
    echo "tick.sh: /usr/bin/time (GNU time) is required for peak RSS" >&2
    exit 2
fi

cargo build --release --locked --bin fleetwave --example gen_fleet

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleetwave-tick.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
FLEET=$TMP/fleet
REMOTE=$TMP/remote.git
CACHE=$TMP/cache.git

echo "generating $CLUSTERS clusters ..." >&2
target/release/examples/gen_fleet --out "$FLEET" --clusters "$CLUSTERS" > /dev/null
git init -q --bare "$REMOTE"
git -C "$FLEET" init -q -b main
git -C "$FLEET" add -A
git -C "$FLEET" -c user.name=bench -c user.email=bench@example.com commit -qm "fleet"
git -C "$FLEET" push -q "$REMOTE" main

now_ns() { date +%s%N; }

# Peak RSS (KiB) of the last timed command.
peak_kb=0
# run_timed OUTFILE CMD...: wall ns into $took; exit code 0 or 1 (held) is success.
run_timed() {
    local out=$1
    shift
    local t0 rc=0
    t0=$(now_ns)
    /usr/bin/time -f '%e %M' -o "$TMP/time" "$@" > "$out" 2>&1 || rc=$?
    took=$(( $(now_ns) - t0 ))
    if [[ $rc -ne 0 && $rc -ne 1 ]]; then
        echo "tick.sh: $* exited $rc" >&2
        cat "$out" >&2
        exit 1
    fi
    read -r _ peak_kb < <(tail -n 1 "$TMP/time")
}

tick() { # tick OUTFILE CACHE NOW
    run_timed "$1" "$BIN" reconcile --once --remote "$REMOTE" --plan plans/bench.yaml \
        --clusters sim --forge local --cache "$2" --now "$3"
}

plan_once() {
    run_timed "$TMP/plan.out" "$BIN" plan --repo "$FLEET" --plan "$FLEET/plans/bench.yaml" \
        --output json
}

# Warm the page cache.
plan_once

T0=2026-12-01T00:00:00Z
T1=2026-12-01T00:01:00Z
T2=2026-12-01T00:02:00Z

tick "$TMP/first.out" "$CACHE" "$T0"; first_ns=$took; first_kb=$peak_kb
tick "$TMP/merge.out" "$CACHE" "$T1"; merge_ns=$took; merge_kb=$peak_kb
grep -q '^did: merge ' "$TMP/merge.out" || { echo "tick.sh: the second tick did not merge" >&2; cat "$TMP/merge.out" >&2; exit 1; }
tick "$TMP/moved.out" "$CACHE" "$T2"; moved_ns=$took; moved_kb=$peak_kb

# Idle ticks and plans alternate, so both see the same machine; best of RUNS each.
idle_ns=; plan_ns=; idle_kb=0; plan_kb=0
state_before=$(git -C "$REMOTE" rev-parse fleetwave/state)
for _ in $(seq "$RUNS"); do
    tick "$TMP/idle.out" "$CACHE" "$T2"
    if grep -q '^did: ' "$TMP/idle.out"; then
        echo "tick.sh: an idle tick acted:" >&2; cat "$TMP/idle.out" >&2; exit 1
    fi
    if [[ -z $idle_ns || $took -lt $idle_ns ]]; then idle_ns=$took; fi
    (( peak_kb > idle_kb )) && idle_kb=$peak_kb
    plan_once
    if [[ -z $plan_ns || $took -lt $plan_ns ]]; then plan_ns=$took; fi
    (( peak_kb > plan_kb )) && plan_kb=$peak_kb
done
if [[ $(git -C "$REMOTE" rev-parse fleetwave/state) != "$state_before" ]]; then
    echo "tick.sh: an idle tick wrote the state" >&2
    exit 1
fi

# An idle tick on an empty cache (a fresh CI runner).
rm -rf "$TMP/fresh.git"
tick "$TMP/fresh.out" "$TMP/fresh.git" "$T2"; fresh_ns=$took; fresh_kb=$peak_kb

awk -v c="$CLUSTERS" -v runs="$RUNS" -v pl="$plan_ns" -v plkb="$plan_kb" \
    -v f="$first_ns" -v fkb="$first_kb" -v m="$merge_ns" -v mkb="$merge_kb" \
    -v mv="$moved_ns" -v mvkb="$moved_kb" -v i="$idle_ns" -v ikb="$idle_kb" \
    -v fr="$fresh_ns" -v frkb="$fresh_kb" 'BEGIN {
    printf "fleetwave tick benchmark: %d clusters (sim, local forge), best of %d\n", c, runs
    printf "%-34s %9s %9s %10s\n", "", "wall s", "peak MB", "x plan"
    row("plan (the reference)", pl, plkb)
    row("first tick (plans, pushes step 1)", f, fkb)
    row("acting tick (merges step 1)", m, mkb)
    row("tick after the base moved", mv, mvkb)
    row("idle tick", i, ikb)
    row("idle tick, empty cache", fr, frkb)
    printf "idle/plan %.1f%% (goal <= 10%%)\n", 100 * i / pl
}
function row(name, ns, kb) {
    printf "%-34s %9.3f %9.1f %10.2f\n", name, ns / 1e9, kb / 1024, ns / pl
}'
