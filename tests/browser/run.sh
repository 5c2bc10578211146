#!/usr/bin/env bash
# Browser checks, run by .ci/run:
# - the dashboard: runs `tickwire serve --demo` on a free loopback port, loads the page in
#   headless Chromium and asserts from the rendered DOM that ticks and metrics arrived;
#   saves a screenshot to target/dashboard.png;
# - recovery with tickwire.js: runs `examples/recovery.rs` on a free loopback port, loads
#   its page, which has the server drop its connection 3 times, and asserts from the DOM
#   that it recovered each time with every seq once, in order; target/recovery.png.
#
# Usage: tests/browser/run.sh [path/to/tickwire] [path/to/recovery-example]
#        (defaults: target/debug/tickwire, target/debug/examples/recovery)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-target/debug/tickwire}"
RECOVERY="${2:-target/debug/examples/recovery}"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "installing Debian's chromium and chromium-driver"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    installed=""
    for attempt in 1 2 3; do
        if $SUDO apt-get -o DPkg::Lock::Timeout=120 update -qq &&
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
                --no-install-recommends chromium chromium-driver >/dev/null; then
            installed=yes
            break
        fi
        echo "apt-get failed (attempt $attempt); retrying in 10 s"
        sleep 10
    done
    if [ -z "$installed" ]; then echo "error: could not install chromium"; exit 1; fi
fi
if [ ! -x "$BIN" ]; then
    cargo build --bin tickwire
fi
if [ ! -x "$RECOVERY" ]; then
    cargo build --example recovery
fi

# Starts "$@" in the background with its stdout in $OUT and stderr in $LOG, and waits
# for its "listening on URL" line: sets PID and URL.
start_server() {
    OUT="$(mktemp)"
    "$@" >"$OUT" 2>"$LOG" &
    PID=$!
    URL=""
    for _ in $(seq 1 200); do
        URL="$(sed -n 's/^listening on \(http:\/\/[^ ]*\)$/\1/p' "$OUT" | head -n 1)"
        [ -n "$URL" ] && return 0
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "$1 exited early:"; cat "$LOG"; exit 1
        fi
        sleep 0.1
    done
    echo "$1 did not report its address"; cat "$LOG"; exit 1
}

LOG="target/browser-serve.log"
PID=""
OUT=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; [ -n "$OUT" ] && rm -f "$OUT"; }
trap cleanup EXIT
RUST_LOG=info start_server "$BIN" serve --bind 127.0.0.1:0 --demo
echo "dashboard at $URL"

if ! python3 tests/browser/check_dashboard.py "$URL" target/dashboard.png; then
    echo "dashboard check failed; the server's log:"
    cat "$LOG"
    exit 1
fi

kill -TERM "$PID"
for _ in $(seq 1 300); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$PID" 2>/dev/null; then echo "tickwire serve did not stop on SIGTERM"; exit 1; fi
wait "$PID"
echo "tickwire serve stopped cleanly (exit 0); screenshot: target/dashboard.png"
rm -f "$OUT"

LOG="target/browser-recovery.log"
RUST_LOG=info start_server "$RECOVERY" 127.0.0.1:0
echo "recovery page at $URL"
if ! python3 tests/browser/check_recovery.py "$URL" 3 target/recovery.png; then
    echo "recovery check failed; the server's log:"
    cat "$LOG"
    exit 1
fi
kill "$PID"
wait "$PID" 2>/dev/null || true
PID=""
echo "recovery with tickwire.js: ok; screenshot: target/recovery.png"
