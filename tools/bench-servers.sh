# Shared by tools/bench-matrix.sh, tools/bench-vs-redis.sh and tools/callgrind.sh (source it,
# do not run it): start Weir and peer brokers on free loopback ports with written configs (no
# system services), each pinned to one core, and stop each by its PID.
#
# After `bench_init`, `start_weir` / `start_redis` / `start_nats` / `start_mosquitto` set
# <NAME>_PORT, <NAME>_PID and <NAME>_URL (a weir-bench target URL carrying ?pid=); `stop_server
# NAME` stops one, and everything still running is stopped on exit. Configs and logs are kept
# in $BENCH_DIR for the report.
#
# Environment: SERVER_CPU (default 0) and CLIENT_CPU (default 1) are the cores to pin to;
# NO_PIN=1 disables pinning (a one-core machine). NICE (default -15 when root, else 0): the
# priority every server and weir-bench run at, so that other work on a shared machine does
# not time-slice them (the same for every target).

BENCH_DIR=${BENCH_DIR:-}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
declare -A BENCH_PIDS=()

bench_init() {
    if [ -z "$BENCH_DIR" ]; then
        BENCH_DIR=$(mktemp -d /tmp/weir-bench.XXXXXX)
    fi
    mkdir -p "$BENCH_DIR"
    if [ -z "${NICE:-}" ]; then
        if [ "$(id -u)" -eq 0 ]; then NICE=-15; else NICE=0; fi
    fi
    local priority=()
    [ "$NICE" = 0 ] || priority=(nice -n "$NICE")
    if [ "${NO_PIN:-0}" = 1 ]; then
        SERVER_PIN=("${priority[@]}")
        CLIENT_PIN=("${priority[@]}")
    else
        SERVER_PIN=("${priority[@]}" taskset -c "$SERVER_CPU")
        CLIENT_PIN=("${priority[@]}" taskset -c "$CLIENT_CPU")
    fi
    trap stop_all_servers EXIT
}

# Installs the Debian packages of the peers that are missing (needs root or sudo).
install_peers() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    if [ "$#" -gt 0 ]; then
        missing=()
        for package in "$@"; do
            command -v "$package" >/dev/null || [ -x "/usr/sbin/$package" ] || missing+=("$package")
        done
    fi
    if [ "${#missing[@]}" -eq 0 ]; then
        return
    fi
    echo "installing ${missing[*]} with apt-get" >&2
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    # The packages start system services; these benchmarks run their own instances only.
    for service in redis-server nats-server mosquitto; do
        $sudo systemctl stop "$service" 2>/dev/null || true
    done
}

# A loopback port nobody listens on, below the ephemeral range (32768-60999) so that no
# outgoing connection holds it.
free_port() {
    local port
    for _ in $(seq 200); do
        port=$((20000 + RANDOM % 12000))
        case " ${BENCH_PORTS:-} " in *" $port "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            BENCH_PORTS="${BENCH_PORTS:-} $port"
            echo "$port"
            return
        fi
    done
    echo "no free port found" >&2
    return 1
}

# Waits until something accepts connections on port $1 (at most 30 s); else shows log $2.
wait_for_port() {
    for _ in $(seq 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    echo "nothing listening on 127.0.0.1:$1 after 30 s; its log:" >&2
    cat "$2" >&2
    return 1
}

# Runs "$@" in the background as server $name; sets <NAME>_PID.
launch() {
    local name=$1
    shift
    "$@" >"$BENCH_DIR/$name.log" 2>&1 &
    BENCH_PIDS[$name]=$!
    printf -v "${name^^}_PID" %s "$!"
}

# weir-server from target/release (built by the caller), with $BENCH_DIR/weir.toml.
start_weir() {
    WEIR_PORT=$(free_port)
    cat >"$BENCH_DIR/weir.toml" <<EOF
# weir-server for the benchmarks: the embedded defaults, except max_connections (10,000
# idle connections plus the load generator's own must fit).
listen = "127.0.0.1:$WEIR_PORT"
max_connections = 15000
EOF
    RUST_LOG=${WEIR_LOG:-warn} launch weir "${SERVER_PIN[@]}" "${WEIR_SERVER:-target/release/weir-server}" \
        -c "$BENCH_DIR/weir.toml"
    wait_for_port "$WEIR_PORT" "$BENCH_DIR/weir.log"
    WEIR_URL="weir://127.0.0.1:$WEIR_PORT?pid=$WEIR_PID"
}

start_redis() {
    REDIS_PORT=$(free_port)
    cat >"$BENCH_DIR/redis.conf" <<EOF
# redis-server for the benchmarks: defaults except these (no persistence, room for 10,000
# idle connections; protected mode off because many-connection runs come from source
# addresses 127.0.0.2... which Redis does not count as loopback, while bind keeps it on
# 127.0.0.1). Pub/sub slow clients: the default client-output-buffer-limit pubsub 32mb 8mb
# 60 applies.
bind 127.0.0.1
protected-mode no
port $REDIS_PORT
daemonize no
save ""
appendonly no
maxclients 15000
loglevel warning
EOF
    launch redis "${SERVER_PIN[@]}" redis-server "$BENCH_DIR/redis.conf"
    wait_for_port "$REDIS_PORT" "$BENCH_DIR/redis.log"
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT?pid=$REDIS_PID"
}

start_nats() {
    NATS_PORT=$(free_port)
    cat >"$BENCH_DIR/nats.conf" <<EOF
# nats-server for the benchmarks: defaults (max_pending 64 MB, write_deadline 10 s for slow
# consumers), loopback only. GOMAXPROCS is left to the runtime; taskset gives it one core.
listen: 127.0.0.1:$NATS_PORT
EOF
    local nats
    nats=$(command -v nats-server || echo /usr/sbin/nats-server)
    launch nats "${SERVER_PIN[@]}" "$nats" -c "$BENCH_DIR/nats.conf"
    wait_for_port "$NATS_PORT" "$BENCH_DIR/nats.log"
    NATS_URL="nats://127.0.0.1:$NATS_PORT?pid=$NATS_PID"
}

start_mosquitto() {
    MOSQUITTO_PORT=$(free_port)
    cat >"$BENCH_DIR/mosquitto.conf" <<EOF
# mosquitto for the benchmarks, set to match Weir's defaults where MQTT has the same knob:
# an in-flight window of 1,024 (Weir inflight_window; mosquitto's default is 20) and a queue
# of 100,000 messages per client (Weir max_queue_depth; default 1,000); TCP_NODELAY on as
# Weir, Redis and NATS do. No persistence, anonymous clients on loopback only.
listener $MOSQUITTO_PORT 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1024
max_queued_messages 100000
set_tcp_nodelay true
max_connections -1
log_dest stderr
log_type error
log_type warning
EOF
    local mosquitto
    mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)
    launch mosquitto "${SERVER_PIN[@]}" "$mosquitto" -c "$BENCH_DIR/mosquitto.conf"
    wait_for_port "$MOSQUITTO_PORT" "$BENCH_DIR/mosquitto.log"
    MOSQUITTO_URL="mqtt://127.0.0.1:$MOSQUITTO_PORT?pid=$MOSQUITTO_PID"
}

# Stops server $1 (weir, redis, nats, mosquitto) by its PID: SIGTERM, then SIGKILL after 10 s.
stop_server() {
    local name=$1 pid=${BENCH_PIDS[$1]:-}
    [ -n "$pid" ] || return 0
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "BENCH_PIDS[$name]"
}

stop_all_servers() {
    for name in "${!BENCH_PIDS[@]}"; do
        stop_server "$name"
    done
}
