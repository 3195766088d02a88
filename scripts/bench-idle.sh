#!/usr/bin/env bash
# Idle memory benchmark (not a test): N simulated users logged in and silent. Prints the
# RSS per idle session of the release chat-server (with N sessions minus empty, over N)
# and per idle simulated user of loadgen (a run of N users minus a run of 1 user, both
# measured in their idle phase, over N - 1).
#
# Usage: scripts/bench-idle.sh [N]    (default 10000; each process must fit the
#                                      open-file limit: N + 64)
# Works from any directory; runs the binaries where cargo builds them (CARGO_TARGET_DIR
# included).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; TARGET_DIR
N=${1:-10000}
PORT=${PORT:-16801}
cargo build --release --quiet -p chat-server -p loadgen
SERVER="$TARGET_DIR/release/chat-server"
LOADGEN="$TARGET_DIR/release/loadgen"
WORK=$(mktemp -d)
"$SERVER" --listen "127.0.0.1:$PORT" --log warn &
SRV=$!
LG=
trap 'kill $SRV $LG 2>/dev/null; rm -rf "$WORK"' EXIT
sleep 0.5
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
online() {
    python3 -c "import urllib.request as u; t=u.urlopen('http://127.0.0.1:$PORT/metrics').read().decode(); print([l.split()[-1] for l in t.splitlines() if l.startswith('chat_sessions_online')][0])"
}
SERVER_EMPTY=$(rss $SRV)

# Starts loadgen with $1 idle users, waits until they are all online, sets RSS (KiB).
idle_rss() {
    cat > "$WORK/idle.toml" <<TOML
name = "bench-idle"
[users]
count = $1
connect_rate = 5000
[[phase]]
name = "idle"
duration = "30s"
TOML
    "$LOADGEN" run "$WORK/idle.toml" --quiet --target "ws://127.0.0.1:$PORT/" --out "$WORK/out-$1" >/dev/null 2>&1 &
    LG=$!
    for _ in $(seq 300); do
        [ "$(online)" = "$1" ] && break
        sleep 0.1
    done
    sleep 2
    RSS=$(rss $LG)
}
stop_loadgen() {
    kill -INT $LG 2>/dev/null || true
    wait $LG 2>/dev/null || true
    LG=
    for _ in $(seq 100); do [ "$(online)" = "0" ] && break; sleep 0.1; done
}

idle_rss 1
ONE=$RSS
stop_loadgen
idle_rss "$N"
FULL=$RSS
SERVER_FULL=$(rss $SRV)
stop_loadgen
echo "idle users: $N"
echo "chat-server: empty ${SERVER_EMPTY} KiB, with $N sessions ${SERVER_FULL} KiB: $(( (SERVER_FULL - SERVER_EMPTY) * 1024 / N )) bytes per idle session"
echo "loadgen:     1 user ${ONE} KiB, $N users ${FULL} KiB: $(( (FULL - ONE) * 1024 / (N - 1) )) bytes per idle simulated user"
