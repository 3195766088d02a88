#!/usr/bin/env bash
# Starts a chat-server cluster on this machine: Redis (unless one already answers on the
# bus address) and N nodes sharing one listen address (SO_REUSEPORT), and stops everything
# it started on Ctrl-C (or SIGTERM). Prints the URL(s) to give loadgen on stdout, one a
# line; everything else (build, Redis and node logs) goes to stderr.
#
#   scripts/cluster.sh [N]            N nodes (default 3)
#
# Environment (all optional):
#   CLUSTER_LISTEN   shared listen address of the nodes   (default 127.0.0.1:6789)
#   CLUSTER_BUS      Redis URL, redis://HOST:PORT          (default redis://127.0.0.1:6379)
#   CLUSTER_PORTS    "separate": each node on its own port (LISTEN's port + i) instead of
#                    one shared address, so a load test can pick nodes (conform, relogins
#                    on another node)
#   CHAT_*           any chat-server setting, passed to every node (see chat-server --help)
#
# Then, for example:
#   loadgen conform ws://127.0.0.1:6789/ ws://127.0.0.1:6790/ ws://127.0.0.1:6791/   (separate)
#   loadgen run scenarios/cluster-relogin.toml --target ws://127.0.0.1:6789/ ...
#
# Exit codes: 0 stopped by Ctrl-C/SIGTERM; 1 a node or Redis could not start or died;
# 2 bad usage; 3 the build failed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
N=${1:-3}
if ! [[ $N =~ ^[0-9]+$ ]] || [ "$N" -lt 1 ] || [ "$N" -gt 64 ]; then
    echo "cluster.sh: N must be a whole number from 1 to 64 (got '${1:-}')" >&2
    usage >&2
    exit 2
fi
LISTEN=${CLUSTER_LISTEN:-127.0.0.1:6789}
BUS=${CLUSTER_BUS:-redis://127.0.0.1:6379}
HOST=${LISTEN%:*}
PORT=${LISTEN##*:}
if ! [[ $PORT =~ ^[0-9]+$ ]]; then
    echo "cluster.sh: CLUSTER_LISTEN must be HOST:PORT (got '$LISTEN')" >&2
    exit 2
fi
if ! [[ $BUS =~ ^redis://([^:/]+):([0-9]+)/?$ ]]; then
    echo "cluster.sh: CLUSTER_BUS must be redis://HOST:PORT (got '$BUS')" >&2
    exit 2
fi
BUS_HOST=${BASH_REMATCH[1]}
BUS_PORT=${BASH_REMATCH[2]}

echo "== building chat-server (release)" >&2
cargo build --release --locked -p chat-server >&2 || exit 3
SERVER="$TARGET_DIR/release/chat-server"

PIDS=()
stop_all() {
    trap - INT TERM EXIT
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

redis_answers() {
    (exec 3<>"/dev/tcp/$BUS_HOST/$BUS_PORT" && printf 'PING\r\n' >&3 && head -c 7 <&3 | grep -q PONG) 2>/dev/null
}

if redis_answers; then
    echo "== Redis already answers on $BUS_HOST:$BUS_PORT; using it" >&2
else
    if ! command -v redis-server >/dev/null; then
        echo "cluster.sh: redis-server is not installed; install it: apt-get install -y redis-server" >&2
        exit 1
    fi
    echo "== starting redis-server on $BUS_HOST:$BUS_PORT (nothing persisted)" >&2
    redis-server --bind "$BUS_HOST" --port "$BUS_PORT" --save '' --appendonly no \
        --loglevel warning >&2 &
    PIDS+=($!)
    for _ in $(seq 100); do redis_answers && break; sleep 0.05; done
    redis_answers || { echo "cluster.sh: redis-server did not start" >&2; exit 1; }
fi

URLS=()
for i in $(seq 0 $((N - 1))); do
    if [ "${CLUSTER_PORTS:-}" = separate ]; then
        addr="$HOST:$((PORT + i))"
        "$SERVER" --listen "$addr" --id "node$i" --bus "$BUS" >&2 &
        URLS+=("ws://$addr/")
    else
        addr=$LISTEN
        "$SERVER" --listen "$addr" --id "node$i" --bus "$BUS" --reuse-port >&2 &
        [ "$i" -eq 0 ] && URLS+=("ws://$addr/")
    fi
    PIDS+=($!)
done
# Every node answers /healthz before the URLs are printed.
for i in $(seq 0 $((N - 1))); do
    if [ "${CLUSTER_PORTS:-}" = separate ]; then port=$((PORT + i)); else port=$PORT; fi
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null && break
        sleep 0.05
    done
done
sleep 0.2
for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "cluster.sh: a process exited at start (see above)" >&2; exit 1; }
done

echo "cluster of $N node(s) on bus $BUS; Ctrl-C stops everything this script started" >&2
printf '%s\n' "${URLS[@]}"
# Wait until a child dies (then stop the rest, exit 1) or a signal arrives (exit 0).
wait -n
echo "cluster.sh: a process of the cluster exited; stopping the rest" >&2
exit 1
