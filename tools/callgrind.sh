#!/usr/bin/env bash
# Instructions per delivered message in weir-server, counted by callgrind: the repeatable
# figure on a noisy machine (wall-clock rates move with whatever else runs; instruction
# counts barely do).
#
# Runs a release weir-server under `valgrind --tool=callgrind` three times, stopping it with
# SIGTERM each time (a clean exit, so callgrind writes its totals):
#   idle   start, no traffic, stop: the baseline (startup, shutdown, an idle loop);
#   1→1    weir-bench throughput, COUNT_1TO1 messages (default 200,000) to one subscriber;
#   1→100  weir-bench fanout, COUNT_FANOUT messages (default 20,000) to 100 subscribers.
# Reports total Ir, deliveries (from weir-bench) and (Ir − idle Ir) ÷ deliveries.
#
# The server runs ~50 times slower under valgrind, so it reads larger batches per loop turn
# than it would natively: per-message syscall and wake-up costs come out lower than in a
# native run. Compare these counts with each other (before and after a change), not with
# wall-clock figures.
#
# Usage: tools/callgrind.sh   (environment: COUNT_1TO1, COUNT_FANOUT, RESULTS: output dir)
set -euo pipefail

COUNT_1TO1=${COUNT_1TO1:-200000}
COUNT_FANOUT=${COUNT_FANOUT:-20000}

cd "$(dirname "$0")/.."
ROOT=$PWD
RESULTS=${RESULTS:-$ROOT/target/callgrind/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$RESULTS"
BENCH_DIR=$RESULTS/servers
# shellcheck source=tools/bench-servers.sh
source tools/bench-servers.sh
install_peers valgrind
cargo build --release -q -p weir -p weir-tools
bench_init

# measure NAME [weir-bench args...]: one server lifetime under callgrind; prints "Ir deliveries".
measure() {
    local name=$1
    shift
    start_weir_callgrind "$name"
    local deliveries=0
    if [ $# -gt 0 ]; then
        "${CLIENT_PIN[@]}" target/release/weir-bench "$@" --target "$WEIR_URL" --timeout 900 \
            --json-out "$RESULTS/$name.json" >"$RESULTS/$name.txt"
        deliveries=$(jq '[.runs[].deliveries.delivered] | add' "$RESULTS/$name.json")
    fi
    stop_server weir
    local ir
    ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$RESULTS/callgrind.out.$name")
    echo "$ir $deliveries"
}

# Like start_weir, with the server under callgrind (and a longer wait for it to listen).
start_weir_callgrind() {
    local name=$1
    WEIR_PORT=$(free_port)
    # busy_poll_us = 0: polling while waiting for the next frame executes instructions that
    # depend on timing, not on the work; counts are only repeatable without it.
    cat >"$BENCH_DIR/weir.toml" <<EOF
listen = "127.0.0.1:$WEIR_PORT"
busy_poll_us = 0
EOF
    RUST_LOG=warn launch weir "${SERVER_PIN[@]}" valgrind --tool=callgrind \
        --callgrind-out-file="$RESULTS/callgrind.out.$name" \
        target/release/weir-server -c "$BENCH_DIR/weir.toml"
    wait_for_port "$WEIR_PORT" "$BENCH_DIR/weir.log"
    WEIR_URL="weir://127.0.0.1:$WEIR_PORT?pid=$WEIR_PID"
}

read -r idle_ir _ < <(measure idle)
read -r one_ir one_deliveries < <(measure 1to1 throughput -n "$COUNT_1TO1")
read -r fan_ir fan_deliveries < <(measure 1to100 fanout -n "$COUNT_FANOUT" --subscribers 100)

per() {
    awk -v ir="$1" -v idle="$idle_ir" -v n="$2" 'BEGIN { if (n > 0) printf "%.0f", (ir - idle) / n; else print "–" }'
}

echo "weir-server $(target/release/weir-server --version | awk '{print $2}')" \
    "(commit $(git rev-parse --short HEAD 2>/dev/null || cut -c1-7 COMMIT 2>/dev/null || echo unknown)), $(valgrind --version)"
printf '%-34s %16s %12s %16s\n' "run" "Ir (total)" "deliveries" "Ir per delivery"
printf '%-34s %16s %12s %16s\n' "idle (start, stop)" "$idle_ir" "0" "–"
printf '%-34s %16s %12s %16s\n' "1→1, $COUNT_1TO1 messages, acks on" "$one_ir" \
    "$one_deliveries" "$(per "$one_ir" "$one_deliveries")"
printf '%-34s %16s %12s %16s\n' "1→100, $COUNT_FANOUT messages" "$fan_ir" \
    "$fan_deliveries" "$(per "$fan_ir" "$fan_deliveries")"
echo "(Ir per delivery = (Ir − idle Ir) ÷ deliveries; callgrind files in ${RESULTS#"$ROOT"/})"
