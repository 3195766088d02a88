#!/usr/bin/env bash
# Can the performance gate see small regressions? (A benchmark, not a CI step: each gate
# run takes a minute or two.) Builds chat-server at HEAD (with count-allocations) as the
# base, and candidates made from HEAD in a scratch worktree — never committed:
#   same        HEAD itself (identical builds: must pass)
#   allocation  one extra heap allocation per delivery
#   unbatched   one socket write per frame instead of vectored batches
#   spin        a 5% CPU spin per delivery (SPIN_NS of busy work, default 150 ns: 5% of
#               the ~3 µs of server CPU a delivery costs under scenarios/gate.toml here)
# then runs `loadgen gate` RUNS times per candidate (PAIRS pairs each) and prints, per
# candidate, how many gate runs failed and which metrics failed how often, and for each
# cost counter the largest |median ratio − 1| seen (for `same`: the spread of identical
# builds, which the counter tolerances must stand above). For `spin`, whose only trace is
# in the timings, it also estimates how many pairs a gate run would need to catch it 9
# times in 10: it draws gate runs of N pairs from the pairs it measured (with
# replacement) and applies the gate's rule to each.
#
# `unbatched` can only show where the server batches at all: scenarios/gate.toml sends in
# aligned bursts for that reason (evenly spread senders give each receiver one frame at a
# time, and the server then writes ~1.1 times per delivery whatever its code).
#
# Usage: scripts/bench-gate-counters.sh [CANDIDATE ...]     (default: same allocation unbatched spin)
#        RUNS=10 PAIRS=7 SPIN_NS=150 SCENARIO=scenarios/gate.toml REUSE=1 scripts/bench-gate-counters.sh allocation
# Works from any directory; builds under cargo's target dir (TARGET/gate-counters).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root; ROOT, TARGET_DIR

