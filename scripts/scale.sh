#!/usr/bin/env bash
# The 100k run: Redis, a chat-server cluster of N nodes sharing one port (SO_REUSEPORT)
# and loadgen as worker processes, all on this machine, then one summary of what matters
# at that size. Everything it starts it stops, also on Ctrl-C.
#
#   scripts/scale.sh [SCENARIO]       default scenarios/100k.toml (100,000 users, 6 workers)
#
# Environment (all optional):
#   SCALE_NODES     chat-server nodes                          (default 6)
#   SCALE_WORKERS   loadgen worker processes (--workers)       (default: the scenario's)
#   SCALE_OUT       report folder              (default reports/scale-<UTC time>)
#
# Prints, at the end: users online, deliveries/s, latency p50/p99, lost, eviction outcomes,
# peak resident memory of every node and every loadgen worker, loadgen memory per
# simulated user, and the wall time from start to end (build included). The full report
# (summary.json, timeseries.csv, latency.hlog/.hgrm, each worker's segment) is in the
# report folder, with the nodes' and Redis' log (cluster.log).
#
# Exit codes: loadgen's (0 every threshold met, 1 a threshold failed, 2 bad scenario,
# 3 could not run: a node, a worker or Redis died); 3 also when the cluster cannot start
# or the build fails.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case "${1:-}" in -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
SCENARIO=${1:-scenarios/100k.toml}
case $SCENARIO in /*) ;; *) [ -e "$SCENARIO" ] || SCENARIO="$CALLER_DIR/$SCENARIO" ;; esac
[ -f "$SCENARIO" ] || { echo "scale.sh: no scenario file $SCENARIO" >&2; exit 2; }
NODES=${SCALE_NODES:-6}
if ! [[ $NODES =~ ^[0-9]+$ ]] || [ "$NODES" -lt 1 ] || [ "$NODES" -gt 64 ]; then
    echo "scale.sh: SCALE_NODES must be 1 to 64 (got '$NODES')" >&2
    exit 2
fi
WORKER_ARGS=()
if [ -n "${SCALE_WORKERS:-}" ]; then WORKER_ARGS=(--workers "$SCALE_WORKERS"); fi
OUT=${SCALE_OUT:-reports/scale-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
STARTED=$(date +%s)

echo "== building chat-server and loadgen (release)" >&2
cargo build --release --locked -p chat-server -p loadgen >&2 || exit 3
LOADGEN="$TARGET_DIR/release/loadgen"

# Two free loopback ports: one for Redis, one shared by the nodes.
free_port() {
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
    done
    return 1
}
BUS_PORT=$(free_port) || { echo "scale.sh: no free port" >&2; exit 3; }
LISTEN_PORT=$(free_port) || { echo "scale.sh: no free port" >&2; exit 3; }
while [ "$LISTEN_PORT" = "$BUS_PORT" ]; do LISTEN_PORT=$(free_port); done

CLUSTER_PID=
stop_cluster() {
    trap - INT TERM EXIT
    if [ -n "$CLUSTER_PID" ]; then
        kill -TERM "$CLUSTER_PID" 2>/dev/null || true
        wait "$CLUSTER_PID" 2>/dev/null || true
    fi
}
trap 'stop_cluster; exit 3' INT TERM
trap 'stop_cluster' EXIT

echo "== starting Redis on 127.0.0.1:$BUS_PORT and $NODES nodes on 127.0.0.1:$LISTEN_PORT (log: $OUT/cluster.log)" >&2
CLUSTER_LISTEN="127.0.0.1:$LISTEN_PORT" CLUSTER_BUS="redis://127.0.0.1:$BUS_PORT" \
    "$ROOT/scripts/cluster.sh" "$NODES" >"$OUT/cluster-urls" 2>"$OUT/cluster.log" &
CLUSTER_PID=$!
for _ in $(seq 600); do
    [ -s "$OUT/cluster-urls" ] && break
    kill -0 "$CLUSTER_PID" 2>/dev/null || { echo "scale.sh: the cluster did not start (see $OUT/cluster.log)" >&2; exit 3; }
    sleep 0.1
done
URL=$(head -n 1 "$OUT/cluster-urls")
[ -n "$URL" ] || { echo "scale.sh: the cluster printed no URL (see $OUT/cluster.log)" >&2; exit 3; }
NODE_PIDS=$(pgrep -P "$CLUSTER_PID" -f "chat-server" || true)

echo "== loadgen run $SCENARIO --target $URL ${WORKER_ARGS[*]}" >&2
set +e
"$LOADGEN" run "$SCENARIO" --target "$URL" --out "$OUT" "${WORKER_ARGS[@]}"
RC=$?
set -e

# Peak resident memory (VmHWM) of every node, read before they stop.
NODE_RSS=()
for pid in $NODE_PIDS; do
    kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo "")
    NODE_RSS+=("${kb:-?}")
done
stop_cluster
ELAPSED=$(( $(date +%s) - STARTED ))

echo
echo "== scale run: $SCENARIO on $NODES nodes, exit $RC, ${ELAPSED} s from start to end (build included)"
if [ -f "$OUT/summary.json" ] && command -v python3 >/dev/null; then
    NODE_RSS="${NODE_RSS[*]}" python3 - "$OUT/summary.json" "$OUT/timeseries.csv" <<'PY'
import csv, json, os, sys
s = json.load(open(sys.argv[1]))
t = s["totals"]
rows = list(csv.DictReader(open(sys.argv[2])))
online = max((int(r["users_online"]) for r in rows), default=0)
users = s["scenario"]["users"]["count"]
lat = s["latency_us"]
print(f"users online        {online} at most (of {users} simulated users)")
print(f"deliveries          {t['delivered']} ({s['deliveries_per_sec']:.0f}/s over {s['measured_s']:.0f} s); sent {t['sent']}")
print(f"latency             p50 {lat['p50']/1000:.2f} ms, p99 {lat['p99']/1000:.2f} ms, max {lat['max']/1000:.2f} ms ({lat['count']} samples)")
print(f"lost                {t['lost']} of {t['expected']} expected ({t['unverified']} unverified)")
print(f"relogins            {t['relogins']}: ok {t['evictions_ok']}, late {t['evictions_late']}, missing {t['evictions_missing']}, "
      f"zombie {t['evictions_zombie']}, ghost {t['evictions_ghost']}, no single survivor {t['evictions_no_survivor']}; "
      f"not failures: survivor closed {t['evictions_survivor_closed']}, probe late {t['evictions_probe_late']}, unprobed {t['evictions_unprobed']} "
      f"({s['probes_sent']} probes)")
print(f"errors              connect {t['connect_errors']}, unexpected disconnects {t['unexpected_disconnects']}, "
      f"duplicates {t['duplicates']}, order {t['order_errors']}")
nodes = [x for x in os.environ.get("NODE_RSS", "").split() if x != "?"]
print("peak RSS per node   " + (", ".join(f"{int(kb)/1024:.0f} MB" for kb in nodes) or "unknown"))
seg = s.get("segments") or {}
per = seg.get("per_segment") or []
print("peak RSS per worker " + (", ".join(f"{(p.get('peak_rss_bytes') or 0)/1e6:.0f} MB" for p in per) or "unknown"))
rss = sum((p.get("peak_rss_bytes") or 0) for p in per)
if rss and users:
    print(f"loadgen memory      {rss/1e6:.0f} MB over its workers: {rss/users/1e3:.1f} KB per simulated user")
lr = s.get("loadgen_resources") or {}
if lr.get("cpu_seconds") is not None and t["delivered"]:
    print(f"loadgen CPU         {lr['cpu_seconds']:.1f} s in {lr['processes']} processes ({lr['cpu_seconds']*1e6/t['delivered']:.1f} us per delivery)")
print(f"loadgen lag         sends p99 {s['loadgen_lag_us']['send']['p99']/1000:.1f} ms, timer p99 {s['loadgen_lag_us']['timer']['p99']/1000:.1f} ms"
      + (" (SATURATED: " + s["instrument_note"] + ")" if s.get("loadgen_saturated") else ""))
print(f"complete            {s['complete']}" + ("" if s["complete"] else f" ({s['incomplete_reason']})"))
PY
else
    echo "(python3 not found or no summary.json: see $OUT)"
fi
echo "report: $OUT"
exit "$RC"
