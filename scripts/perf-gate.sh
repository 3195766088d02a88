#!/usr/bin/env bash
# Performance regression gate: builds BASE_REF (default HEAD~1) in a git worktree and the
# working tree, both in release mode and with the server counting its allocations (cargo
# feature count-allocations, where the base has it), then runs `loadgen gate` with
# scenarios/gate.toml: the two servers alternately, PAIRS pairs (default 7); timings judged
# with TOLERANCE, cost counters per delivery with COUNTER_TOLERANCE.
# Writes reports/gate-<time>/compare.md and compare.json.
#
# Works from any directory. Binaries are built where cargo builds this workspace
# (CARGO_TARGET_DIR, a cargo config's build.target-dir, or ./target — call it TARGET) and
# run from there: the candidate's in TARGET/gate/candidate-target, the base's in its own
# TARGET/gate/base-target, built from a worktree in TARGET/gate/base-src.
#
# Usage: scripts/perf-gate.sh [BASE_REF]
#   PAIRS=7 TOLERANCE=0.10 COUNTER_TOLERANCE=0.02 SCENARIO=scenarios/gate.toml (a relative
#   SCENARIO is taken from the current directory; the default is the repository's)
#   CANDIDATE_FEATURES=gate-slowdown   build the candidate server with a cargo feature
# Exit codes: 0 pass (or comparison skipped because the base cannot be built — it says
# so); 1 regression or correctness failure; 2 usage; 3 could not run.
set -uo pipefail
[ $# -le 1 ] || { echo "usage: scripts/perf-gate.sh [BASE_REF]" >&2; exit 2; }
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; CALLER_DIR, ROOT, TARGET_DIR

BASE_REF=${1:-HEAD~1}
PAIRS=${PAIRS:-7}
TOLERANCE=${TOLERANCE:-0.10}
SCENARIO=${SCENARIO:-$ROOT/scenarios/gate.toml}
case $SCENARIO in /*) ;; *) SCENARIO="$CALLER_DIR/$SCENARIO" ;; esac

if ! BASE_SHA=$(git rev-parse --verify --quiet "$BASE_REF^{commit}"); then
    echo "perf-gate: no commit $BASE_REF (first commit or shallow clone): comparison SKIPPED"
    exit 0
fi
GATE="$TARGET_DIR/gate"
BASE_SRC="$GATE/base-src"
# The base's own target dir: building it into the candidate's would overwrite the
# candidate's binaries, and each build would undo the other's cache.
BASE_TARGET="$GATE/base-target"
mkdir -p "$GATE" || exit 3
git worktree remove --force "$BASE_SRC" >/dev/null 2>&1 || rm -rf "$BASE_SRC"
git worktree prune
if ! git worktree add --detach --quiet "$BASE_SRC" "$BASE_SHA"; then
    echo "perf-gate: cannot check out $BASE_REF: comparison SKIPPED"
    exit 0
fi
trap 'git worktree remove --force "$BASE_SRC" >/dev/null 2>&1 || true' EXIT

echo "perf-gate: building base $BASE_REF ($BASE_SHA)"
# A base from before the allocation counter is built without it: its allocations are then
# "not measured", and the other metrics are compared as ever.
BASE_FEATURES=()
if grep -q '^count-allocations' "$BASE_SRC/server/Cargo.toml" 2>/dev/null; then
    BASE_FEATURES=(--features count-allocations)
fi
if ! (cd "$BASE_SRC" && [ -f server/Cargo.toml ] && \
      CARGO_TARGET_DIR="$BASE_TARGET" cargo build --release --quiet -p chat-server \
          "${BASE_FEATURES[@]}"); then
    echo "perf-gate: the base $BASE_REF cannot be built (no chat-server there?): comparison SKIPPED"
    exit 0
fi
BASE_BIN="$BASE_TARGET/release/chat-server"

echo "perf-gate: building the candidate (working tree)"
CANDIDATE_TARGET="$GATE/candidate-target"
CARGO_TARGET_DIR="$CANDIDATE_TARGET" cargo build --release --quiet -p chat-server \
    --features "count-allocations${CANDIDATE_FEATURES:+,$CANDIDATE_FEATURES}" || exit 3
CANDIDATE_BIN="$CANDIDATE_TARGET/release/chat-server"
cargo build --release --quiet -p loadgen || exit 3
LOADGEN="$TARGET_DIR/release/loadgen"
for bin in "$BASE_BIN" "$CANDIDATE_BIN" "$LOADGEN"; do
    [ -x "$bin" ] || { echo "perf-gate: cargo built, but there is no $bin" >&2; exit 3; }
done

OUT="$ROOT/reports/gate-$(date -u +%Y%m%dT%H%M%SZ)"
# The server commands go through sh -c: quote the paths.
"$LOADGEN" gate \
    --base "$(printf '%q' "$BASE_BIN") --listen {addr} --log warn" \
    --candidate "$(printf '%q' "$CANDIDATE_BIN") --listen {addr} --log warn" \
    --scenario "$SCENARIO" --pairs "$PAIRS" --tolerance "$TOLERANCE" \
    --counter-tolerance "${COUNTER_TOLERANCE:-0.02}" --out "$OUT"
