#!/usr/bin/env bash
# Authentication benchmark (not a test): what a verified login costs on both sides. The
# release chat-server is started fresh for every run — without a key, with an HS256 secret,
# or with an ES256 public key — and loadgen storms it with relogins, each login carrying a
# token minted for it (none without a key). ROUNDS rounds of the three modes, the order
# rotating each round (off HS256 ES256, HS256 ES256 off, ...). Prints per run: logins,
# each side's CPU per login, loadgen's token mint p50/p99 and the upgrade p50/p99; then
# per mode the medians, and what authentication adds over "off".
#
# Usage: scripts/bench-auth.sh
#        USERS=1000 RELOGIN_RATE=400 DURATION=10s ROUNDS=5 PORT=16910 scripts/bench-auth.sh
# CPU per login is each side's CPU over the run (the ramp's logins, the storm, and the
# probe broadcast each second that verifies the relogins; no other traffic) divided by every
# login of the run; the differences between modes are the cost of authentication, since
# everything else is the same.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; TARGET_DIR

USERS=${USERS:-1000}
RELOGIN_RATE=${RELOGIN_RATE:-400}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-5}
PORT=${PORT:-16910}
command -v openssl >/dev/null || { echo "bench-auth: needs openssl (apt-get install openssl)" >&2; exit 3; }

cargo build --release --quiet -p chat-server -p loadgen
SERVER="$TARGET_DIR/release/chat-server"
LOADGEN="$TARGET_DIR/release/loadgen"
WORK=$(mktemp -d)
SRV=
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf "$WORK"' EXIT
scripts/auth-keys.sh "$WORK/keys" >/dev/null

cat > "$WORK/storm.toml" <<TOML
name = "bench-auth"
[users]
count = $USERS
connect_rate = 2000
[[phase]]
name = "relogin storm"
duration = "$DURATION"
relogin_rate = $RELOGIN_RATE
[verify]
probe_interval = "1s"
probe_deadline = "3s"
[thresholds]
max_eviction_failures = 0
max_connect_errors = 0
TOML

TCK=$(getconf CLK_TCK)
server_cpu() { awk -v t="$TCK" '{printf "%.3f", ($14 + $15) / t}' "/proc/$SRV/stat"; }
start_server() { # MODE
    local key=()
    case $1 in
        hs256) key=(--jwt-secret-file "$WORK/keys/hs256.secret") ;;
        es256) key=(--jwt-public-key "$WORK/keys/es256.pub.pem") ;;
    esac
    "$SERVER" --listen "127.0.0.1:$PORT" --log warn "${key[@]}" &
    SRV=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return
        sleep 0.1
    done
    echo "bench-auth: chat-server did not start" >&2
    exit 3
}
stop_server() { kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null || true; SRV=; }

printf '%-6s %7s %16s %17s %14s %14s %16s\n' \
    mode logins server_us/login loadgen_us/login mint_p50_us mint_p99_us upgrade_p50_us
: > "$WORK/rows"
MODES=(off hs256 es256)
for round in $(seq "$ROUNDS"); do
    for i in 0 1 2; do
        mode=${MODES[$(((round - 1 + i) % 3))]}
        flag=()
        case $mode in
            hs256) flag=(--jwt-secret-file "$WORK/keys/hs256.secret") ;;
            es256) flag=(--jwt-private-key "$WORK/keys/es256.pem") ;;
        esac
        start_server "$mode"
        out="$WORK/out-$round-$mode"
        cpu0=$(server_cpu)
        code=0
        "$LOADGEN" run "$WORK/storm.toml" --quiet --calibration off --target "ws://127.0.0.1:$PORT/" \
            "${flag[@]}" --out "$out" >"$out.log" 2>&1 || code=$?
        cpu1=$(server_cpu)
        stop_server
        if [ ! -s "$out/summary.json" ]; then
            echo "bench-auth: run $round $mode wrote no report (exit $code):" >&2
            cat "$out.log" >&2
            exit 3
        fi
        python3 - "$out/summary.json" "$mode" "$cpu0" "$cpu1" "$code" "$round" >> "$WORK/rows" <<'PY'
import json, sys
path, mode, code = sys.argv[1], sys.argv[2], sys.argv[5]
cpu0, cpu1 = map(float, sys.argv[3:5])
s = json.load(open(path))
logins = s["totals"]["connects"]
loadgen_cpu = s["loadgen_resources"]["cpu_seconds"] or float("nan")
per = lambda cpu: cpu * 1e6 / logins if logins else float("nan")
mint, upgrade = s["connect_us"]["mint"], s["connect_us"]["upgrade"]
print(f'{mode} {logins} {per(cpu1 - cpu0):.1f} {per(loadgen_cpu):.1f} {mint["p50"]} {mint["p99"]} '
      f'{upgrade["p50"]} {code} {sys.argv[6]}')
PY
        tail -1 "$WORK/rows" | awk '{printf "%-6s %7s %16s %17s %14s %14s %16s%s\n", $1, $2, $3, $4, $5, $6, $7, ($8 == "0" ? "" : "  (exit " $8 ")")}'
    done
done
echo "medians of $ROUNDS runs per mode:"
python3 - "$WORK/rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
med = {}
for mode in ("off", "hs256", "es256"):
    mine = [r for r in rows if r[0] == mode]
    m = lambda i: statistics.median(float(r[i]) for r in mine)
    med[mode] = (m(2), m(3))
    print(f'{mode:<6} CPU per login: server {m(2):.1f} µs, loadgen {m(3):.1f} µs; '
          f'token mint p50 {m(4):.0f} µs p99 {m(5):.0f} µs; upgrade p50 {m(6):.0f} µs ({m(1):.0f} logins)')
# Side by side: each round's mode against the same round's "off" (the machine drifts
# between rounds; within one, the three runs follow each other).
rounds = {}
for r in rows:
    rounds.setdefault(r[8], {})[r[0]] = r
for mode in ("hs256", "es256"):
    pairs = [(float(rd[mode][2]) - float(rd["off"][2]), float(rd[mode][3]) - float(rd["off"][3]),
              float(rd[mode][2]) / float(rd["off"][2]), float(rd[mode][3]) / float(rd["off"][3]))
             for rd in rounds.values() if mode in rd and "off" in rd]
    m = lambda i: statistics.median(p[i] for p in pairs)
    print(f'{mode} over off, median of {len(pairs)} rounds side by side: server {m(0):+.1f} µs per login '
          f'({m(2):.2f}x), loadgen {m(1):+.1f} µs per login ({m(3):.2f}x)')
PY
