#!/usr/bin/env bash
# What splitting costs (a benchmark, not a test): the same load run by one loadgen process
# and by `--workers W`, in alternating pairs against one release chat-server, comparing
# loadgen's CPU per delivery (every loadgen process of the run summed, the coordinator
# included: `loadgen_resources` in summary.json) and the latency.
#
# Usage: scripts/bench-workers.sh                 (10,000 users, --workers 2, 3 pairs)
#        USERS=10000 WORKERS=2 PAIRS=3 RATE=5 DURATION=20s PORT=16900 scripts/bench-workers.sh
# Prints one line per run, then the medians and the median of the per-pair ratios
# (workers / one process). The design target is a ratio of at most 1.10.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; TARGET_DIR

USERS=${USERS:-10000}
WORKERS=${WORKERS:-2}
PAIRS=${PAIRS:-3}
RATE=${RATE:-5}
SENDERS=${SENDERS:-10}
DURATION=${DURATION:-20s}
PORT=${PORT:-16900}

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
cat > "$WORK/bench.toml" <<TOML
name = "bench-workers"
[users]
count = $USERS
connect_rate = 2000
[[phase]]
name = "settle"
duration = "2s"
[[phase]]
duration = "$DURATION"
rate = $RATE
senders = $SENDERS
message_size = 128
TOML

echo "== $USERS users, $RATE msg/s to all of them for $DURATION; 1 process vs --workers $WORKERS, $PAIRS pairs" >&2
for pair in $(seq "$PAIRS"); do
    # Alternate which goes first, so that order does not look like a difference.
    if [ $((pair % 2)) -eq 1 ]; then order="1 $WORKERS"; else order="$WORKERS 1"; fi
    for w in $order; do
        "$LOADGEN" run "$WORK/bench.toml" --quiet --workers "$w" \
            --target "ws://127.0.0.1:$PORT/" --out "$WORK/pair$pair-w$w" >/dev/null 2>&1 || true
        sleep 2
    done
done
python3 - "$WORK" "$PAIRS" "$WORKERS" <<'PY'
import json, statistics, sys
work, pairs, workers = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def read(pair, w):
    s = json.load(open(f"{work}/pair{pair}-w{w}/summary.json"))
    d = s["totals"]["delivered"]
    cpu = s["loadgen_resources"]["cpu_seconds"]
    return {"us": cpu * 1e6 / d, "p50": s["latency_us"]["p50"] / 1000, "p99": s["latency_us"]["p99"] / 1000,
            "d": d, "lost": s["totals"]["lost"], "procs": s["loadgen_resources"]["processes"]}
rows = {w: [read(p, w) for p in range(1, pairs + 1)] for w in ("1", workers)}
print(f"{'run':<14} {'processes':>9} {'deliveries':>11} {'lost':>5} {'us/delivery':>12} {'p50 ms':>8} {'p99 ms':>8}")
for p in range(pairs):
    for w in ("1", workers):
        r = rows[w][p]
        print(f"pair {p+1} w={w:<5} {r['procs']:>9} {r['d']:>11} {r['lost']:>5} {r['us']:>12.2f} {r['p50']:>8.2f} {r['p99']:>8.2f}")
med = lambda w, k: statistics.median(r[k] for r in rows[w])
ratio = statistics.median(rows[workers][p]["us"] / rows["1"][p]["us"] for p in range(pairs))
print(f"median: 1 process {med('1', 'us'):.2f} us/delivery, --workers {workers} {med(workers, 'us'):.2f} us/delivery; "
      f"median per-pair ratio {ratio:.3f} (target <= 1.10)")
print(f"median p50: {med('1', 'p50'):.2f} ms vs {med(workers, 'p50'):.2f} ms; p99: {med('1', 'p99'):.2f} ms vs {med(workers, 'p99'):.2f} ms")
PY
