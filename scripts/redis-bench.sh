#!/usr/bin/env bash
# Starts a fresh durable three-node xraft cluster on loopback (data in a
# temporary directory), runs redis-benchmark against the leader's client
# port with the given arguments, prints each node's sync latency and CPU
# time per committed entry (user+system over the benchmark, from
# /proc/PID/stat; Linux only), and stops the cluster. Needs
# redis-benchmark and redis-cli (Debian: redis-tools).
#
#   scripts/redis-bench.sh -t set -c 50 -P 1 -n 200000
#
# XRAFT (default target/release/xraft) picks the binary; PEER_BASE and
# CLIENT_BASE (default 7100 and 6480) the ports: node i listens on
# PEER_BASE+i and CLIENT_BASE+i.
set -euo pipefail
XRAFT=${XRAFT:-target/release/xraft}
PEER_BASE=${PEER_BASE:-7100}
CLIENT_BASE=${CLIENT_BASE:-6480}
[ -x "$XRAFT" ] || { echo "no $XRAFT: cargo build --release -p xraft-cli" >&2; exit 2; }
DATA=$(mktemp -d)
PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT
MEMBERS=1=127.0.0.1:$((PEER_BASE + 1)),2=127.0.0.1:$((PEER_BASE + 2)),3=127.0.0.1:$((PEER_BASE + 3))
for i in 1 2 3; do
  "$XRAFT" serve --id "$i" --peer "127.0.0.1:$((PEER_BASE + i))" \
    --client "127.0.0.1:$((CLIENT_BASE + i))" --data "$DATA/n$i" --members "$MEMBERS" \
    2>"$DATA/log$i" &
  PIDS+=($!)
done
LEADER=
for _ in $(seq 1 100); do
  for i in 1 2 3; do
    if redis-cli -p $((CLIENT_BASE + i)) INFO 2>/dev/null | grep -q '^role:leader'; then
      LEADER=$((CLIENT_BASE + i))
      break 2
    fi
  done
  sleep 0.1
done
[ -n "$LEADER" ] || { echo "no leader elected; logs in $DATA" >&2; exit 1; }
echo "leader client port: $LEADER"
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
commit() { redis-cli -p "$LEADER" INFO | tr -d '\r' | sed -n 's/^commit_index://p'; }
BEFORE=()
for p in "${PIDS[@]}"; do BEFORE+=("$(cpu_ticks "$p")"); done
C0=$(commit)
redis-benchmark -p "$LEADER" "$@"
ENTRIES=$(($(commit) - C0))
TICK_US=$((1000000 / $(getconf CLK_TCK)))
for i in 1 2 3; do
  printf 'node %s: ' "$i"
  redis-cli -p $((CLIENT_BASE + i)) INFO | tr -d '\r' |
    grep -E '^(role|disk_syncs|disk_entries|disk_sync_avg_us|disk_sync_p99_le_us):' | tr '\n' ' '
  used=$(($(cpu_ticks "${PIDS[i - 1]}") - BEFORE[i - 1]))
  [ "$ENTRIES" -gt 0 ] && printf 'cpu_us_per_entry:%s' $((used * TICK_US / ENTRIES))
  echo
done
