#!/usr/bin/env bash
# The cost of issue 5's connection features, each against plain TCP in the same run: one
# weir-server (pinned to CPU $SERVER_CPU) with four listeners on free loopback ports
#   plain  anonymous TCP
#   tls    TLS (self-signed certificate made here with openssl)
#   auth   allow_anonymous = false; one [[users]] with a password (PBKDF2 hash from
#          `weir-server --hash-password`), publish/subscribe "*"
#   proxy  proxy_protocol = true (trusted 127.0.0.1), reached through HAProxy send-proxy-v2
# then `weir-bench throughput` (1 → 1) and `weir-bench fanout` (1 → 100) with
# --compare plain,tls,auth,proxy-via-haproxy --rounds $ROUNDS (pinned to CPU $CLIENT_CPU;
# rounds alternate the targets), each table followed by the ratio of each target to plain.
# Everything is stopped by its PID on exit.
#
# The proxy figure includes HAProxy's own hop (one more copy of every byte each way, in
# another process, left unpinned unless HAPROXY_CPU is set): it is the cost of running
# behind HAProxy, not of parsing the PROXY header alone (once per connection).
# Auth is checked once per connection (HELLO); after that a session's permissions are looked
# up per PUBLISH/SUBSCRIBE.
#
# Usage: tools/bench-features.sh      Environment: COUNT (1 → 1 messages, default 5,000,000),
# FANOUT_COUNT (1 → 100 messages, default 100,000), PAYLOAD (default 64), ROUNDS (default 3),
# SERVER_CPU / CLIENT_CPU / NO_PIN / NICE as in tools/bench-servers.sh, HAPROXY_CPU, BENCH_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/bench-servers.sh

COUNT=${COUNT:-5000000}
FANOUT_COUNT=${FANOUT_COUNT:-100000}
PAYLOAD=${PAYLOAD:-64}
ROUNDS=${ROUNDS:-3}

command -v haproxy >/dev/null || install_peers haproxy
command -v openssl >/dev/null || { echo "openssl is needed for the certificate" >&2; exit 1; }
cargo build --release --quiet --bin weir-server -p weir
cargo build --release --quiet --bin weir-bench -p weir-tools
SERVER=${WEIR_SERVER:-target/release/weir-server}
bench_init

# A self-signed leaf certificate for localhost (CA:FALSE: webpki refuses a CA certificate as
# the server's own), trusted by weir-bench through ?ca=.
cat >"$BENCH_DIR/openssl.cnf" <<EOF
[req]
distinguished_name = dn
x509_extensions = leaf
prompt = no
[dn]
CN = localhost
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
EOF
openssl req -x509 -config "$BENCH_DIR/openssl.cnf" -newkey ec \
    -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$BENCH_DIR/key.pem" -out "$BENCH_DIR/cert.pem" 2>/dev/null

PASSWORD=bench-$RANDOM$RANDOM
HASH=$(printf '%s\n' "$PASSWORD" | "$SERVER" --hash-password)
PLAIN_PORT=$(free_port)
TLS_PORT=$(free_port)
AUTH_PORT=$(free_port)
PROXY_PORT=$(free_port)
HAPROXY_PORT=$(free_port)

cat >"$BENCH_DIR/weir.toml" <<EOF
# weir-server for tools/bench-features.sh: the embedded defaults, four listeners.
max_connections = 15000

[[users]]
name = "bench"
password_hash = "$HASH"
publish = ["*"]
subscribe = ["*"]

[[listeners]]
listen = "127.0.0.1:$PLAIN_PORT"

[[listeners]]
listen = "127.0.0.1:$TLS_PORT"
tls_cert = "$BENCH_DIR/cert.pem"
tls_key = "$BENCH_DIR/key.pem"

[[listeners]]
listen = "127.0.0.1:$AUTH_PORT"
allow_anonymous = false

[[listeners]]
listen = "127.0.0.1:$PROXY_PORT"
proxy_protocol = true
trusted_proxies = ["127.0.0.1"]
EOF
"$SERVER" -t -c "$BENCH_DIR/weir.toml" >/dev/null
RUST_LOG=${WEIR_LOG:-warn} launch weir "${SERVER_PIN[@]}" "$SERVER" -c "$BENCH_DIR/weir.toml"
for port in "$PLAIN_PORT" "$TLS_PORT" "$AUTH_PORT" "$PROXY_PORT"; do
    wait_for_port "$port" "$BENCH_DIR/weir.log"
