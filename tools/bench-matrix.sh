#!/usr/bin/env bash
# Weir against Redis pub/sub, NATS core and mosquitto (MQTT 3.1.1): the benchmark matrix of
# issue 4, written to BENCHMARKS.md.
#
# Installs the peers from Debian packages if they are missing, builds release binaries, starts
# each server on a free loopback port with a written config (no system services), pins every
# server to CPU $SERVER_CPU and weir-bench to CPU $CLIENT_CPU, runs each workload against all
# targets in turn (A B C D A B C D ...) for $ROUNDS rounds, stops each server by its PID, and
# writes BENCHMARKS.md (machine, versions, configs, commands, the table with median and
# min–max). Workloads, 64-byte payloads on loopback:
#   1→1 throughput (Weir acks on; Redis, NATS, MQTT QoS 0 fire-and-forget; MQTT QoS 1),
#   1→100 fan-out, latency at 50,000 msg/s 1→1, 10,000 idle subscribed connections (server
#   memory per connection), one slow consumer at 10,000 msg/s beside a fast one.
# The connection and slow-consumer workloads restart every server before each round, so one
# round's memory does not hide in the next one's baseline.
#
# Usage: tools/bench-matrix.sh [--callgrind] [--out FILE]
#   --callgrind   also run tools/callgrind.sh and put its figures in the report
#   --out FILE    write the report there (default BENCHMARKS.md at the repository root)
# Environment: ROUNDS (3), DURATION (3 s per throughput run), LATENCY_DURATION (5 s),
# CONNECTIONS (10000), SLOW_DURATION (5 s), QUIET_WAIT (120 s: longest wait for other work on
# the machine to calm down before each workload), RESULTS (directory for raw output).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
LATENCY_DURATION=${LATENCY_DURATION:-5}
CONNECTIONS=${CONNECTIONS:-10000}
SLOW_DURATION=${SLOW_DURATION:-5}
QUIET_WAIT=${QUIET_WAIT:-120}
OUT=BENCHMARKS.md
WITH_CALLGRIND=0
while [ $# -gt 0 ]; do
    case $1 in
        --callgrind) WITH_CALLGRIND=1 ;;
        --out) OUT=$2; shift ;;
        *) echo "usage: $0 [--callgrind] [--out FILE]" >&2; exit 2 ;;
    esac
    shift
done

cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=${RESULTS:-$ROOT/target/bench-matrix/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS"
BENCH_DIR=$RESULTS/servers
# shellcheck source=tools/bench-servers.sh
source tools/bench-servers.sh

install_peers
cargo build --release -q -p weir -p weir-tools
BENCH=$ROOT/target/release/weir-bench
bench_init
started=$(date -u +"%Y-%m-%d %H:%M UTC")
COMMANDS=$RESULTS/commands.txt
: >"$COMMANDS"

start_all() {
    start_weir
    start_redis
    start_nats
    start_mosquitto
    MQTT0_URL=$MOSQUITTO_URL
    MQTT1_URL="mqtt://127.0.0.1:$MOSQUITTO_PORT?qos=1&pid=$MOSQUITTO_PID"
}

stop_all() {
    for name in weir redis nats mosquitto; do
        stop_server "$name"
    done
}

# Percent of both cores busy over one second (what other work on the machine is using:
# our servers are idle between workloads).
busy_percent() {
    local a b
    read -r _ a1 a2 a3 a4 a5 a6 a7 _ </proc/stat
    sleep 1
    read -r _ b1 b2 b3 b4 b5 b6 b7 _ </proc/stat
    # user nice system idle iowait irq softirq
    a=$((a1 + a2 + a3 + a6 + a7))
    b=$((b1 + b2 + b3 + b6 + b7))
    local busy=$((b - a)) idle=$((b4 + b5 - a4 - a5))
    echo $((100 * busy / (busy + idle + 1)))
}

# Waits (at most QUIET_WAIT s) until the machine is under 15% busy; logs what it saw.
wait_quiet() {
    local busy waited=0
    busy=$(busy_percent)
    while [ "$busy" -ge 15 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
        sleep 4
        waited=$((waited + 5))
        busy=$(busy_percent)
    done
    echo "$1: other work used $busy% of the machine before it (waited ${waited} s)" \
        | tee -a "$RESULTS/quiet.txt" >&2
}

# run NAME SCENARIO ARGS...: weir-bench pinned to the client core, JSON to $RESULTS/NAME.json,
# tables to $RESULTS/NAME.txt and the terminal.
run() {
    local name=$1
    shift
    wait_quiet "$name"
    echo "weir-bench $*" | sed -E 's/\?pid=[0-9]+//g; s/&pid=[0-9]+//g' >>"$COMMANDS"
    "${CLIENT_PIN[@]}" "$BENCH" "$@" --json-out "$RESULTS/$name.json" \
        | tee "$RESULTS/$name.txt" || true
}

targets() {
    local IFS=,
    echo "$*"
}

start_all
versions=$RESULTS/versions.txt
{
    echo "weir-server $(target/release/weir-server --version | awk '{print $2}')" \
        "(commit $(git rev-parse --short HEAD 2>/dev/null || cat COMMIT 2>/dev/null || echo unknown))"
    redis-server --version | awk '{print "redis-server", $3}' | sed 's/v=//'
    echo "nats-server $("$(command -v nats-server || echo /usr/sbin/nats-server)" --version | awk '{print $2}')"
    # mosquitto -h exits with status 3 after printing its version.
    { "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -h 2>/dev/null || true; } \
        | head -1 | awk '{print "mosquitto", $3}'
} >"$versions"

run throughput-1to1 throughput -d "$DURATION" --rounds "$ROUNDS" \
    --compare "$(targets "$WEIR_URL" "$NATS_URL" "$REDIS_URL" "$MQTT0_URL" "$MQTT1_URL")"
run fanout-1to100 fanout -d "$DURATION" --rounds "$ROUNDS" --subscribers 100 \
    --compare "$(targets "$WEIR_URL" "$NATS_URL" "$REDIS_URL" "$MQTT0_URL")"
# The machine's own stalls, on both cores at once with the servers idle, right before the
# latency runs: they delay every broker alike (weir-bench hiccups).
wait_quiet hiccups
"${SERVER_PIN[@]}" "$BENCH" hiccups -d "$LATENCY_DURATION" --rate 50000 --json \
    >"$RESULTS/hiccups-server-cpu.json" &
hiccups_pid=$!
"${CLIENT_PIN[@]}" "$BENCH" hiccups -d "$LATENCY_DURATION" --rate 50000 --json \
    >"$RESULTS/hiccups-client-cpu.json"
wait "$hiccups_pid"
echo "weir-bench hiccups -d $LATENCY_DURATION --rate 50000 (on each core at once)" >>"$COMMANDS"
run latency-50k latency --rate 50000 -d "$LATENCY_DURATION" --warmup 1 --rounds "$ROUNDS" \
    --compare "$(targets "$WEIR_URL" "$NATS_URL" "$REDIS_URL" "$MQTT0_URL")"
for round in $(seq "$ROUNDS"); do
    stop_all
    start_all
    run "connections-r$round" connections -n "$CONNECTIONS" --hold 3 --rounds 1 \
        --compare "$(targets "$WEIR_URL" "$NATS_URL" "$REDIS_URL" "$MQTT0_URL")"
done
for round in $(seq "$ROUNDS"); do
    stop_all
    start_all
    run "slow-r$round" slow-consumer -d "$SLOW_DURATION" --slow-rate 10000 --baseline 2 \
        --rounds 1 --compare "$(targets "$WEIR_URL" "$NATS_URL" "$REDIS_URL" "$MQTT0_URL")"
done
stop_all

if [ "$WITH_CALLGRIND" = 1 ]; then
    RESULTS=$RESULTS tools/callgrind.sh | tee "$RESULTS/callgrind.txt"
fi

# ---- the report ------------------------------------------------------------------------

# cell LABEL KEY DECIMALS FILE...: "median (min–max)" of metric KEY of target LABEL over the
# runs in FILEs, or "–".
cell() {
    local label=$1 key=$2 decimals=$3
    shift 3
    jq -s -r --arg lab "$label" --arg key "$key" --argjson d "$decimals" '
        def commas: if length <= 3 then . else (.[0:length - 3] | commas) + "," + .[length - 3:] end;
        def fmt: if $d == 0 then (round | tostring | commas)
                 else (. * pow(10; $d) | round / pow(10; $d) | tostring) end;
        [.[] | .targets[] | select(.label == $lab) | .metrics[$key].values[]?] | sort
        | if length == 0 then "–"
          else (if length % 2 == 1 then .[length / 2 | floor]
                else (.[length / 2 - 1] + .[length / 2]) / 2 end) as $median
          | if .[0] == .[-1] then ($median | fmt)
            else "\($median | fmt) (\(.[0] | fmt)–\(.[-1] | fmt))" end
          end' "$@"
}

# notes LABEL FILE...: the distinct notes of target LABEL.
notes() {
    local label=$1
    shift
    jq -s -r --arg lab "$label" \
        '[.[] | .targets[] | select(.label == $lab) | .notes[]] | unique | join("; ")' "$@"
}

median_of() {
    local label=$1 key=$2
    shift 2
    jq -s -r --arg lab "$label" --arg key "$key" '
        [.[] | .targets[] | select(.label == $lab) | .metrics[$key].values[]?] | sort
        | if length == 0 then "null"
          elif length % 2 == 1 then .[length / 2 | floor]
          else (.[length / 2 - 1] + .[length / 2]) / 2 end' "$@"
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "null" || b == "null" || b == 0) print "–"; else printf "%.2f", a / b }'
}

R=$RESULTS
T11=$R/throughput-1to1.json
FAN=$R/fanout-1to100.json
LAT=$R/latency-50k.json
CONN=("$R"/connections-r*.json)
SLOW=("$R"/slow-r*.json)
LABELS=(weir nats redis mqtt-qos0 mqtt-qos1)

row() {
    local title=$1 key=$2 decimals=$3
    shift 3
    local line="| $title |"
    for label in "${LABELS[@]}"; do
        line+=" $(cell "$label" "$key" "$decimals" "$@") |"
    done
    echo "$line"
}

cpu_row() {
    local title=$1
    shift
    row "$title" server_cpu_pct 0 "$@"
}

{
    echo "# Benchmarks: Weir, NATS, Redis and mosquitto"
    echo
    echo "Written by \`tools/bench-matrix.sh\` on $started; raw output in \`${RESULTS#"$ROOT"/}\`"
    echo "(not committed). Every figure is the median over $ROUNDS runs with the range (min–max)"
    echo "in brackets. Targets were measured in turn (A B C D A B C D ...), so slow drift on the"
    echo "machine spreads over all of them rather than landing on one."
    echo
    echo "## Machine"
    echo
    echo "- CPUs: $(nproc) ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
    echo "- Kernel: $(uname -sr); memory $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "- Servers pinned to CPU $SERVER_CPU (\`taskset -c $SERVER_CPU\`), weir-bench to CPU $CLIENT_CPU;"
    echo "  all of them at \`nice -n $NICE\`, so other work on this shared machine does not time-slice"
    echo "  them (the same priority for every target)."
    echo "- The machine is shared: before each workload the script waited (up to $QUIET_WAIT s) for"
    echo "  other work to drop under 15% of the machine; what it saw:"
    echo
    sed 's/^/  - /' "$R/quiet.txt"
    echo
    echo "## Versions"
    echo
    sed 's/^/- /' "$versions"
    echo
    echo "## Workloads and commands"
    echo
    echo "64-byte payloads on loopback, 1 publisher. Throughput runs publish for $DURATION s as fast as"
    echo "two bounds allow, the same for every target: at most 10,000 messages unconfirmed by the"
    echo "broker (Weir RECEIPT, Redis reply, MQTT PUBACK, or an answered NATS PING / MQTT PINGREQ"
    echo "sent every 2,500 messages) and at most 50,000 ahead of the slowest subscriber. Weir"
    echo "subscribers ACK cumulatively every 256 deliveries (a quarter of the in-flight window)."
    echo "Rates count distinct deliveries over all subscribers from the first publish to the last"
    echo "delivery. \`?pid=\` (omitted below) lets weir-bench read each server's CPU time and"
    echo "memory from /proc."
    echo
    echo '```'
    cat "$COMMANDS"
    echo '```'
    echo
    echo "## Results"
    echo
    echo "| workload | Weir | NATS | Redis | MQTT QoS 0 | MQTT QoS 1 |"
    echo "| --- | --- | --- | --- | --- | --- |"
    row "1→1 delivered msg/s (Weir acks on; NATS, Redis, QoS 0 fire-and-forget; QoS 1 acked)" \
        delivered_per_s 0 "$T11"
    cpu_row "  server CPU % (of its core)" "$T11"
    row "1→100 delivered msg/s (all subscribers)" delivered_per_s 0 "$FAN"
    cpu_row "  server CPU %" "$FAN"
    row "latency at 50,000 msg/s 1→1: p50 µs" p50_us 1 "$LAT"
    row "  p99 µs" p99_us 1 "$LAT"
    row "  p99.9 µs" p99_9_us 1 "$LAT"
    row "  max µs" max_us 1 "$LAT"
    cpu_row "  server CPU %" "$LAT"
    row "$CONNECTIONS idle subscribed connections: server bytes per connection" \
        bytes_per_connection 0 "${CONN[@]}"
    row "  server RSS with them held, MiB" server_rss_held_mib 1 "${CONN[@]}"
    row "slow consumer: publisher msg/s" published_per_s 0 "${SLOW[@]}"
    row "  publisher speed kept, % of its speed without the slow subscriber" \
        publisher_kept_pct 0 "${SLOW[@]}"
    row "  fast subscriber msg/s" fast_per_s 0 "${SLOW[@]}"
    row "  slow subscriber closed after s" slow_closed_after_s 2 "${SLOW[@]}"
    row "  slow subscriber lost mid-stream" slow_lost_gaps 0 "${SLOW[@]}"
    row "  server peak RSS MiB" server_rss_peak_mib 1 "${SLOW[@]}"
    echo
    echo "Latency is measured from the time each message was due on the fixed schedule"
    echo "(open loop, coordinated-omission corrected) to its arrival at the subscriber; the"
    echo "publisher and subscriber share one busy-polling thread on the client core."
    echo
    echo "Stalls of the machine itself (\`weir-bench hiccups\`: a thread that never sleeps, on"
    echo "each core at once, servers idle, just before the latency runs). The floor is what"
    echo "these stalls alone do to a stream at 50,000 msg/s on that core, measured as above:"
    echo
    for side in server client; do
        jq -r --arg side "$side" '"- \($side) core: \(.stalls_over_200us) stalls over 200 µs,"
            + " \(.stalls_over_1ms) over 1 ms, longest \(.max_stall_us | round) µs,"
            + " \(.stalled_ms * 10 | round / 10) ms stalled in \(.seconds | round) s;"
            + " floor p99 \(.floor.p99_us * 10 | round / 10) µs,"
            + " p99.9 \(.floor.p99_9_us * 10 | round / 10) µs"' \
            "$R/hiccups-$side-cpu.json"
    done
    echo
    echo "### Ratios (medians)"
    echo
    w11=$(median_of weir delivered_per_s "$T11")
    n11=$(median_of nats delivered_per_s "$T11")
    r11=$(median_of redis delivered_per_s "$T11")
    m11=$(median_of mqtt-qos1 delivered_per_s "$T11")
    wf=$(median_of weir delivered_per_s "$FAN")
    nf=$(median_of nats delivered_per_s "$FAN")
    rf=$(median_of redis delivered_per_s "$FAN")
    echo "- 1→1, Weir (acks on) / NATS (fire-and-forget): $(ratio "$w11" "$n11");" \
        "Weir / Redis: $(ratio "$w11" "$r11"); Weir / MQTT QoS 1: $(ratio "$w11" "$m11")"
    echo "- 1→100, Weir / NATS: $(ratio "$wf" "$nf"); Weir / Redis: $(ratio "$wf" "$rf")"
    wl=$(median_of weir p99_us "$LAT")
    nl=$(median_of nats p99_us "$LAT")
    wl9=$(median_of weir p99_9_us "$LAT")
    nl9=$(median_of nats p99_9_us "$LAT")
    echo "- latency at 50,000 msg/s, Weir / NATS (lower is better): p99 $(ratio "$wl" "$nl")," \
        "p99.9 $(ratio "$wl9" "$nl9")"
    echo
    echo "### Slow consumer: what each broker did"
    echo
    for label in weir nats redis mqtt-qos0; do
        echo "- **$label**: $(notes "$label" "${SLOW[@]}")"
    done
    echo
    echo "### Other observations per target (all workloads)"
    echo
    for label in "${LABELS[@]}"; do
        text=$(notes "$label" "$T11" "$FAN" "$LAT" "${CONN[@]}")
        [ -z "$text" ] || echo "- **$label**: $text"
    done
    echo
    if [ -f "$R/callgrind.txt" ]; then
        echo "## Instructions per delivered message (callgrind)"
        echo
        echo '```'
        cat "$R/callgrind.txt"
        echo '```'
        echo
    fi
    echo "## Server configs"
    echo
    for file in weir.toml redis.conf nats.conf mosquitto.conf; do
        echo "\`$file\` (ports vary per run):"
        echo
        echo '```'
        cat "$BENCH_DIR/$file"
        echo '```'
        echo
    done
} >"$OUT"
echo "wrote $OUT (raw output in $RESULTS)"
