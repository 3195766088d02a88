#!/usr/bin/env bash
# How far chat-server and loadgen are from the physical floor of this machine (a
# benchmark, not a CI step: about 10 minutes). Builds scripts/floor/floor.c (one thread
# send()ing a frame to each of N loopback sockets, one thread epoll_wait + read()ing
# them: see its header) and the release binaries, then, REPEAT times (default 3):
#   - the floor: `floor wide 9000` (one frame to each of 9,000 sockets, twice a second;
#     `floor rate` is kept for reading at a rate by hand, but its one sending thread
#     cannot reach the dense shapes' rates, so they have no floor);
#   - chat-server + loadgen at the same shapes, a fresh server per run:
#       wide    one message to 9,000 users twice a second (9,001 users, one sender)
#       300k    1,000 users, 10 senders, 300 msg/s   (~300,000 deliveries/s)
#       1.2M    1,000 users, 10 senders, 1,200 msg/s
#       2M      1,000 users, 10 senders, 2,000 msg/s
#     each played twice, SHORT and LONG seconds long, so that CPU per delivery is the
#     difference of the two over the difference of their deliveries: the marginal cost
#     of a delivery, without the logins, the ramp and the reports;
#   - memory: 10,000 users receiving one broadcast a second for 10 s: loadgen's peak RSS
#     per user and chat-server's VmHWM per session (both divided by the users, whole).
# and prints one table of medians: each side's CPU per delivery, the floor's, their
# ratios, loadgen's p99 (of the LONG run) against the floor's, and the floor's
# last-reader time (the median round's last socket to have its frame).
#
# Usage: scripts/bench-floor.sh                 REPEAT=3 SHORT=4 LONG=12 PORT=16900
#        SHAPES="wide 300k" scripts/bench-floor.sh   (any of: wide 300k 1.2M 2M memory)
# Works from any directory; runs the binaries where cargo builds them.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; ROOT, TARGET_DIR

REPEAT=${REPEAT:-3}
SHORT=${SHORT:-4}
LONG=${LONG:-12}
PORT=${PORT:-16900}
SHAPES=${SHAPES:-wide 300k 1.2M 2M memory}
WIDE_USERS=9000
FRAME=147 # bytes of one delivered frame: a 128-byte message, " -- FROM user0" and the header
for shape in $SHAPES; do
    case $shape in wide | 300k | 1.2M | 2M | memory) ;; *)
        echo "bench-floor: unknown shape $shape (wide 300k 1.2M 2M memory)" >&2
        exit 2 ;;
    esac
done
command -v cc >/dev/null || { echo "bench-floor: needs a C compiler: apt-get install -y gcc" >&2; exit 3; }

mkdir -p "$TARGET_DIR/floor"
FLOOR="$TARGET_DIR/floor/floor"
cc -O2 -Wall -Wextra -pthread -o "$FLOOR" scripts/floor/floor.c
cargo build --release --quiet -p chat-server -p loadgen
SERVER="$TARGET_DIR/release/chat-server"
LOADGEN="$TARGET_DIR/release/loadgen"
WORK=$(mktemp -d)
SRV=
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf "$WORK"' EXIT
RESULTS="$WORK/results.jsonl"
TCK=$(getconf CLK_TCK)

start_server() {
    "$SERVER" --listen "127.0.0.1:$PORT" --log warn >>"$WORK/server.log" 2>&1 &
    SRV=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return
        sleep 0.1
    done
    echo "bench-floor: chat-server did not start on port $PORT" >&2
    exit 3
}
stop_server() { kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null || true; SRV=; }
server_cpu() { awk -v t="$TCK" '{printf "%.3f", ($14 + $15) / t}' "/proc/$SRV/stat"; }
server_hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$SRV/status"; }

# One loadgen run against a fresh server: writes a JSON object to $WORK/NAME.json (in this
# shell, not a subshell, so that the EXIT trap knows the server to stop).
#   play NAME USERS SENDERS RATE SECONDS
play() {
    local name=$1 users=$2 senders=$3 rate=$4 seconds=$5
    cat >"$WORK/$name.toml" <<TOML
name = "bench-floor-$name"
[users]
count = $users
connect_rate = 3000
[[phase]]
duration = "${seconds}s"
rate = $rate
senders = $senders
message_size = 128
TOML
    start_server
    local before after hwm
    before=$(server_cpu)
    "$LOADGEN" run "$WORK/$name.toml" --quiet --target "ws://127.0.0.1:$PORT/" \
        --out "$WORK/out-$name" >"$WORK/stdout-$name" 2>&1 || true
    after=$(server_cpu)
    hwm=$(server_hwm_kb)
    stop_server
    python3 - "$WORK/out-$name/summary.json" "$before" "$after" "$hwm" "$users" \
        >"$WORK/$name.json" <<'PY'
import json, sys
path, before, after, hwm, users = sys.argv[1:]
s = json.load(open(path))
r = s["loadgen_resources"]
print(json.dumps({
    "delivered": s["totals"]["delivered"], "ratio": s["delivery_ratio"],
    "p99_ms": s["latency_us"]["p99"] / 1000, "server_cpu": float(after) - float(before),
    "loadgen_cpu": r["cpu_seconds"], "loadgen_peak_kb": r["peak_rss_bytes"] / 1024,
    "server_hwm_kb": float(hwm), "users": int(users)}))
PY
}