done

# HAProxy as in README.md §Behind a proxy: TCP mode, send-proxy-v2, one thread, in the
# foreground (-db) so that its PID is the one we stop.
cat >"$BENCH_DIR/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 5000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
frontend weir_in
  bind 127.0.0.1:$HAPROXY_PORT
  default_backend weir
backend weir
  server s1 127.0.0.1:$PROXY_PORT send-proxy-v2
EOF
HAPROXY_PIN=()
[ -z "${HAPROXY_CPU:-}" ] || HAPROXY_PIN=(taskset -c "$HAPROXY_CPU")
launch haproxy "${HAPROXY_PIN[@]}" haproxy -db -f "$BENCH_DIR/haproxy.cfg"
wait_for_port "$HAPROXY_PORT" "$BENCH_DIR/haproxy.log"

PID="pid=$WEIR_PID"
PLAIN="weir://127.0.0.1:$PLAIN_PORT?$PID"
TLS="weirs://127.0.0.1:$TLS_PORT?ca=$BENCH_DIR/cert.pem&name=localhost&$PID"
AUTH="weir://127.0.0.1:$AUTH_PORT?user=bench&password=$PASSWORD&$PID"
PROXY="weir://127.0.0.1:$HAPROXY_PORT?$PID"
NAMES=(plain tls auth proxy-via-haproxy)
URLS=("$PLAIN" "$TLS" "$AUTH" "$PROXY")

echo "weir-server pid $WEIR_PID on CPU ${SERVER_CPU}, weir-bench on CPU ${CLIENT_CPU}," \
    "haproxy pid $HAPROXY_PID on ${HAPROXY_CPU:-any CPU}; $ROUNDS rounds, $PAYLOAD B payloads"
for i in "${!NAMES[@]}"; do
    echo "  ${NAMES[$i]}: ${URLS[$i]//password=$PASSWORD/password=***}"
done

# Runs one scenario; prints weir-bench's tables, then each target's median and ratio to plain.
run() {
    local scenario=$1 count=$2 json="$BENCH_DIR/$1.json"
    shift 2
    echo
    echo "== $scenario: $count messages × $PAYLOAD B"
    local status=0
    "${CLIENT_PIN[@]}" target/release/weir-bench "$scenario" \
        --compare "$(IFS=,; echo "${URLS[*]}")" --rounds "$ROUNDS" \
        --count "$count" --payload "$PAYLOAD" --json-out "$json" "$@" || status=$?
    if [ "$status" -ne 0 ]; then
        echo "weir-bench $scenario exited with status $status; server log:" >&2
        cat "$BENCH_DIR/weir.log" >&2
        exit "$status"
    fi
    python3 - "$json" "${NAMES[@]}" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
names = sys.argv[2:]
key = doc["headline"]
targets = doc["targets"]
base = targets[0]["metrics"][key]["median"]
print(f"{key}: median (min–max) over {doc['rounds']} rounds; ratio = target / plain")
for name, target in zip(names, targets):
    m = target["metrics"][key]
    cpu = target["metrics"].get("server_cpu_pct", {}).get("median")
    cpu = "" if cpu is None else f"  server CPU {cpu:.0f}%"
    print(f"  {name:<18} {m['median']:>12,.0f} ({m['min']:,.0f}–{m['max']:,.0f})"
          f"  {m['median'] / base:.3f}{cpu}")
EOF
}

run throughput "$COUNT"
# FANOUT_COUNT was kept below max_queue_depth (100,000) because 1 → 100 runs of 200,000
# messages had every subscriber closed with QUEUE_OVERFLOW. Cause, fixed since: weir-bench's
# --max-lag did not hold, and the server queued publishes faster than one turn could send them
# (see CHANGELOG, "Fan-out under load"). The default stays 100,000 so runs compare with the
# figures in BENCHMARKS.md; larger counts are fine now.
run fanout "$FANOUT_COUNT"
