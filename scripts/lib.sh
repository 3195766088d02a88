# Sourced, not run, by the scripts beside it and by .ci/run, so that they work from any
# current directory and run the binaries cargo has just built rather than whatever an old
# ./target holds. After it:
#   CALLER_DIR  the directory the script was started from (for paths the user typed)
#   ROOT        the repository root, which is also the current directory
#   TARGET_DIR  where cargo builds this workspace, as cargo itself decides it:
#               CARGO_TARGET_DIR, build.target-dir in a cargo config, or ./target
# It exits with 3 (could not run) when cargo cannot say where that is.

CALLER_DIR=$PWD
# Cargo takes a relative CARGO_TARGET_DIR from the directory it runs in, and the user meant
# the one they typed it in: pin it there before moving to the root.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    case $CARGO_TARGET_DIR in
        /*) ;;
        *) export CARGO_TARGET_DIR="$CALLER_DIR/$CARGO_TARGET_DIR" ;;
    esac
fi
CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." || exit 3
ROOT=$PWD

# cargo metadata prints compact JSON; a path that JSON had to escape is refused, not guessed.
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"\\]*\)".*/\1/p')
case $TARGET_DIR in
    /*) ;;
    *)
        echo "$(basename -- "$0"): cannot tell where cargo builds (cargo metadata gave no usable target_directory)" >&2
        exit 3
        ;;
esac
