#!/usr/bin/env bash
# Browser check of the dashboard: runs `tickwire serve --demo` on a free loopback port,
# loads the page in headless Chromium and asserts from the rendered DOM that ticks and
# metrics arrived; saves a screenshot to target/dashboard.png. Run by .ci/run.
#
# Usage: tests/browser/run.sh [path/to/tickwire]   (default: target/debug/tickwire)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-target/debug/tickwire}"

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

LOG="target/browser-serve.log"
OUT="$(mktemp)"
RUST_LOG=info "$BIN" serve --bind 127.0.0.1:0 --demo >"$OUT" 2>"$LOG" &
PID=$!
cleanup() { kill "$PID" 2>/dev/null || true; rm -f "$OUT"; }
trap cleanup EXIT

URL=""
for _ in $(seq 1 200); do
    URL="$(sed -n 's/^listening on \(http:\/\/[^ ]*\)$/\1/p' "$OUT" | head -n 1)"
    [ -n "$URL" ] && break
    if ! kill -0 "$PID" 2>/dev/null; then
        echo "tickwire serve exited early:"; cat "$LOG"; exit 1
    fi
    sleep 0.1
done
if [ -z "$URL" ]; then echo "tickwire serve did not report its address"; cat "$LOG"; exit 1; fi
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
