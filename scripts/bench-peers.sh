#!/usr/bin/env bash
# Peer benchmark (not a test, not a CI step): how chat-server compares with what users run.
# The same load through loadgen against three servers on this machine, a fresh server
# process per run: our release chat-server, a Socket.IO 4 app and a JSON chat on node's
# `ws` (the two apps of loadgen/tests/peers, see its README.md). USERS users, SENDERS of
# them sending RATE messages a second in total (128 bytes) for DURATION; the three
# scenarios are identical but for their [protocol] table. REPS rounds, the servers' order
# rotating each round (chat-server socketio json-chat, socketio json-chat chat-server, ...).
# Prints one table, per server the median of its REPS runs: latency p50/p99, deliveries/s
# held, messages lost (must be 0), the server's CPU per delivery (utime + stime of its PID,
# from /proc/PID/stat, over the loadgen run, logins included, / deliveries) and its memory
# per session ((VmHWM after the run - VmRSS just before it) / USERS); then every run's raw
# numbers under "runs:".
#
# The default, 20 msg/s to 1,000 users (20,000 deliveries/s), is a load all three hold on
# a 2-core machine shared with loadgen; at RATE=100 (100,000 deliveries/s) the node apps
# saturate their one thread here (p99 in seconds, messages still queued at the end), and
# the run says so by exiting 1.
#
# Usage: scripts/bench-peers.sh
#        USERS=1000 SENDERS=10 RATE=20 DURATION=10s REPS=3 PORT=16820 scripts/bench-peers.sh
# PORT is chat-server's; the node apps take a free port of the OS's choice (--port 0).
# Needs node and npm (apt-get install -y nodejs npm); installs the apps' npm packages from
# their lock file when they are missing. Exits 1 when a run lost messages, 3 when it could
# not run (a server did not start, loadgen wrote no summary). Everything listens on and
# connects to 127.0.0.1; loadgen shares the machine with the server it measures.
# Works from any directory; runs the binaries where cargo builds them (CARGO_TARGET_DIR
# included).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; TARGET_DIR

USERS=${USERS:-1000}
SENDERS=${SENDERS:-10}
RATE=${RATE:-20}
DURATION=${DURATION:-10s}
REPS=${REPS:-3}
PORT=${PORT:-16820}
PEERS=loadgen/tests/peers

command -v node >/dev/null || {
    echo "bench-peers: needs Node.js and npm: apt-get install -y nodejs npm" >&2
    exit 3
}
if [ ! -d "$PEERS/node_modules/socket.io" ] || [ ! -d "$PEERS/node_modules/ws" ]; then
    command -v npm >/dev/null || {
        echo "bench-peers: needs npm for the apps' packages: apt-get install -y nodejs npm" >&2
        exit 3
    }
    echo "bench-peers: npm packages of $PEERS (from its lock file)" >&2
    npm ci --prefix "$PEERS" --no-audit --no-fund >&2 || {
        echo "bench-peers: npm ci failed: npm ci --prefix $PEERS --no-audit --no-fund" >&2
        exit 3
    }
fi

cargo build --release --quiet -p chat-server -p loadgen
SERVER="$TARGET_DIR/release/chat-server"
LOADGEN="$TARGET_DIR/release/loadgen"
WORK=$(mktemp -d)
SRV=
LG=
# The node apps exit when their standard input ends: theirs is this fifo, held open by fd 7
# of this shell (and of nothing else), so they go with it even if the trap never runs.
mkfifo "$WORK/stdin"
exec 7<>"$WORK/stdin"
trap 'kill $LG $SRV 2>/dev/null || true; exec 7>&-; rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The scenario of each server kind: the same load, its own [protocol] table.
scenario() { # KIND
    cat <<TOML
name = "bench-peers-$1"
[users]
count = $USERS
connect_rate = 2000
[[phase]]
duration = "$DURATION"
rate = $RATE
senders = $SENDERS
message_size = 128
TOML
    case $1 in
        socketio)
            cat <<'TOML'
[protocol]
kind = "socketio"
TOML
            ;;
        json-chat)
            # The [protocol] table users are shown for such a server.
            awk '/^\[protocol\]/ {p = 1; print; next} /^\[/ {p = 0} p' scenarios/json-chat.toml
            ;;
    esac
}
KINDS=(chat-server socketio json-chat)
for kind in "${KINDS[@]}"; do scenario "$kind" > "$WORK/$kind.toml"; done

TCK=$(getconf CLK_TCK)
server_ticks() { awk '{print $14 + $15}' "/proc/$SRV/stat"; }
status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$SRV/status"; } # VmRSS or VmHWM

# Starts a fresh server of KIND; sets SRV (its PID) and SRV_PORT, and waits until it accepts.
start_server() { # KIND
    local log="$WORK/server.log" app=
    case $1 in
        chat-server)
            "$SERVER" --listen "127.0.0.1:$PORT" --log warn >"$log" 2>&1 7>&- &
            SRV=$!
            SRV_PORT=$PORT
            ;;
        socketio | json-chat)
            app=json-chat.mjs
            [ "$1" = json-chat ] || app=socketio-chat.mjs
            node "$PEERS/$app" --host 127.0.0.1 --port 0 <"$WORK/stdin" >"$log" 2>&1 7>&- &
            SRV=$!
            SRV_PORT=
            for _ in $(seq 100); do
                SRV_PORT=$(awk '$1 == "listening" {print $2; exit}' "$log")
                [ -n "$SRV_PORT" ] && break
                kill -0 "$SRV" 2>/dev/null || break
                sleep 0.1
            done
            ;;
    esac
    if [ -n "$SRV_PORT" ]; then
        for _ in $(seq 50); do
            (exec 3<>"/dev/tcp/127.0.0.1/$SRV_PORT") 2>/dev/null && return
            kill -0 "$SRV" 2>/dev/null || break
            sleep 0.1
        done
    fi
    echo "bench-peers: $1 did not start:" >&2
    cat "$log" >&2
    exit 3
}
stop_server() { kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null || true; SRV=; }