RUNS=${RUNS:-3}
PAIRS=${PAIRS:-7}
SPIN_NS=${SPIN_NS:-150}
SCENARIO=${SCENARIO:-scenarios/gate.toml}
case $SCENARIO in /*) ;; *) SCENARIO="$ROOT/$SCENARIO" ;; esac
CANDIDATES=("$@")
[ ${#CANDIDATES[@]} -gt 0 ] || CANDIDATES=(same allocation unbatched spin)
for c in "${CANDIDATES[@]}"; do
    case $c in same | allocation | unbatched | spin) ;; *)
        echo "bench-gate-counters: unknown candidate $c (same, allocation, unbatched, spin)" >&2
        exit 2 ;;
    esac
done

WORK="$TARGET_DIR/gate-counters"
SRC="$WORK/src"
BUILD="$WORK/target"
mkdir -p "$WORK/bin"
git worktree remove --force "$SRC" >/dev/null 2>&1 || rm -rf "$SRC"
git worktree prune
git worktree add --detach --quiet "$SRC" HEAD
trap 'git worktree remove --force "$SRC" >/dev/null 2>&1 || true' EXIT

SESSION="$SRC/server/src/session.rs"
# Applies candidate $1's change to the scratch worktree (after undoing the last one).
patch_for() {
    git -C "$SRC" checkout --quiet -- server/src/session.rs
    case $1 in
        same) ;;
        allocation)
            sed -i 's|Metrics::inc(&metrics.deliveries_out);|Metrics::inc(\&metrics.deliveries_out); std::hint::black_box(Box::new(0u64));|' "$SESSION" ;;
        unbatched)
            sed -i 's|let count = batch.len().min(MAX_SLICES);|let count = 1;|' "$SESSION" ;;
        spin)
            sed -i "s|Metrics::inc(&metrics.deliveries_out);|Metrics::inc(\&metrics.deliveries_out); { let t = std::time::Instant::now(); while t.elapsed() < Duration::from_nanos($SPIN_NS) { std::hint::spin_loop(); } }|" "$SESSION" ;;
    esac
    if [ "$1" != same ] && git -C "$SRC" diff --quiet; then
        echo "bench-gate-counters: the $1 change no longer applies to server/src/session.rs" >&2
        exit 3
    fi
}

build_as() { # NAME
    (cd "$SRC" && CARGO_TARGET_DIR="$BUILD" cargo build --release --quiet -p chat-server \
        --features count-allocations)
    cp "$BUILD/release/chat-server" "$WORK/bin/chat-server-$1"
}

# REUSE=1 keeps the servers an earlier invocation built (same HEAD, same SPIN_NS).
if [ "${REUSE:-0}" = 1 ] && [ -x "$WORK/bin/chat-server-base" ]; then
    echo "bench-gate-counters: reusing the servers in $WORK/bin" >&2
else
    echo "bench-gate-counters: building the base (HEAD) and ${CANDIDATES[*]}" >&2
    patch_for same
    build_as base
    for c in "${CANDIDATES[@]}"; do
        patch_for "$c"
        build_as "$c"
    done
fi
for c in "${CANDIDATES[@]}"; do
    [ "$c" = same ] && cp "$WORK/bin/chat-server-base" "$WORK/bin/chat-server-same"
    [ -x "$WORK/bin/chat-server-$c" ] || { echo "bench-gate-counters: no server for $c (run without REUSE=1)" >&2; exit 3; }
done
cargo build --release --quiet -p loadgen
LOADGEN="$TARGET_DIR/release/loadgen"

for c in "${CANDIDATES[@]}"; do
    for run in $(seq "$RUNS"); do
        echo "bench-gate-counters: $c, gate run $run/$RUNS" >&2
        OUT="$WORK/out/$c-$run"
        rm -rf "$OUT"
        "$LOADGEN" gate --quiet --pairs "$PAIRS" --out "$OUT" --scenario "$SCENARIO" \
            --base "$(printf '%q' "$WORK/bin/chat-server-base") --listen {addr} --log warn" \
            --candidate "$(printf '%q' "$WORK/bin/chat-server-$c") --listen {addr} --log warn" \
            >/dev/null 2>&1 || true
        [ -f "$OUT/compare.json" ] || { echo "bench-gate-counters: $c run $run wrote no compare.json" >&2; exit 3; }
    done
done

python3 - "$WORK/out" "$RUNS" "${CANDIDATES[@]}" <<'PY'
import json, sys, os
out, runs, candidates = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"{'candidate':<11} {'gate failed':>11}  metrics that failed (runs)")
spreads = {}
for c in candidates:
    failed, by_metric = 0, {}
    for r in range(1, runs + 1):
        doc = json.load(open(os.path.join(out, f"{c}-{r}", "compare.json")))
        failed += not doc["passed"]
        for comp in doc["comparisons"]:
            if comp["verdict"] == "regression":
                by_metric[comp["metric"]] = by_metric.get(comp["metric"], 0) + 1
            if comp["kind"] == "counter":
                key = (c, comp["metric"])
                spreads[key] = max(spreads.get(key, 0.0), abs(comp["ratio"] - 1))
    named = ", ".join(f"{m} {n}/{runs}" for m, n in sorted(by_metric.items())) or "none"
    print(f"{c:<11} {failed:>5}/{runs:<5}  {named}")
print()
print("largest |median ratio - 1| of each cost counter, per candidate:")
metrics = sorted({m for (_, m) in spreads})
print(f"{'metric':<36}" + "".join(f"{c:>12}" for c in candidates))
for m in metrics:
    print(f"{m:<36}" + "".join(
        f"{spreads[(c, m)] * 100:>11.2f}%" if (c, m) in spreads else f"{'-':>12}" for c in candidates))

if "spin" in candidates:
    # The gate's rule (loadgen/src/gate/stats.rs) on the timing metrics: a metric regresses
    # when its median ratio is beyond the tolerance, the 95% bootstrap interval of that
    # median is wholly worse than 1, and a one-sided sign test gives p <= 0.10.
    import random
    from math import comb
    rng = random.Random(1)
    timings = [("deliveries_per_sec", False), ("p50_ms", True), ("p99_ms", True),
               ("cpu_per_1000", True)]
    pairs = []  # per measured pair: {metric: worse-factor}
    tolerances = {}
    for r in range(1, runs + 1):
        doc = json.load(open(os.path.join(out, f"spin-{r}", "compare.json")))
        names = {"cpu_per_1000": "server_cpu_s_per_1000_deliveries"}
        for m, _ in timings:
            tolerances[m] = next(c["tolerance"] for c in doc["comparisons"]
                                 if c["metric"] == names.get(m, m))
        by_pair = {}
        for run in doc["runs"]:
            by_pair.setdefault(run["pair"], {})[run["side"]] = run
        for sides in by_pair.values():
            if len(sides) == 2:
                pairs.append({m: (sides["candidate"][m] / sides["base"][m]) ** (1 if lower else -1)
                              for m, lower in timings})
    def median(xs):
        xs = sorted(xs); n = len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    def regresses(ratios, tolerance):
        n = len(ratios)
        worse = sum(1 for x in ratios if x > 1)
        p = sum(comb(n, k) for k in range(worse, n + 1)) / 2 ** n
        if median(ratios) <= 1 + tolerance or p > 0.10:
            return False
        boots = sorted(median([rng.choice(ratios) for _ in ratios]) for _ in range(400))
        return boots[int(0.025 * len(boots))] > 1
    print()
    print(f"spin: {len(pairs)} measured pairs; median worse-factor per timing metric: " +
          ", ".join(f"{m} {median([p[m] for p in pairs]):.3f}" for m, _ in timings))
    print("estimated share of gate runs that catch it, by pairs per run (resampled):")
    needed = None
    for n in (5, 7, 9, 11, 15, 21, 31, 41, 61):
        draws = 200
        caught = 0
        for _ in range(draws):
            sample = [rng.choice(pairs) for _ in range(n)]
            caught += any(regresses([p[m] for p in sample], tolerances[m]) for m, _ in timings)
        share = caught / draws
        print(f"  {n:>3} pairs: {share * 100:5.1f}%")
        if needed is None and share >= 0.9:
            needed = n
    print(f"pairs needed for 9 of 10: {needed if needed else 'more than 61'}")
PY
