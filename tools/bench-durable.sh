#!/usr/bin/env bash
# Durable queues (issue 10) against plain ones, in the same run: one weir-server (pinned to
# CPU $SERVER_CPU) with a data_dir in $BENCH_DIR and one `durable = true` queue
# (fsync = "always": every RECEIPT comes after the fdatasync covering its message), then
#   1. `weir-bench throughput` 1 → 1, $PAYLOAD B, rounds alternating plain (a fresh queue per
#      run) and durable (--exact-topic, the declared queue): msgs/s, and from STATS before and
#      after each durable run its messages per fdatasync (journal_synced_messages /
#      journal_fsyncs) and the fdatasync p50/p99 the server measured;
#   2. a fresh server and data_dir, then `weir-bench latency` at $RATE msg/s, plain then
#      durable: delivery and publish-to-RECEIPT percentiles, and the fdatasync p50/p99 of that
#      run (STATS after the durable one; plain publishes never fsync).
# The fsync percentiles come from the server's histogram (protocol.md §STATS_REPLY,
# journal_fsync_p50_microseconds): the top of a bucket, at most 12.5% above the true value.
# Everything is stopped by its PID on exit.
#
# Usage: tools/bench-durable.sh      Environment: COUNT (1 → 1 messages per run, default
# 1,000,000), PAYLOAD (default 64), ROUNDS (default 3), RATE (default 50,000), DURATION
# (latency seconds, default 10), SERVER_CPU / CLIENT_CPU / NO_PIN / NICE as in
# tools/bench-servers.sh, BENCH_DIR (the data_dir goes under it: put it on the disk to measure).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/bench-servers.sh

COUNT=${COUNT:-1000000}
PAYLOAD=${PAYLOAD:-64}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-50000}
DURATION=${DURATION:-10}
QUEUE=bench-durable

cargo build --release --quiet --bin weir-server -p weir
cargo build --release --quiet --bin weir-bench --bin weir-cli -p weir-tools
SERVER=${WEIR_SERVER:-target/release/weir-server}
bench_init

# Starts weir-server with a new data_dir ($1); sets WEIR_PORT, WEIR_PID, URL.
start_durable_weir() {
    local data_dir=$BENCH_DIR/$1
    rm -rf "$data_dir"
    WEIR_PORT=$(free_port)
    cat >"$BENCH_DIR/weir.toml" <<EOF
# weir-server for tools/bench-durable.sh: the embedded defaults, a data_dir, one durable queue.
listen = "127.0.0.1:$WEIR_PORT"
data_dir = "$data_dir"

[[queues]]
name = "$QUEUE"
durable = true
fsync = "always"
EOF
    "$SERVER" -t -c "$BENCH_DIR/weir.toml" >/dev/null
    RUST_LOG=${WEIR_LOG:-warn} launch weir "${SERVER_PIN[@]}" "$SERVER" -c "$BENCH_DIR/weir.toml"
    wait_for_port "$WEIR_PORT" "$BENCH_DIR/weir.log"
    URL="weir://127.0.0.1:$WEIR_PORT?pid=$WEIR_PID"
}

# STATS_REPLY's server object as JSON.
server_stats() {
    target/release/weir-cli -s "127.0.0.1:$WEIR_PORT" stats --json |
        python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["server"]))'
}

# One weir-bench run ($1 scenario, $2 JSON file, then flags); stops with the log on failure.
bench() {
    local scenario=$1 json=$2
    shift 2
    local status=0
    "${CLIENT_PIN[@]}" target/release/weir-bench "$scenario" --target "$URL" \
        --payload "$PAYLOAD" --json-out "$json" "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "weir-bench $scenario exited with status $status; server log:" >&2
        cat "$BENCH_DIR/weir.log" >&2
        exit "$status"
    fi
}

echo "weir-server on CPU ${SERVER_CPU}, weir-bench on CPU ${CLIENT_CPU}; data_dir under" \
    "$BENCH_DIR ($(df --output=source,fstype "$BENCH_DIR" | tail -1)); $PAYLOAD B payloads"

