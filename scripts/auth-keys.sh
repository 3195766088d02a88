#!/usr/bin/env bash
# Makes the keys the authenticated scenarios and examples use (never committed): in DIR
# (default scenarios/keys, git-ignored), an ES256 key pair (es256.pem, es256.pub.pem), an
# Ed25519 key pair (ed25519.pem, ed25519.pub.pem), an RSA 2048 key pair (rs256.pem,
# rs256.pub.pem) and an HS256 secret (hs256.secret, 48 random bytes in base64). A file that
# exists is kept, so running it again changes nothing.
#
# Usage: scripts/auth-keys.sh [DIR]
# The private keys are for loadgen (--jwt-private-key, [users] jwt private_key); the
# .pub.pem files for chat-server (--jwt-public-key); the secret for both
# (--jwt-secret-file). Exit 3 without openssl.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname -- "$0")/lib.sh" # cd to the repository root
command -v openssl >/dev/null || { echo "auth-keys: needs openssl (apt-get install openssl)" >&2; exit 3; }

DIR=scenarios/keys
if [ -n "${1:-}" ]; then
    case $1 in
        /*) DIR=$1 ;;
        *) DIR="$CALLER_DIR/$1" ;;
    esac
fi
mkdir -p "$DIR"
umask 077

pair() { # NAME, then openssl genpkey options
    local name=$1
    shift
    if [ ! -s "$DIR/$name.pem" ]; then
        openssl genpkey "$@" -out "$DIR/$name.pem" 2>/dev/null
        rm -f "$DIR/$name.pub.pem"
    fi
    [ -s "$DIR/$name.pub.pem" ] || openssl pkey -in "$DIR/$name.pem" -pubout -out "$DIR/$name.pub.pem"
    echo "$DIR/$name.pem  $DIR/$name.pub.pem"
}
pair es256 -algorithm EC -pkeyopt ec_paramgen_curve:P-256
pair ed25519 -algorithm ED25519
pair rs256 -algorithm RSA -pkeyopt rsa_keygen_bits:2048
[ -s "$DIR/hs256.secret" ] || openssl rand -base64 48 > "$DIR/hs256.secret"
echo "$DIR/hs256.secret"