# A shape at SHORT and LONG seconds: one JSON line into the results.
#   shape NAME USERS SENDERS RATE FLOOR_ARGS...
shape() {
    local name=$1 users=$2 senders=$3 rate=$4
    shift 4
    local floor_line=""
    [ $# -gt 0 ] && { floor_line=$("$FLOOR" "$@" | tail -1) || true; }
    play "$name-short" "$users" "$senders" "$rate" "$SHORT"
    play "$name-long" "$users" "$senders" "$rate" "$LONG"
    python3 - "$name" "$floor_line" "$WORK/$name-short.json" "$WORK/$name-long.json" >>"$RESULTS" <<'PY'
import json, sys
name, floor_line = sys.argv[1], sys.argv[2]
short, long = (json.load(open(p)) for p in sys.argv[3:5])
floor = dict(kv.split("=") for kv in floor_line.split())
nan = float("nan")
d = long["delivered"] - short["delivered"]
per = lambda key: (long[key] - short[key]) * 1e6 / d if d > 0 else float("nan")
print(json.dumps({"shape": name, "server_us": per("server_cpu"), "loadgen_us": per("loadgen_cpu"),
                  "p99_ms": long["p99_ms"], "ratio": min(short["ratio"], long["ratio"]),
                  "floor_send_us": float(floor.get("send_us", nan)),
                  "floor_read_us": float(floor.get("read_us", nan)),
                  "floor_p99_ms": float(floor.get("p99_ms", nan)),
                  "floor_last_ms": float(floor.get("last_reader_ms", nan))}))
PY
}

for round in $(seq "$REPEAT"); do
    for s in $SHAPES; do
        echo "bench-floor: round $round/$REPEAT, $s" >&2
        case $s in
            wide) shape wide $((WIDE_USERS + 1)) 1 2 wide "$WIDE_USERS" 20 500 "$FRAME" ;;
            # No floor for the dense shapes: the floor's one sending thread, a send() per
            # frame, cannot reach these rates (its latency runs away), so what its reader
            # pays there is no floor. Their check is that they do not get worse.
            300k) shape 300k 1000 10 300 ;;
            1.2M) shape 1.2M 1000 10 1200 ;;
            2M) shape 2M 1000 10 2000 ;;
            memory)
                play memory 10000 1 1 10
                python3 -c '
import json, sys
m = json.load(open(sys.argv[1]))
print(json.dumps({"shape": "memory", "loadgen_kb_per_user": m["loadgen_peak_kb"] / m["users"],
                  "server_kb_per_session": m["server_hwm_kb"] / m["users"], "ratio": m["ratio"]}))' \
                    "$WORK/memory.json" >>"$RESULTS" ;;
        esac
    done
done

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs):
    xs = sorted(xs); n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
shapes = [s for s in ["wide", "300k", "1.2M", "2M"] if any(r["shape"] == s for r in rows)]
if shapes:
    print("| shape | delivered | server µs/delivery | floor send µs | server/floor | loadgen µs/delivery | floor read µs | loadgen/floor | p99 ms | floor p99 ms | floor last reader ms | p99/last reader |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for s in shapes:
    rs = [r for r in rows if r["shape"] == s]
    m = {k: med([r[k] for r in rs]) for k in rs[0] if k != "shape"}
    last = m["floor_last_ms"]
    wide = s == "wide"
    print(f'| {s} | {min(r["ratio"] for r in rs) * 100:.2f}% | {m["server_us"]:.2f} | '
          + (f'{m["floor_send_us"]:.2f} | {m["server_us"] / m["floor_send_us"]:.2f}x' if wide else "— | —")
          + f' | {m["loadgen_us"]:.2f} | '
          + (f'{m["floor_read_us"]:.2f} | {m["loadgen_us"] / m["floor_read_us"]:.2f}x' if wide else "— | —")
          + f' | {m["p99_ms"]:.1f} | '
          + (f'{m["floor_p99_ms"]:.1f} | ' if wide else "— | ")
          + (f'{last:.1f} | {m["p99_ms"] / last:.2f}x |' if wide and last > 0 else "— | — |"))
mem = [r for r in rows if r["shape"] == "memory"]
if mem:
    print()
    print(f'memory, 10,000 users receiving one broadcast a second (medians of {len(mem)}): '
          f'loadgen {med([r["loadgen_kb_per_user"] for r in mem]):.1f} KB per user (peak RSS / users), '
          f'chat-server {med([r["server_kb_per_session"] for r in mem]):.1f} KB per session (VmHWM / sessions), '
          f'delivered {min(r["ratio"] for r in mem) * 100:.2f}%')
print()
print(f"medians of {max(1, len([r for r in rows if r['shape'] == (shapes or ['memory'])[0]]))} rounds; "
      "CPU per delivery is the LONG run's minus the SHORT run's CPU over their difference in deliveries; "
      "the floor is measured for `wide` only: the dense shapes' check is that they do not get worse")
PY
