#!/usr/bin/env bash
# Dashboard benchmark: what the web dashboard costs `serve` on a synthetic fleet, next to the
# same service with `--no-ui` measured in the same run.
#
#   benches/dashboard.sh          # 10,000 clusters; or CLUSTERS=N / first argument
#
# Reports: the first tick (until /readyz) with and without the dashboard, when the first
# snapshot is served, the peak RSS of both services, GET / (500 clusters a page) and
# GET /cluster best of 5 (curl), the page sizes, and `status --output html` (wall, size).
# Needs git and curl.
set -euo pipefail

CLUSTERS=${1:-${CLUSTERS:-10000}}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=$PWD/target/release/fleetwave
[[ -n ${SKIP_BUILD:-} ]] || cargo build --release --locked --bin fleetwave --example gen_fleet

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleetwave-dash.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT
FLEET=$TMP/fleet
REMOTE=$TMP/remote.git
echo "generating $CLUSTERS clusters ..." >&2
target/release/examples/gen_fleet --out "$FLEET" --clusters "$CLUSTERS" > /dev/null
git init -q --bare "$REMOTE"
git -C "$FLEET" init -q -b main
git -C "$FLEET" add -A
git -C "$FLEET" -c user.name=bench -c user.email=bench@example.com commit -qm "fleet"
git -C "$FLEET" push -q "$REMOTE" main

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# wait_for URL GREP: ms until the body of URL contains GREP.
wait_for() {
    local t0 url=$1 want=$2
    t0=$(now_ms)
    until curl -fsS "$url" 2>/dev/null | grep -q -- "$want"; do
        (( $(now_ms) - t0 < 600000 )) || { echo "dashboard.sh: $url never had $want" >&2; exit 1; }
        sleep 0.1
    done
    echo $(( $(now_ms) - t0 ))
}
# best URL: best of 5 total times (ms) and the body size (bytes).
best() {
    local b='' t s
    for _ in 1 2 3 4 5; do
        read -r t s < <(curl -fsS -o /dev/null -w '%{time_total} %{size_download}\n' "$1")
        t=$(awk -v t="$t" 'BEGIN { printf "%d", t * 1000 }')
        if [[ -z $b || $t -lt $b ]]; then b=$t; fi
    done
    echo "$b $s"
}
# serve_on NAME PORT ARGS...: start serve; its pid in $pid.
serve_on() {
    local name=$1 port=$2
    shift 2
    "$BIN" serve --clusters sim --remote "$REMOTE" --plan plans/bench.yaml --forge local \
        --cache "$TMP/$name.git" --listen "127.0.0.1:$port" --interval 3600 "$@" \
        > "$TMP/$name.log" 2>&1 &
    pid=$!
    pids+=("$pid")
}
hwm_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

serve_on noui 18961 --no-ui
noui_ready=$(wait_for http://127.0.0.1:18961/readyz ready)
noui_kb=$(hwm_kb "$pid")
kill "$pid"

serve_on ui 18962 --ui-listen 127.0.0.1:18963
ui_ready=$(wait_for http://127.0.0.1:18962/readyz ready)
t0=$(now_ms)
wait_for http://127.0.0.1:18963/ 'class="grid"' > /dev/null
ui_page=$(( ui_ready + $(now_ms) - t0 ))
ui_kb=$(hwm_kb "$pid")
read -r page_ms page_b < <(best "http://127.0.0.1:18963/")
read -r big_ms big_b < <(best "http://127.0.0.1:18963/?size=5000")
name=$(git -C "$FLEET" ls-files | sed -n 's#^infrastructure/clusters/\([^/]*\)/.*#\1#p' | tail -n 1)
read -r filt_ms filt_b < <(best "http://127.0.0.1:18963/?wave=canary&state=in-progress")
read -r one_ms one_b < <(best "http://127.0.0.1:18963/cluster?name=$name")
kill "$pid"

t0=$(now_ms)
"$BIN" status --remote "$REMOTE" --plan plans/bench.yaml --clusters sim --output html \
    --cache "$TMP/ui.git" > "$TMP/report.html"
status_ms=$(( $(now_ms) - t0 ))
status_b=$(stat -c %s "$TMP/report.html")

cat <<OUT
clusters: $CLUSTERS (cluster page: $name)
first tick until /readyz, --no-ui:            ${noui_ready} ms, peak RSS $(( noui_kb / 1024 )) MB
first tick until /readyz, dashboard on:       ${ui_ready} ms, peak RSS $(( ui_kb / 1024 )) MB
first snapshot served (from start):           ${ui_page} ms
GET / (500 a page):                           ${page_ms} ms, $(( page_b / 1024 )) KiB
GET /?size=5000:                              ${big_ms} ms, $(( big_b / 1024 )) KiB
GET /?wave=canary&state=in-progress:          ${filt_ms} ms, $(( filt_b / 1024 )) KiB
GET /cluster?name=…:                          ${one_ms} ms, $(( one_b / 1024 )) KiB
status --output html (warm cache):            ${status_ms} ms, $(( status_b / 1024 / 1024 )) MiB
OUT
