#!/usr/bin/env bash
# Interop checks of the WebSocket service against clients nobody here wrote: Python
# `websockets` and Node `ws`, each once with permessage-deflate and once without (see
# check_python.py and check_node.js for what each asserts). Starts one `tickwire serve`
# on a free loopback port with the config below, runs both checks against it, then
# checks and prints the server's websocket metrics, and stops the server with SIGTERM
# while a Python and a Node client are connected (each must get close 1001).
# Run by .ci/run after the browser check.
#
# Usage: tests/interop/run.sh [path/to/tickwire]   (default: target/debug/tickwire)
#
# Installs what is missing: python3 and its pip (Debian's), the `websockets` package
# (>= 13, for its asyncio client) with `pip install --target target/interop-py` when the
# python3 in PATH has none (--target needs no venv and is not refused by an
# externally-managed Debian Python), node and npm (Debian's), and `ws` 8 with
# `npm install --prefix target/interop-node`. PYTHON=/path/to/python3 picks another
# interpreter. The server's log is target/interop-serve.log (RUST_LOG=debug for more).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-target/debug/tickwire}"
PYTHON="${PYTHON:-python3}"
PY_DIR="target/interop-py"
NODE_DIR="target/interop-node"
WEBSOCKETS_REQ="websockets>=13,<18"
WS_REQ="ws@8"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
apt_updated=""

# apt_install PACKAGE...: Debian's packages, three tries.
apt_install() {
    echo "installing Debian's $*"
    for attempt in 1 2 3; do
        if { [ -n "$apt_updated" ] || $SUDO apt-get -o DPkg::Lock::Timeout=120 update -qq; } &&
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
                --no-install-recommends "$@" >/dev/null; then
            apt_updated=yes
            return 0
        fi
        echo "apt-get failed (attempt $attempt); retrying in 10 s"
        sleep 10
    done
    echo "error: could not install $*"
    exit 1
}

# retry WHAT COMMAND...: a registry install, three tries.
retry() {
    local what="$1"
    shift
    for attempt in 1 2 3; do
        if "$@"; then return 0; fi
        echo "$what failed (attempt $attempt); retrying in 10 s"
        sleep 10
    done
    echo "error: $what failed 3 times"
    exit 1
}

export PYTHONPATH="$PWD/$PY_DIR${PYTHONPATH:+:$PYTHONPATH}"
has_websockets() {
    "$PYTHON" -c 'import websockets.asyncio.client' >/dev/null 2>&1
}
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    apt_install python3 python3-pip
fi
if ! has_websockets; then
    if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip
    fi
    echo "installing Python $WEBSOCKETS_REQ into $PY_DIR"
    rm -rf "$PY_DIR"
    PIP_ROOT_USER_ACTION=ignore retry "pip install websockets" "$PYTHON" -m pip install --quiet --disable-pip-version-check \
        --no-input --target "$PY_DIR" "$WEBSOCKETS_REQ"
    has_websockets || { echo "error: websockets installed but does not import"; exit 1; }
fi

if ! command -v node >/dev/null 2>&1; then
    apt_install nodejs
