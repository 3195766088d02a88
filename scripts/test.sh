#!/usr/bin/env bash
# The README's test command: sets up what the tests need when this machine lacks it, then
# runs the whole suite and the doc tests.
#
# The tests run real programs: redis-server (the cluster), openssl (keys made at test
# time), Node.js with npm (an independent JWT client and the Socket.IO and JSON chat
# servers loadgen's protocol profiles are tested against, their packages from their lock
# files: server/tests/independent-client, loadgen/tests/peers), promtool and prometheus
# (Debian's prometheus package: promtool checks deploy/prometheus/ and loadgen's /metrics;
# a real Prometheus scrapes a node and a run and receives a run's --remote-write), and
# cargo-nextest runs them. Each missing one is installed (Debian packages with apt-get, as
# root or through sudo; cargo-nextest with cargo install); when it cannot be (no root, no sudo), this says
# which command would, and exits 3. Extra arguments go to cargo nextest (e.g. -p chat-server, or a test name).
#
# Usage: scripts/test.sh [NEXTEST ARGS...]
# Exit codes: 0 every test passed; 1 a test failed; 3 the tests could not be set up.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root

# Debian packages for the commands the tests run, as "command:package".
missing=()
for pair in redis-server:redis-server openssl:openssl node:nodejs npm:npm promtool:prometheus prometheus:prometheus; do
    package=${pair#*:}
    command -v "${pair%%:*}" >/dev/null 2>&1 || [[ " ${missing[*]-} " == *" $package "* ]] ||
        missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "test.sh: the tests need ${missing[*]}, and this user cannot install them (no root, no sudo); as root:" >&2
        echo "  apt-get install -y ${missing[*]}" >&2
        exit 3
    fi
    echo "test.sh: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: installing cargo-nextest" >&2
    cargo install cargo-nextest --locked || {
        echo "test.sh: cannot install cargo-nextest: cargo install cargo-nextest --locked" >&2
        exit 3
    }
fi

# The npm packages of the Node.js programs the tests run, each from its lock file: the
# independent JWT client, and the foreign chat servers of loadgen's protocol profiles.
for pair in server/tests/independent-client:jose,ws loadgen/tests/peers:socket.io,ws; do
    DIR=${pair%%:*}
    missing=0
    IFS=, read -r -a packages <<<"${pair#*:}"
    for package in "${packages[@]}"; do
        [ -d "$DIR/node_modules/$package" ] || missing=1
    done
    if [ $missing = 1 ] || [ "$DIR/package-lock.json" -nt "$DIR/node_modules/.package-lock.json" ]; then
        echo "test.sh: npm packages of $DIR (from its lock file)" >&2
        npm ci --prefix "$DIR" --no-audit --no-fund >&2 || {
            echo "test.sh: npm ci failed: cd $DIR && npm ci" >&2
            exit 3
        }
    fi
done

status=0
cargo nextest run --workspace --locked --no-fail-fast "$@" || status=1
cargo test --workspace --doc --locked || status=1
exit $status