cat <<EOF
bench-peers: $USERS users, $SENDERS senders, $RATE msg/s in total (128 bytes) for $DURATION;
median of $REPS run(s) per server, a fresh server per run; $(nproc) cores, shared with loadgen
  chat-server  our release build ($SERVER)
  socketio     Socket.IO 4 on node $(node --version) ($PEERS/socketio-chat.mjs)
  json-chat    JSON chat on node ws ($PEERS/json-chat.mjs)
EOF
: > "$WORK/rows"
for rep in $(seq "$REPS"); do
    for i in 0 1 2; do
        kind=${KINDS[$(((rep - 1 + i) % 3))]}
        echo "bench-peers: run $rep/$REPS: $kind" >&2
        start_server "$kind"
        out="$WORK/out-$rep-$kind"
        rss0=$(status_kb VmRSS)
        cpu0=$(server_ticks)
        code=0
        "$LOADGEN" run "$WORK/$kind.toml" --quiet --calibration off --target "ws://127.0.0.1:$SRV_PORT/" \
            --out "$out" >"$out.log" 2>&1 7>&- &
        LG=$!
        wait "$LG" || code=$?
        LG=
        if [ ! -e "/proc/$SRV/stat" ]; then
            echo "bench-peers: run $rep $kind: the server died during the run:" >&2
            cat "$WORK/server.log" >&2
            exit 3
        fi
        cpu1=$(server_ticks)
        hwm=$(status_kb VmHWM)
        stop_server
        if [ ! -s "$out/summary.json" ]; then
            echo "bench-peers: run $rep $kind: loadgen wrote no summary (exit $code):" >&2
            cat "$out.log" >&2
            exit 3
        fi
        python3 - "$out/summary.json" "$kind" "$rep" "$code" "$cpu0" "$cpu1" "$TCK" \
            "$rss0" "$hwm" "$USERS" >> "$WORK/rows" <<'PY'
import json, sys
path, kind, rep, code = sys.argv[1:5]
cpu0, cpu1, tck, rss0, hwm, users = map(float, sys.argv[5:11])
s = json.load(open(path))
d, lost = s["totals"]["delivered"], s["totals"]["lost"]
cpu_s = (cpu1 - cpu0) / tck
cpu_us = cpu_s * 1e6 / d if d else float("nan")
ratio = s["delivery_ratio"] if s["delivery_ratio"] is not None else float("nan")
print(f'{kind} {rep} {s["latency_us"]["p50"] / 1000:.3f} {s["latency_us"]["p99"] / 1000:.3f} '
      f'{s["deliveries_per_sec"]:.1f} {lost} {cpu_us:.2f} {(hwm - rss0) / users:.2f} '
      f'{d} {ratio:.6f} {cpu_s:.2f} {rss0:.0f} {hwm:.0f} {code}')
PY
    done
done

python3 - "$WORK/rows" "${KINDS[@]}" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
kinds = sys.argv[2:]
print(f'{"server":<12} {"p50_ms":>8} {"p99_ms":>8} {"deliveries/s":>13} {"lost":>6} '
      f'{"cpu_us/dlv":>11} {"rss_kb/session":>15}')
for kind in kinds:
    mine = [r for r in rows if r[0] == kind]
    m = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f'{kind:<12} {m(2):>8.2f} {m(3):>8.2f} {m(4):>13.0f} {m(5):>6.0f} {m(6):>11.2f} {m(7):>15.1f}')
print("runs:")
print(f'{"server":<12} {"rep":>3} {"p50_ms":>8} {"p99_ms":>8} {"deliveries/s":>13} {"lost":>6} '
      f'{"cpu_us/dlv":>11} {"rss_kb/session":>15} {"delivered":>10} {"ratio":>9} {"cpu_s":>6} '
      f'{"rss0_kb":>8} {"hwm_kb":>8}')
for kind in kinds:
    for r in (r for r in rows if r[0] == kind):
        print(f'{r[0]:<12} {r[1]:>3} {float(r[2]):>8.2f} {float(r[3]):>8.2f} {float(r[4]):>13.0f} '
              f'{r[5]:>6} {float(r[6]):>11.2f} {float(r[7]):>15.1f} {r[8]:>10} {float(r[9]):>9.6f} '
              f'{r[10]:>6} {r[11]:>8} {r[12]:>8}' + ("" if r[13] == "0" else f"  (loadgen exit {r[13]})"))
lossy = [f"{r[0]} run {r[1]} lost {r[5]}" for r in rows if int(r[5]) != 0]
if lossy:
    print("bench-peers: messages were lost, so the figures above do not compare like with like: "
          + "; ".join(lossy), file=sys.stderr)
    sys.exit(1)
PY
