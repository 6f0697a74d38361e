#!/usr/bin/env bash
# Weir vs Redis pub/sub throughput, measured in the same run (STYLE.md §10).
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

if ! command -v redis-server >/dev/null; then
    echo "redis-server not found; installing it with apt-get" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi

cargo build --release -q -p weir -p weir-tools
bin=target/release

if [ "${NO_PIN:-0}" = 1 ]; then
    server_cpu=()
    client_cpu=()
else
    server_cpu=(taskset -c 0)
    client_cpu=(taskset -c 1)
fi

# A loopback port nobody listens on (nothing answers a connect to it).
free_port() {
    local port
    for _ in $(seq 100); do
        # Below the usual ephemeral range (32768-60999), so no outgoing connection holds it.
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "no free port found" >&2
    return 1
}

# Waits until something accepts connections on port $1 (at most 10 s); else shows log $2.
wait_for_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    echo "nothing listening on 127.0.0.1:$1 after 10 s; its log:" >&2
    cat "$2" >&2
    return 1
}

logs=$(mktemp -d)
pids=()
stop_servers() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$logs"
}
trap stop_servers EXIT

weir_port=$(free_port)
RUST_LOG=warn "${server_cpu[@]}" "$bin/weir-server" --listen "127.0.0.1:$weir_port" \
    >"$logs/weir.log" 2>&1 &
pids+=($!)
redis_port=$(free_port)
while [ "$redis_port" = "$weir_port" ]; do redis_port=$(free_port); done
"${server_cpu[@]}" redis-server --bind 127.0.0.1 --port "$redis_port" --save '' \
    --appendonly no --daemonize no --loglevel warning >"$logs/redis.log" 2>&1 &
pids+=($!)
wait_for_port "$weir_port" "$logs/weir.log"
wait_for_port "$redis_port" "$logs/redis.log"

echo "weir-server $($bin/weir-server --version | awk '{print $2}') on 127.0.0.1:$weir_port," \
    "$(redis-server --version | awk '{print $1, $2, $3}') on 127.0.0.1:$redis_port"
echo "servers on CPU 0, clients on CPU 1; $COUNT × $PAYLOAD B, $ROUNDS rounds"
echo
"${client_cpu[@]}" "$bin/weir-bench" throughput \
    --compare "weir://127.0.0.1:$weir_port,redis://127.0.0.1:$redis_port" \
    --rounds "$ROUNDS" --count "$COUNT" --payload "$PAYLOAD" \
    --publishers 1 --subscribers 1 "$@" || status=$?
if [ "${status:-0}" -ne 0 ]; then
    echo "weir-bench exited with status $status; server logs:" >&2
    tail -n 20 "$logs/weir.log" "$logs/redis.log" >&2
fi
exit "${status:-0}"
