#!/usr/bin/env bash
# Throughput of the Python and TypeScript Weir clients next to nats-py and nats.js, measured
# in the same run against weir-server and nats-server (Debian's) on loopback, alternating
# rounds; prints each round, the medians and the Weir/NATS ratios.
#
# Installs what it needs when missing: nats-server (apt), nats-py (pip), nats (npm, here).
# Usage: tools/bench-clients/run.sh   (environment: N messages, default 100000; SIZE bytes,
# default 64; ROUNDS, default 3)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${N:-100000}
SIZE=${SIZE:-64}
ROUNDS=${ROUNDS:-3}

command -v nats-server >/dev/null || { apt-get update -qq && apt-get install -y -qq nats-server >/dev/null; }
python3 -c 'import nats' 2>/dev/null || python3 -m pip install --quiet nats-py
(cd tools/bench-clients && [ -d node_modules/nats ] || npm ci --no-audit --no-fund >/dev/null)
cargo build --release -q --bin weir-server
(cd clients/typescript && { [ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null; } && npm run -s build)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WEIR_PORT=$(free_port)
NATS_PORT=$(free_port)
DIR=$(mktemp -d)
printf 'listen = "127.0.0.1:%s"\n' "$WEIR_PORT" >"$DIR/weir.toml"
target/release/weir-server -c "$DIR/weir.toml" 2>"$DIR/weir.log" &
WEIR_PID=$!
nats-server -a 127.0.0.1 -p "$NATS_PORT" 2>"$DIR/nats.log" &
NATS_PID=$!
trap 'kill $WEIR_PID $NATS_PID 2>/dev/null; wait 2>/dev/null; rm -rf "$DIR"' EXIT
for port in "$WEIR_PORT" "$NATS_PORT"; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { # LANG KIND PORT
    case $1 in
        python) PYTHONPATH="$ROOT/clients/python" python3 tools/bench-clients/bench.py "$2" 127.0.0.1 "$3" "$N" "$SIZE" ;;
        typescript) node tools/bench-clients/bench.mjs "$2" 127.0.0.1 "$3" "$N" "$SIZE" ;;
    esac
}
echo "N=$N messages of $SIZE B, one publisher and one subscriber connection per client"
for lang in python typescript; do
    : >"$DIR/$lang.weir"; : >"$DIR/$lang.nats"
    for round in $(seq "$ROUNDS"); do
        w=$(run "$lang" weir "$WEIR_PORT"); echo "$w" >>"$DIR/$lang.weir"
        n=$(run "$lang" nats "$NATS_PORT"); echo "$n" >>"$DIR/$lang.nats"
        echo "$lang round $round: weir $w msg/s, nats $n msg/s"
    done
    w=$(median <"$DIR/$lang.weir"); n=$(median <"$DIR/$lang.nats")
    awk -v l="$lang" -v w="$w" -v n="$n" 'BEGIN {printf "%s median: weir %d msg/s (acks and receipts), nats %d msg/s (fire and forget); ratio weir/nats %.2f\n", l, w, n, w/n}'
done