fi
if [ ! -f "$NODE_DIR/node_modules/ws/package.json" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        apt_install npm
    fi
    echo "installing Node $WS_REQ into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    retry "npm install ws" npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error "$WS_REQ"
fi
export NODE_PATH="$PWD/$NODE_DIR/node_modules"

if [ ! -x "$BIN" ]; then
    cargo build --bin tickwire
fi

WORK="$(mktemp -d)"
CONFIG="$WORK/tickwire.toml"
OUT="$WORK/stdout"
LOG="target/interop-serve.log"
HEARTBEAT=10.0
cat >"$CONFIG" <<EOF
# tests/interop/run.sh: what the interop checks need.
[websocket]
allow_client_publish = true
# The checks send 100 KB of text and expect 1009.
max_message_size = 65536
enable_compression = true
compression_min_size = 256
# The paused conflated subscribers get several MB broadcast to them: a session without
# conflation would be a slow consumer (4008) long before that.
max_queued_bytes = 2097152
heartbeat_interval = $HEARTBEAT
EOF
export INTEROP_HEARTBEAT="$HEARTBEAT"

RUST_LOG="${RUST_LOG:-info}" "$BIN" serve --bind 127.0.0.1:0 --config "$CONFIG" >"$OUT" 2>"$LOG" &
PID=$!
cleanup() {
    kill "$PID" 2>/dev/null || true
    for pid in ${PY_PID:-} ${NODE_PID:-}; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
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
echo "tickwire serve at $URL (log: $LOG)"

passed=0
failed=0
# check NAME COMMAND...: one client check, bounded in time.
check() {
    local name="$1"
    shift
    local start=$SECONDS
    echo "== interop: $name"
    if timeout 240 "$@"; then
        passed=$((passed + 1))
        echo "== interop: $name passed in $((SECONDS - start)) s"
    else
        failed=$((failed + 1))
        echo "== interop: $name FAILED after $((SECONDS - start)) s"
    fi
}
check "Python websockets" "$PYTHON" tests/interop/check_python.py "$URL"
check "Node ws" node tests/interop/check_node.js "$URL"

# Every session of the checks is gone: the gauges are back to 0 (bounded poll), and the
# compressed checks sent fewer bytes on the wire than uncompressed. Prints the section.
echo "== interop: the server's /api/metrics (websocket)"
if "$PYTHON" - "$URL" <<'EOF'; then
import json, sys, time, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + 15
while True:
    with opener.open(sys.argv[1] + "api/metrics", timeout=10) as resp:
        ws = json.loads(resp.read())["websocket"]
    if (ws["active_connections"] == 0 and ws["compressed_sessions"] == 0) or time.monotonic() > deadline:
        break
    time.sleep(0.05)
print(json.dumps(ws, indent=2, sort_keys=True))
problems = []
if ws["active_connections"] != 0:
    problems.append("active_connections is %d with every client gone" % ws["active_connections"])
if ws["compressed_sessions"] != 0:
    problems.append("compressed_sessions is %d with every client gone" % ws["compressed_sessions"])
if not ws["wire_bytes_sent"] < ws["uncompressed_bytes_sent"]:
    problems.append("wire_bytes_sent %d is not below uncompressed_bytes_sent %d"
                    % (ws["wire_bytes_sent"], ws["uncompressed_bytes_sent"]))
if ws["slow_consumers"] != 0:
    problems.append("%d slow consumers (4008) during the checks" % ws["slow_consumers"])
print("wire bytes / uncompressed bytes: %d / %d (%.1f%%)"
      % (ws["wire_bytes_sent"], ws["uncompressed_bytes_sent"],
         100.0 * ws["wire_bytes_sent"] / max(ws["uncompressed_bytes_sent"], 1)))
for p in problems:
    print("error: " + p)
sys.exit(1 if problems else 0)
EOF
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

# Clients connected while the server stops: each gets close 1001 (going away).
echo "== interop: a Python and a Node client (with and without deflate each) connected while the server stops"
"$PYTHON" tests/interop/check_python.py --shutdown "$URL" >"$WORK/py-shutdown" 2>&1 &
PY_PID=$!
node tests/interop/check_node.js --shutdown "$URL" >"$WORK/node-shutdown" 2>&1 &
NODE_PID=$!
ready=""
for _ in $(seq 1 300); do
    if grep -qx ready "$WORK/py-shutdown" && grep -qx ready "$WORK/node-shutdown"; then
        ready=yes
        break
    fi
    kill -0 "$PY_PID" 2>/dev/null && kill -0 "$NODE_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$ready" ] || echo "the shutdown clients did not all get ready"

start=$SECONDS
kill -TERM "$PID"
for _ in $(seq 1 300); do
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$PID" 2>/dev/null; then
    echo "tickwire serve did not stop on SIGTERM"
    failed=$((failed + 1))
elif wait "$PID"; then
    echo "tickwire serve stopped cleanly (exit 0) in $((SECONDS - start)) s"
else
    echo "tickwire serve exited with $? on SIGTERM"
    failed=$((failed + 1))
fi
for client in "$PY_PID:$WORK/py-shutdown" "$NODE_PID:$WORK/node-shutdown"; do
    pid="${client%%:*}"
    grep -vx ready "${client#*:}" || true
    if [ -n "$ready" ] && wait "$pid"; then
        passed=$((passed + 1))
    else
        kill "$pid" 2>/dev/null || true
        failed=$((failed + 1))
    fi
done

if [ "$failed" -ne 0 ]; then
    echo "the server's log (tail of $LOG):"
    tail -n 100 "$LOG"
fi
echo "interop: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
