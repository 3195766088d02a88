#!/usr/bin/env bash
# A soak (not a test): the release chat-server as its own process and loadgen running
# scenarios/soak.toml against it for DURATION (default 1h): 1,000 users, ~20,000
# deliveries/s, 5 relogins/s and 5 users/s churning. loadgen samples its own and the
# server's resident memory and CPU every 10 s (the server's from its /metrics) into the
# run's resources.csv and report.html ("memory over time"), and judges each one's growth
# after the first 5 minutes: at most 1% of its memory per hour or 2 MB/h, whichever is
# larger ([thresholds] max_memory_growth). Every delivery, eviction and order check of
# the run holds as in any run.
#
# Usage: scripts/soak.sh [DURATION]   e.g. 1h (default), 10m, 24h; at least 6m, so that
#                                      growth is measured after the 5-minute settling
# Prints the run's summary (its "memory" rows give RSS after settling and at the end, and
# MB/h) and where the reports are. Exit codes are loadgen run's: 0 every threshold held
# (memory growth included), 1 a threshold failed, 2 bad usage, 3 could not run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; TARGET_DIR
DURATION=${1:-1h}
case $DURATION in
    *[0-9]s | *[0-9]m | *[0-9]h) ;;
    *)
        echo "soak.sh: DURATION like 90m, 1h or 24h (got '$DURATION')" >&2
        exit 2
        ;;
esac
PORT=${PORT:-16811}
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
sed "s/^duration = \"1h\"/duration = \"$DURATION\"/" scenarios/soak.toml >"$WORK/soak.toml"
OUT="reports/soak-$(date -u +%Y%m%dT%H%M%SZ)"
echo "soak.sh: chat-server pid $SRV on 127.0.0.1:$PORT; loadgen runs $DURATION; reports in $OUT" >&2
set +e
"$LOADGEN" run "$WORK/soak.toml" --target "ws://127.0.0.1:$PORT/" --out "$OUT" --quiet
STATUS=$?
set -e
exit $STATUS
