#!/usr/bin/env bash
# Alternates, ROUNDS times (default 4), one redis-server with every write
# fsync'd (--appendonly yes --appendfsync always, data in a temporary
# directory) and a fresh durable three-node xraft cluster
# (scripts/redis-bench.sh), running the same redis-benchmark arguments
# against each: a side-by-side comparison in one sitting on a shared
# machine. Needs redis-server, redis-benchmark and redis-cli.
#
#   scripts/redis-vs.sh -t set -c 50 -P 1 -n 200000
#
# REDIS_PORT (default 6399) is the Redis port; XRAFT and the port
# variables of scripts/redis-bench.sh apply to the cluster.
set -euo pipefail
REDIS_PORT=${REDIS_PORT:-6399}
ROUNDS=${ROUNDS:-4}
here=$(dirname "$0")
# The throughput line and the latency line (avg min p50 p95 p99 max, ms).
summary() {
  awk '/throughput summary/ {t=$3} /avg +min +p50/ {getline; l=$0} END {print t " requests/s; avg min p50 p95 p99 max (ms):" l}'
}
for r in $(seq 1 "$ROUNDS"); do
  dir=$(mktemp -d)
  redis-server --port "$REDIS_PORT" --appendonly yes --appendfsync always --save "" \
    --dir "$dir" --daemonize yes >/dev/null
  for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
  printf 'round %s redis: ' "$r"
  redis-benchmark -p "$REDIS_PORT" "$@" 2>&1 | summary
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$dir"
  printf 'round %s xraft: ' "$r"
  "$here/redis-bench.sh" "$@" 2>&1 | summary
done
