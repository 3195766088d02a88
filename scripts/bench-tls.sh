#!/usr/bin/env bash
# TLS relogin-storm benchmark (not a test): the release chat-server terminating TLS
# (--tls-cert/--tls-key, a throwaway CA and certificate made here with openssl), and
# loadgen storming it with relogins over wss://, alternately with TLS session resumption
# (loadgen's default) and without (--no-tls-resumption), PAIRS times each. Prints per run:
# logins, TLS handshakes per second, how many the server resumed, TLS handshake p50/p99
# (loadgen's connect_us.tls) and CPU per login on both sides; then the medians per mode.
#
# Usage: scripts/bench-tls.sh
#        USERS=2000 RELOGIN_RATE=500 DURATION=10s PAIRS=3 PORT=16900 scripts/bench-tls.sh
# CPU per login is each side's CPU over the run (the ramp's logins, the storm, the probes
# that verify each relogin, one broadcast a second here) divided by every TLS login.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; TARGET_DIR

USERS=${USERS:-2000}
RELOGIN_RATE=${RELOGIN_RATE:-500}
DURATION=${DURATION:-10s}
PAIRS=${PAIRS:-3}
PORT=${PORT:-16900}
command -v openssl >/dev/null || { echo "bench-tls: needs openssl (apt-get install openssl)" >&2; exit 3; }

cargo build --release --quiet -p chat-server -p loadgen
SERVER="$TARGET_DIR/release/chat-server"
LOADGEN="$TARGET_DIR/release/loadgen"
WORK=$(mktemp -d)
SRV=
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf "$WORK"' EXIT

# A CA and a server certificate for 127.0.0.1, valid for a day, never kept.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj "/CN=bench CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$WORK/ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 1 -extfile "$WORK/ext" -out "$WORK/cert.pem" 2>/dev/null

"$SERVER" --listen "127.0.0.1:$PORT" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
    --log warn &
SRV=$!
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done
TCK=$(getconf CLK_TCK)
server_cpu() { awk -v t="$TCK" '{printf "%.3f", ($14 + $15) / t}' "/proc/$SRV/stat"; }
metric() {
    curl -s --cacert "$WORK/ca.pem" "https://127.0.0.1:$PORT/metrics" |
        awk -v m="$1" '$1 ~ "^"m"(\\{|$)" {s += $NF} END {print s + 0}'
}

cat > "$WORK/storm.toml" <<TOML
name = "bench-tls"
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
TOML

printf '%-8s %8s %12s %9s %10s %10s %13s %13s\n' \
    mode logins handshakes/s resumed tls_p50_ms tls_p99_ms server_us/login loadgen_us/login
: > "$WORK/rows"
for pair in $(seq "$PAIRS"); do
    # Counterbalanced: resumption first in odd pairs, last in even ones.
    if [ $((pair % 2)) -eq 1 ]; then MODES="resume full"; else MODES="full resume"; fi
    for mode in $MODES; do
        flag=()
        [ "$mode" = full ] && flag=(--no-tls-resumption)
        out="$WORK/out-$pair-$mode"
        cpu0=$(server_cpu); hs0=$(metric chat_tls_handshakes_total); res0=$(metric chat_tls_resumed_total)
        "$LOADGEN" run "$WORK/storm.toml" --quiet --target "wss://127.0.0.1:$PORT/" \
            --ca-file "$WORK/ca.pem" "${flag[@]}" --out "$out" >"$out.log" 2>&1 || true
        cpu1=$(server_cpu); hs1=$(metric chat_tls_handshakes_total); res1=$(metric chat_tls_resumed_total)
        python3 - "$out/summary.json" "$mode" "$cpu0" "$cpu1" "$hs0" "$hs1" "$res0" "$res1" >> "$WORK/rows" <<'PY'
import json, sys
path, mode = sys.argv[1], sys.argv[2]
cpu0, cpu1, hs0, hs1, res0, res1 = map(float, sys.argv[3:9])
s = json.load(open(path))
tls = s["connect_us"]["tls"]
logins = tls["count"]
seconds = s["ramp_s"] + s["measured_s"]
loadgen_cpu = s["loadgen_resources"]["cpu_seconds"] or float("nan")
per = lambda cpu: cpu * 1e6 / logins if logins else float("nan")
print(f'{mode} {logins} {(hs1 - hs0) / seconds:.0f} {res1 - res0:.0f} {tls["p50"] / 1000:.2f} '
      f'{tls["p99"] / 1000:.2f} {per(cpu1 - cpu0):.0f} {per(loadgen_cpu):.0f}')
PY
        tail -1 "$WORK/rows" | awk '{printf "%-8s %8s %12s %9s %10s %10s %13s %13s\n", $1, $2, $3, $4, $5, $6, $7, $8}'
    done
done
echo "medians:"
python3 - "$WORK/rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
for mode in ("resume", "full"):
    mine = [r for r in rows if r[0] == mode]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f'{mode:<8} handshakes/s {med(2):.0f}  resumed {med(3):.0f} of {med(1):.0f}  '
          f'TLS p50 {med(4):.2f} ms  p99 {med(5):.2f} ms  CPU per login: server {med(6):.0f} µs, loadgen {med(7):.0f} µs')
PY
