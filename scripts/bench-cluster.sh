#!/usr/bin/env bash
# Cluster benchmark (not a test): what the bus costs. Plays one scenario against
#   single   one release chat-server, no bus (the embedded default's shape)
#   cluster  N release chat-servers over a Redis started here, users spread over them
# alternately, ROUNDS times each (so slow drift on a shared machine hits both alike), and
# prints per round and as medians: deliveries, latency p50/p99, the servers' CPU seconds
# (from /proc/PID/stat; Redis's included for the cluster) and CPU microseconds per
# delivery. The bus hop's added latency is the difference of the p50 medians.
#
# Usage: scripts/bench-cluster.sh [SCENARIO] [ROUNDS]
#        default: scenarios/broadcast.toml (1,000 users, 100 msg/s), 3 rounds
#        NODES=3 PORT=16900 scripts/bench-cluster.sh scenarios/cluster-relogin.toml 2
# Writes reports/bench-cluster-<UTC time>/results.csv and each run's report beside it.
# Exit codes: 0 done; 1 a run could not be carried out; 2 bad usage; 3 build failed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; TARGET_DIR

case "${1:-}" in -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
SCENARIO=${1:-scenarios/broadcast.toml}
case $SCENARIO in /*) ;; *) [ -f "$SCENARIO" ] || SCENARIO="$CALLER_DIR/$SCENARIO" ;; esac
ROUNDS=${2:-3}
NODES=${NODES:-3}
PORT=${PORT:-16900}
[ -f "$SCENARIO" ] || { echo "bench-cluster.sh: no such scenario: $SCENARIO" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench-cluster.sh: ROUNDS must be a positive whole number" >&2; exit 2; }
[[ $NODES =~ ^[1-9][0-9]*$ ]] || { echo "bench-cluster.sh: NODES must be a positive whole number" >&2; exit 2; }
command -v redis-server >/dev/null || {
    echo "bench-cluster.sh: redis-server is not installed; install it: apt-get install -y redis-server" >&2
    exit 1
}

cargo build --release --locked --quiet -p chat-server -p loadgen || exit 3
SERVER="$TARGET_DIR/release/chat-server"
LOADGEN="$TARGET_DIR/release/loadgen"
OUT="reports/bench-cluster-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
TCK=$(getconf CLK_TCK)
PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    PIDS=()
}
trap stop_all EXIT

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench-cluster.sh: nothing listens on port $1" >&2
    exit 1
}
cpu_of() { # summed user+system seconds of the given pids
    local total=0
    for pid in "$@"; do
        total=$(awk -v t="$TCK" -v a="$total" '{printf "%.3f", a + ($14 + $15) / t}' "/proc/$pid/stat")
    done
    echo "$total"
}

# Starts the servers of one configuration; sets TARGETS and SERVER_PIDS.
start() {
    local config=$1
    TARGETS=()
    SERVER_PIDS=()
    if [ "$config" = single ]; then
        "$SERVER" --listen "127.0.0.1:$PORT" --log warn &
        PIDS+=($!); SERVER_PIDS+=($!)
        wait_port "$PORT"
        TARGETS+=(--target "ws://127.0.0.1:$PORT/")
    else
        local redis_port=$((PORT + 99))
        redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --loglevel warning &
        PIDS+=($!); SERVER_PIDS+=($!)
        wait_port "$redis_port"
        for i in $(seq 0 $((NODES - 1))); do
            "$SERVER" --listen "127.0.0.1:$((PORT + i))" --id "n$i" --log warn \
                --bus "redis://127.0.0.1:$redis_port" &
            PIDS+=($!); SERVER_PIDS+=($!)
            wait_port $((PORT + i))
            TARGETS+=(--target "ws://127.0.0.1:$((PORT + i))/")
        done
    fi
}

echo "config,round,deliveries,p50_ms,p99_ms,lost,eviction_failures,server_cpu_s,server_us_per_delivery" > "$OUT/results.csv"
for round in $(seq 1 "$ROUNDS"); do
    for config in single cluster; do
        start "$config"
        BEFORE=$(cpu_of "${SERVER_PIDS[@]}")
        run_out="$OUT/$config-$round"
        "$LOADGEN" run "$SCENARIO" --quiet "${TARGETS[@]}" --out "$run_out" >"$run_out.log" 2>&1 || true
        AFTER=$(cpu_of "${SERVER_PIDS[@]}")
        stop_all
        [ -s "$run_out/summary.json" ] || { echo "bench-cluster.sh: $config round $round wrote no report (see $run_out.log)" >&2; exit 1; }
        python3 - "$run_out/summary.json" "$config" "$round" "$BEFORE" "$AFTER" >> "$OUT/results.csv" <<'PY'
import json, sys
path, config, rnd, before, after = sys.argv[1:6]
s = json.load(open(path))
t = s["totals"]
d = t["delivered"]
cpu = float(after) - float(before)
fails = sum(t.get(k, 0) for k in ("evictions_late", "evictions_missing", "evictions_zombie", "evictions_ghost"))
print(f'{config},{rnd},{d},{s["latency_us"]["p50"]/1000:.3f},{s["latency_us"]["p99"]/1000:.3f},'
      f'{t["lost"]},{fails},{cpu:.2f},{cpu * 1e6 / d if d else float("nan"):.3f}')
PY
        tail -1 "$OUT/results.csv"
    done
done
python3 - "$OUT/results.csv" "$NODES" "$SCENARIO" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
nodes, scenario = sys.argv[2], sys.argv[3]
def med(config, field):
    return statistics.median(float(r[field]) for r in rows if r["config"] == config)
print(f"\nmedians of {len(rows)//2} rounds each, {scenario}:")
print(f'{"config":<22}{"p50 ms":>9}{"p99 ms":>9}{"CPU s":>8}{"us/delivery":>13}')
for config, label in (("single", "1 node, no bus"), ("cluster", f"{nodes} nodes + Redis")):
    print(f'{label:<22}{med(config,"p50_ms"):>9.2f}{med(config,"p99_ms"):>9.2f}'
          f'{med(config,"server_cpu_s"):>8.2f}{med(config,"server_us_per_delivery"):>13.3f}')
print(f'bus hop (p50 cluster - single): {med("cluster","p50_ms") - med("single","p50_ms"):+.2f} ms; '
      f'CPU per delivery ratio cluster/single: {med("cluster","server_us_per_delivery") / med("single","server_us_per_delivery"):.2f}')
PY
echo "results: $OUT/results.csv"
