#!/usr/bin/env bash
# Performance regression gate: builds BASE_REF (default HEAD~1) in a git worktree under
# target/ and the working tree, both in release mode, then runs `loadgen gate` with
# scenarios/gate.toml: the two servers alternately, PAIRS pairs (default 5).
# Writes reports/gate-<time>/compare.md and compare.json.
#
# Usage: scripts/perf-gate.sh [BASE_REF]
#   PAIRS=7 TOLERANCE=0.10 SCENARIO=scenarios/gate.toml
#   CANDIDATE_FEATURES=gate-slowdown   build the candidate server with a cargo feature
# Exit codes: 0 pass (or comparison skipped because the base cannot be built — it says
# so); 1 regression or correctness failure; 2 usage; 3 could not run.
set -uo pipefail
cd "$(dirname "$0")/.."

BASE_REF=${1:-HEAD~1}
PAIRS=${PAIRS:-7}
TOLERANCE=${TOLERANCE:-0.10}
SCENARIO=${SCENARIO:-scenarios/gate.toml}
[ $# -le 1 ] || { echo "usage: scripts/perf-gate.sh [BASE_REF]" >&2; exit 2; }

if ! BASE_SHA=$(git rev-parse --verify --quiet "$BASE_REF^{commit}"); then
    echo "perf-gate: no commit $BASE_REF (first commit or shallow clone): comparison SKIPPED"
    exit 0
fi
GATE=target/gate
BASE_SRC="$GATE/base-src"
mkdir -p "$GATE"
git worktree remove --force "$BASE_SRC" >/dev/null 2>&1 || rm -rf "$BASE_SRC"
git worktree prune
if ! git worktree add --detach --quiet "$BASE_SRC" "$BASE_SHA"; then
    echo "perf-gate: cannot check out $BASE_REF: comparison SKIPPED"
    exit 0
fi
trap 'git worktree remove --force "$BASE_SRC" >/dev/null 2>&1 || true' EXIT

echo "perf-gate: building base $BASE_REF ($BASE_SHA)"
if ! (cd "$BASE_SRC" && [ -f server/Cargo.toml ] && \
      CARGO_TARGET_DIR="$PWD/../base-target" cargo build --release --quiet -p chat-server); then
    echo "perf-gate: the base $BASE_REF cannot be built (no chat-server there?): comparison SKIPPED"
    exit 0
fi
BASE_BIN="$GATE/base-target/release/chat-server"

echo "perf-gate: building the candidate (working tree)"
if [ -n "${CANDIDATE_FEATURES:-}" ]; then
    CARGO_TARGET_DIR="$GATE/candidate-target" cargo build --release --quiet -p chat-server \
        --features "$CANDIDATE_FEATURES" || exit 3
    CANDIDATE_BIN="$GATE/candidate-target/release/chat-server"
else
    cargo build --release --quiet -p chat-server || exit 3
    CANDIDATE_BIN=target/release/chat-server
fi
cargo build --release --quiet -p loadgen || exit 3

OUT="reports/gate-$(date -u +%Y%m%dT%H%M%SZ)"
target/release/loadgen gate \
    --base "$BASE_BIN --listen {addr} --log warn" \
    --candidate "$CANDIDATE_BIN --listen {addr} --log warn" \
    --scenario "$SCENARIO" --pairs "$PAIRS" --tolerance "$TOLERANCE" --out "$OUT"
