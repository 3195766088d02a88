#!/usr/bin/env bash
# Does a published capacity hold later? Runs a capacity report's capacity.toml as plain
# `loadgen run`s, spread out in time, and counts how many meet the objective.
#
#   scripts/recheck-capacity.sh REPORT_DIR [RUNS] [SPACING_SECONDS] [FILE]
#
#   REPORT_DIR       a `loadgen capacity` report folder (holds capacity.toml)
#   RUNS             plain runs (default 10, at most 100)
#   SPACING_SECONDS  from the start of one run to the start of the next (default 200:
#                    10 runs then span 30 minutes)
#   FILE             capacity.toml (default), knee.toml or above-knee.toml
#
# Each run's reports go to REPORT_DIR/recheck-<UTC time>/NN/. Prints one line per run
# (start time, exit, p99, delivery ratio, the machine calibration's drift) and then
# "held: P of N". The loop is bounded: RUNS runs, then it stops.
#
# Exit codes: 0 when at least 9 in 10 of the runs met the objective (the acceptance of
# issue #17), 1 when fewer did, 2 bad usage, 3 a run could not be carried out.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

case "${1:-}" in -h|--help|"") sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; [ -n "${1:-}" ] && exit 0; exit 2 ;; esac
REPORT=$1
case $REPORT in /*) ;; *) REPORT="$CALLER_DIR/$REPORT" ;; esac
RUNS=${2:-10}
SPACING=${3:-200}
FILE=${4:-capacity.toml}
if ! [[ $RUNS =~ ^[0-9]+$ ]] || [ "$RUNS" -lt 1 ] || [ "$RUNS" -gt 100 ]; then
    echo "recheck-capacity.sh: RUNS must be 1 to 100 (got '$RUNS')" >&2
    exit 2
fi
if ! [[ $SPACING =~ ^[0-9]+$ ]] || [ "$SPACING" -gt 3600 ]; then
    echo "recheck-capacity.sh: SPACING_SECONDS must be 0 to 3600 (got '$SPACING')" >&2
    exit 2
fi
SCENARIO="$REPORT/$FILE"
[ -f "$SCENARIO" ] || { echo "recheck-capacity.sh: no $SCENARIO (is $REPORT a capacity report?)" >&2; exit 2; }
command -v jq >/dev/null || { echo "recheck-capacity.sh: needs jq (apt-get install -y jq)" >&2; exit 2; }

echo "== building loadgen (release)" >&2
cargo build --release -q -p loadgen -p chat-server || exit 3
LOADGEN="$TARGET_DIR/release/loadgen"
OUT="$REPORT/recheck-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"

held=0
for i in $(seq 1 "$RUNS"); do
    started=$(date +%s)
    dir=$(printf '%s/%02d' "$OUT" "$i")
    set +e
    "$LOADGEN" run "$SCENARIO" --quiet --out "$dir" >"$dir.log" 2>&1
    code=$?
    set -e
    if [ "$code" -ge 2 ]; then
        echo "recheck-capacity.sh: run $i exited $code (see $dir.log)" >&2
        exit 3
    fi
    [ "$code" -eq 0 ] && held=$((held + 1))
    jq -r --arg i "$i" --arg code "$code" '
        def pct: if . == null then "n/a" else ((. * 10 | round) / 10 | tostring) + "%" end;
        "run \($i)  \(.started_at)  exit \($code)  p99 \(.latency_us.p99 / 1000) ms  delivery ratio \(.delivery_ratio)  machine drift: send \(.calibration.drift_percent.loopback_send | pct), CPU \(.calibration.drift_percent.cpu_workload | pct)"
    ' "$dir/summary.json"
    if [ "$i" -lt "$RUNS" ]; then
        wait=$((started + SPACING - $(date +%s)))
        [ "$wait" -gt 0 ] && sleep "$wait"
    fi
done
echo "held: $held of $RUNS ($FILE of $REPORT)"
echo "reports: $OUT"
[ $((held * 10)) -ge $((RUNS * 9)) ]
