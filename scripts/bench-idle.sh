#!/usr/bin/env bash
# Idle memory benchmark (not a test): N simulated users logged in and silent. Prints the
# RSS per idle session of the release chat-server and per idle simulated user of loadgen
# (RSS with N users minus RSS before the ramp, divided by N).
#
# Usage: scripts/bench-idle.sh [N]    (default 10000; both processes must fit the
#                                      open-file limit: N + 64)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
PORT=${PORT:-16801}
cargo build --release --quiet -p chat-server -p loadgen
WORK=$(mktemp -d)
target/release/chat-server --listen "127.0.0.1:$PORT" --log warn &
SRV=$!
trap 'kill $SRV $LG 2>/dev/null; rm -rf "$WORK"' EXIT
LG=
sleep 0.5
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
SERVER_EMPTY=$(rss $SRV)
cat > "$WORK/idle.toml" <<TOML
name = "bench-idle"
[users]
count = $N
connect_rate = 5000
[[phase]]
name = "idle"
duration = "20s"
TOML
target/release/loadgen run "$WORK/idle.toml" --quiet --target "ws://127.0.0.1:$PORT/" --out "$WORK/out" >/dev/null &
LG=$!
sleep 0.2
LOADGEN_EMPTY=$(rss $LG)
for _ in $(seq 200); do
    ONLINE=$(python3 -c "import urllib.request as u; t=u.urlopen('http://127.0.0.1:$PORT/metrics').read().decode(); print([l.split()[-1] for l in t.splitlines() if l.startswith('chat_sessions_online')][0])")
    [ "$ONLINE" = "$N" ] && break
    sleep 0.1
done
sleep 2
SERVER_FULL=$(rss $SRV)
LOADGEN_FULL=$(rss $LG)
echo "users: $N online"
echo "chat-server: empty ${SERVER_EMPTY} KiB, with users ${SERVER_FULL} KiB, per idle session $(( (SERVER_FULL - SERVER_EMPTY) * 1024 / N )) bytes"
echo "loadgen:     start ${LOADGEN_EMPTY} KiB, with users ${LOADGEN_FULL} KiB, per idle user $(( (LOADGEN_FULL - LOADGEN_EMPTY) * 1024 / N )) bytes"
kill -INT $LG 2>/dev/null || true
wait $LG 2>/dev/null || true
LG=
