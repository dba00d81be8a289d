#!/usr/bin/env bash
# A real multi-threaded program for compare_allocators.sh --workload redis: Debian's
# redis-server (with --io-threads 2) on a free loopback port, under whatever allocator
# LD_PRELOAD names, driven by redis-benchmark (which runs without LD_PRELOAD, so only the
# server's allocator changes). Prints `METRIC name value` lines: requests per second and
# p99 latency (ms) per command, and the server's RSS after the run (MiB).
set -euo pipefail
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null ||
  { echo "redis_workload: redis-server and redis-benchmark are needed (apt-get install redis-server)" >&2; exit 2; }
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --io-threads 2 --io-threads-do-reads yes \
  --dir "$dir" --daemonize no --logfile "$dir/redis.log" &
pid=$!
for _ in $(seq 100); do
  env -u LD_PRELOAD redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.05
done
env -u LD_PRELOAD redis-benchmark -p "$port" -t set,get,lpush,lpop,hset -n "${REDIS_REQUESTS:-50000}" -c 50 -d 128 \
  -r 100000 --threads 2 --csv | python3 -c '
import csv, sys
for row in csv.DictReader(sys.stdin):
    name = row["test"].split()[0].lower()
    print("METRIC %s_rps %s" % (name, row["rps"]))
    print("METRIC %s_p99_ms %s" % (name, row["p99_latency_ms"]))
'
rss_kib="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
echo "METRIC server_rss_mib $(python3 -c "print(round($rss_kib / 1024, 1))")"
env -u LD_PRELOAD redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
