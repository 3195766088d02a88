#!/usr/bin/env bash
# Fan-out benchmark (not a test): the release chat-server as its own process, loadgen
# driving 1,000 users (10 senders) at each given total message rate for 10 s. Prints, per
# rate: deliveries/s, latency p50/p99, and the CPU seconds each side used (server from
# /proc/PID/stat, loadgen from the shell's child rusage), so the bottleneck is visible.
#
# Usage: scripts/bench-fanout.sh [RATE ...]      (default: 20 50 100 msg/s in total)
#        USERS=1000 DURATION=10s PORT=16800 scripts/bench-fanout.sh 100
# Works from any directory; runs the binaries where cargo builds them (CARGO_TARGET_DIR
# included).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; TARGET_DIR

USERS=${USERS:-1000}
SENDERS=${SENDERS:-10}
DURATION=${DURATION:-10s}
PORT=${PORT:-16800}
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(20 50 100)

cargo build --release --quiet -p chat-server -p loadgen
SERVER="$TARGET_DIR/release/chat-server"
LOADGEN="$TARGET_DIR/release/loadgen"
WORK=$(mktemp -d)
"$SERVER" --listen "127.0.0.1:$PORT" --log warn &
SRV=$!
trap 'kill $SRV 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

TCK=$(getconf CLK_TCK)
server_cpu() { awk -v t="$TCK" '{printf "%.2f", ($14 + $15) / t}' "/proc/$SRV/stat"; }

printf '%-6s %12s %14s %9s %9s %12s %12s %14s %14s\n' \
    rate deliveries deliveries/s p50_ms p99_ms server_cpu_s loadgen_cpu_s server_us/dlv loadgen_us/dlv
for RATE in "${RATES[@]}"; do
    cat > "$WORK/fanout.toml" <<TOML
name = "bench-fanout-$RATE"
[users]
count = $USERS
connect_rate = 2000
[[phase]]
duration = "$DURATION"
rate = $RATE
senders = $SENDERS
message_size = 128
TOML
    BEFORE=$(server_cpu)
    # `times` prints the shell's and then its children's user/sys CPU.
    TIMES=$( ( "$LOADGEN" run "$WORK/fanout.toml" --quiet --target "ws://127.0.0.1:$PORT/" \
                --out "$WORK/out-$RATE" >"$WORK/stdout-$RATE" 2>&1 || true; times ) | tail -1)
    AFTER=$(server_cpu)
    LOADGEN_CPU=$(echo "$TIMES" | awk '{
        split($1, u, "m"); split($2, s, "m");
        sub("s", "", u[2]); sub("s", "", s[2]);
        printf "%.2f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
    python3 - "$WORK/out-$RATE/summary.json" "$RATE" "$BEFORE" "$AFTER" "$LOADGEN_CPU" <<'PY'
import json, sys
path, rate, before, after, lg = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
s = json.load(open(path))
d = s["totals"]["delivered"]
srv = after - before
per = lambda cpu: cpu * 1e6 / d if d else float("nan")
print(f'{rate:<6} {d:>12} {s["deliveries_per_sec"]:>14.0f} {s["latency_us"]["p50"]/1000:>9.2f} '
      f'{s["latency_us"]["p99"]/1000:>9.2f} {srv:>12.2f} {lg:>13.2f} {per(srv):>14.2f} {per(lg):>14.2f}')
PY
done
echo "(server CPU covers the run including logins; loadgen CPU covers its whole process: ramp, run, reports)"