start_durable_weir data-throughput
for round in $(seq "$ROUNDS"); do
    echo
    echo "== throughput round $round: plain"
    bench throughput "$BENCH_DIR/plain-$round.json" --count "$COUNT"
    echo "== throughput round $round: durable ($QUEUE, fsync = always)"
    server_stats >"$BENCH_DIR/durable-$round.before.json"
    bench throughput "$BENCH_DIR/durable-$round.json" --count "$COUNT" \
        --topic "$QUEUE" --exact-topic
    server_stats >"$BENCH_DIR/durable-$round.after.json"
done
stop_server weir

start_durable_weir data-latency
echo
echo "== latency: plain, $RATE msg/s"
bench latency "$BENCH_DIR/latency-plain.json" --rate "$RATE" --duration "$DURATION"
echo "== latency: durable ($QUEUE, fsync = always), $RATE msg/s"
server_stats >"$BENCH_DIR/latency-durable.before.json"
bench latency "$BENCH_DIR/latency-durable.json" --rate "$RATE" --duration "$DURATION" \
    --topic "$QUEUE" --exact-topic
server_stats >"$BENCH_DIR/latency-durable.after.json"
stop_server weir

python3 - "$BENCH_DIR" "$ROUNDS" <<'EOF'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
load = lambda name: json.load(open(f"{d}/{name}"))
def metric(doc, key):
    target = doc["targets"][0]
    return target["metrics"][key]["median"]
plain = [metric(load(f"plain-{r}.json"), "delivered_per_s") for r in range(1, rounds + 1)]
durable = [metric(load(f"durable-{r}.json"), "delivered_per_s") for r in range(1, rounds + 1)]
per_sync = []
for r in range(1, rounds + 1):
    b, a = load(f"durable-{r}.before.json"), load(f"durable-{r}.after.json")
    fsyncs = a["journal_fsyncs"] - b["journal_fsyncs"]
    msgs = a["journal_synced_messages"] - b["journal_synced_messages"]
    per_sync.append(msgs / fsyncs if fsyncs else float("nan"))
after = load(f"durable-{rounds}.after.json")
print()
print(f"1 → 1 throughput, median (min–max) of {rounds} rounds")
for name, values in [("plain", plain), ("durable fsync=always", durable)]:
    print(f"  {name:<22} {statistics.median(values):>12,.0f} msg/s "
          f"({min(values):,.0f}–{max(values):,.0f})")
print(f"  durable / plain        {statistics.median(durable) / statistics.median(plain):.3f}")
print(f"  messages per fdatasync {statistics.median(per_sync):,.1f} "
      f"({min(per_sync):,.1f}–{max(per_sync):,.1f})")
print(f"  fdatasync p50 / p99    {after['journal_fsync_p50_microseconds']} / "
      f"{after['journal_fsync_p99_microseconds']} µs over the durable rounds "
      f"({after['journal_fsyncs']:,} calls)")
lp, ld = load("latency-plain.json"), load("latency-durable.json")
la = load("latency-durable.after.json")
lb = load("latency-durable.before.json")
print()
print("latency at the fixed rate, µs from the due time (CO-corrected)")
for name, doc in [("plain", lp), ("durable fsync=always", ld)]:
    m = doc["targets"][0]["metrics"]
    print(f"  {name:<22} delivery p50 {m['p50_us']['median']:>8.1f} p99 {m['p99_us']['median']:>8.1f}"
          f"   RECEIPT p50 {m['confirm_p50_us']['median']:>8.1f} p99 {m['confirm_p99_us']['median']:>8.1f}")
fsyncs = la["journal_fsyncs"] - lb["journal_fsyncs"]
msgs = la["journal_synced_messages"] - lb["journal_synced_messages"]
print(f"  durable run: {msgs / max(fsyncs, 1):,.1f} messages per fdatasync; fdatasync p50 / p99 "
      f"{la['journal_fsync_p50_microseconds']} / {la['journal_fsync_p99_microseconds']} µs "
      f"({fsyncs:,} calls)")
EOF
