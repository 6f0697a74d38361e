#!/bin/bash
# Build first: cargo build --release (here and at the repository root).
root=$(cd "$(dirname "$0")/../.." && pwd); dir=$(cd "$(dirname "$0")" && pwd)
# run.sh CONFIG MODE [extra]: starts weir-server, runs the attack, stops the server by PID.
cfg=$1; mode=$2; shift 2
$root/target/release/weir-server -c $dir/configs/$cfg > /tmp/weir-attack-$mode.log 2>&1 &
pid=$!
sleep 0.5
case $mode in
  memory) timeout 120 $dir/target/release/issue12-attacks memory 27400 $pid ;;
  stats) timeout 120 $dir/target/release/issue12-attacks stats 27400 27401 ;;
  *) timeout 120 $dir/target/release/issue12-attacks $mode 27400 ;;
esac
echo "server RSS at end: $(grep VmRSS /proc/$pid/status)"
kill $pid; wait $pid 2>/dev/null
