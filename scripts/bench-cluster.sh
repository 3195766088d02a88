#!/usr/bin/env bash
# Cluster benchmark (not a test): what the bus costs. Plays one scenario against
#   single   one release chat-server, no bus (the embedded default's shape)
#   bus1     one release chat-server with a bus (Redis started here): the bus's own cost,
#            without more processes sharing the cores
#   cluster  N release chat-servers over Redis, users spread over them
# in turn, ROUNDS times each (so slow drift on a shared machine hits all alike), and prints
# per round and as medians: deliveries, latency p50/p99, the servers' CPU seconds (from
# /proc/PID/stat; Redis's included), CPU microseconds per delivery, and the nodes' own
# bus round trip (their probes through Redis, from /metrics: the bus hop itself).
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
    if [ "$config" = bus1 ]; then
        local redis_port=$((PORT + 99))
        redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --loglevel warning >/dev/null &
        PIDS+=($!); SERVER_PIDS+=($!)
        wait_port "$redis_port"
        "$SERVER" --listen "127.0.0.1:$PORT" --id n0 --log warn --bus "redis://127.0.0.1:$redis_port" &
        PIDS+=($!); SERVER_PIDS+=($!)
        wait_port "$PORT"
        TARGETS+=(--target "ws://127.0.0.1:$PORT/")
    elif [ "$config" = single ]; then
        "$SERVER" --listen "127.0.0.1:$PORT" --log warn &
        PIDS+=($!); SERVER_PIDS+=($!)
        wait_port "$PORT"
        TARGETS+=(--target "ws://127.0.0.1:$PORT/")
    else
        local redis_port=$((PORT + 99))
        redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no --loglevel warning >/dev/null &
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

# Mean bus round trip (ms) over the nodes' probes, read from their /metrics.
bus_rtt() {
    local sum=0 count=0 port body
    for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
        port=${TARGETS[i + 1]##*:}; port=${port%/}
        body=$(exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 && cat <&3) || continue
        sum=$(awk -v a="$sum" '/^chat_bus_round_trip_seconds_sum/ {a += $2} END {print a}' <<<"$body")
        count=$(awk -v a="$count" '/^chat_bus_round_trip_seconds_count/ {a += $2} END {print a}' <<<"$body")
    done
    awk -v s="$sum" -v c="$count" 'BEGIN { if (c > 0) printf "%.3f", s * 1000 / c; else print "" }'
}

echo "config,round,deliveries,p50_ms,p99_ms,lost,eviction_failures,order_errors,duplicates,server_cpu_s,server_us_per_delivery,bus_rtt_ms" > "$OUT/results.csv"
for round in $(seq 1 "$ROUNDS"); do
    for config in single bus1 cluster; do
        start "$config"
        BEFORE=$(cpu_of "${SERVER_PIDS[@]}")
        run_out="$OUT/$config-$round"
        "$LOADGEN" run "$SCENARIO" --quiet "${TARGETS[@]}" --out "$run_out" >"$run_out.log" 2>&1 || true
        AFTER=$(cpu_of "${SERVER_PIDS[@]}")
        RTT=$(bus_rtt)
        stop_all
        [ -s "$run_out/summary.json" ] || { echo "bench-cluster.sh: $config round $round wrote no report (see $run_out.log)" >&2; exit 1; }
        python3 - "$run_out/summary.json" "$config" "$round" "$BEFORE" "$AFTER" "$RTT" >> "$OUT/results.csv" <<'PY'
import json, sys
path, config, rnd, before, after, rtt = sys.argv[1:7]
s = json.load(open(path))
t = s["totals"]
d = t["delivered"]
cpu = float(after) - float(before)
fails = sum(t.get(k, 0) for k in ("evictions_late", "evictions_missing", "evictions_zombie", "evictions_ghost"))
print(f'{config},{rnd},{d},{s["latency_us"]["p50"]/1000:.3f},{s["latency_us"]["p99"]/1000:.3f},'
      f'{t["lost"]},{fails},{t["order_errors"]},{t["duplicates"]},{cpu:.2f},'
      f'{cpu * 1e6 / d if d else float("nan"):.3f},{rtt}')
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
def rtt(config):
    values = [float(r["bus_rtt_ms"]) for r in rows if r["config"] == config and r["bus_rtt_ms"]]
    return f"{statistics.median(values):.3f}" if values else "-"
print(f"\nmedians of {len(rows)//3} rounds each, {scenario}:")
print(f'{"config":<22}{"p50 ms":>9}{"p99 ms":>9}{"CPU s":>8}{"us/delivery":>13}{"bus rtt ms":>12}')
for config, label in (("single", "1 node, no bus"), ("bus1", "1 node + Redis"),
                      ("cluster", f"{nodes} nodes + Redis")):
    print(f'{label:<22}{med(config,"p50_ms"):>9.2f}{med(config,"p99_ms"):>9.2f}'
          f'{med(config,"server_cpu_s"):>8.2f}{med(config,"server_us_per_delivery"):>13.3f}{rtt(config):>12}')
base = med("single", "p50_ms")
print(f'p50 minus the single node: 1 node + Redis {med("bus1","p50_ms") - base:+.2f} ms, '
      f'{nodes} nodes {med("cluster","p50_ms") - base:+.2f} ms; CPU per delivery ratio to the single node: '
      f'1 node + Redis {med("bus1","server_us_per_delivery") / med("single","server_us_per_delivery"):.2f}, '
      f'{nodes} nodes {med("cluster","server_us_per_delivery") / med("single","server_us_per_delivery"):.2f}')
PY
echo "results: $OUT/results.csv"
