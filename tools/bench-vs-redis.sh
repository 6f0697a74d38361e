#!/usr/bin/env bash
# Weir vs Redis pub/sub throughput, measured in the same run (STYLE.md §10): a quick check;
# tools/bench-matrix.sh runs the full comparison (NATS and mosquitto too) and writes
# BENCHMARKS.md.
#
# Starts a release weir-server and a redis-server on free loopback ports, both pinned to CPU 0,
# runs `weir-bench throughput --compare` pinned to CPU 1 (1 publisher → 1 subscriber, acks on
# for Weir, rounds alternating Weir, Redis, Weir, Redis, ...), prints the result and stops each
# server by its PID. Installs redis-server with apt-get if it is missing.
#
# Usage: tools/bench-vs-redis.sh [extra weir-bench throughput flags]
# Environment: COUNT (default 1000000), PAYLOAD (64), ROUNDS (3).
# Needs 2 CPUs; on one, drop the taskset pinning by setting NO_PIN=1.
set -euo pipefail

COUNT=${COUNT:-1000000}
PAYLOAD=${PAYLOAD:-64}
ROUNDS=${ROUNDS:-3}

cd "$(dirname "$0")/.."
# shellcheck source=tools/bench-servers.sh
source tools/bench-servers.sh
install_peers redis-server
cargo build --release -q -p weir -p weir-tools
bench_init
start_weir
start_redis

echo "weir-server $(target/release/weir-server --version | awk '{print $2}') on 127.0.0.1:$WEIR_PORT," \
    "$(redis-server --version | awk '{print $1, $2, $3}') on 127.0.0.1:$REDIS_PORT"
echo "servers on CPU $SERVER_CPU, clients on CPU $CLIENT_CPU; $COUNT × $PAYLOAD B, $ROUNDS rounds"
echo
"${CLIENT_PIN[@]}" target/release/weir-bench throughput \
    --compare "$WEIR_URL,$REDIS_URL" \
    --rounds "$ROUNDS" --count "$COUNT" --payload "$PAYLOAD" \
    --publishers 1 --subscribers 1 "$@" || status=$?
if [ "${status:-0}" -ne 0 ]; then
    echo "weir-bench exited with status $status; server logs:" >&2
    tail -n 20 "$BENCH_DIR/weir.log" "$BENCH_DIR/redis.log" >&2
fi
exit "${status:-0}"
