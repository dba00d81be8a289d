#!/usr/bin/env bash
# HTTP load on the daemon with wrk: GET /status and GET /debug/alloc/stats, with the daemon's
# allocator in `sharded` and in `system` mode, interleaved within each round (round 1:
# sharded /status, system /status, sharded /debug/alloc/stats, system /debug/alloc/stats;
# round 2: the same ...). Each run gets a fresh daemon on 127.0.0.1 (port 0, port file),
# records wrk's requests/s, latency p50/p99 (--latency), non-2xx responses and socket
# errors, and the daemon's RSS before the load, its peak (VmRSS sampled every 0.5 s) and
# one second after. Prints the medians per endpoint and mode, and sharded/system ratios.
#
# usage: bench/http_load.sh [options] [SYDRADB]
#   SYDRADB            the daemon binary (default build/release/cli/sydradb)
#   --rounds R         rounds (default 3, or $ROUNDS)
#   --duration S       seconds per wrk run (default 30, or $DURATION; 5 for a quick look)
#   --connections C    wrk connections (default 256)
#   --threads T        wrk threads (default 2)
#   --workers W        daemon worker threads (default 2)
#   --out DIR          results directory (default build/http_load)
#   --smoke            1 round of 2 s with 32 connections (checks the script still works)
#
# Output: DIR/runs.csv (every run), DIR/summary.txt (the table printed), DIR/wrk/*.txt.
# Exit status: 0; 1 if any run had a non-2xx response, socket errors or a daemon that did
# not exit 0 on SIGTERM; 2 on bad usage. The daemons it starts are stopped on exit, error
# or interrupt. The machine is shared and noisy: quote the ratios, measured in one run.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

rounds="${ROUNDS:-3}"
duration="${DURATION:-30}"
connections=256
threads=2
workers=2
outdir="build/http_load"
binary="build/release/cli/sydradb"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds="${2:?}"; shift 2 ;;
    --duration) duration="${2:?}"; shift 2 ;;
    --connections) connections="${2:?}"; shift 2 ;;
    --threads) threads="${2:?}"; shift 2 ;;
    --workers) workers="${2:?}"; shift 2 ;;
    --out) outdir="${2:?}"; shift 2 ;;
    --smoke) rounds=1; duration=2; connections=32; shift ;;
    -h | --help) usage ;;
    -*) echo "http_load: unknown option $1" >&2; exit 2 ;;
    *) binary="$1"; shift ;;
  esac
done
for n in "$rounds" "$duration" "$connections" "$threads" "$workers"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "http_load: '$n' is not a positive integer" >&2; exit 2; }
done
[[ -x "$binary" ]] || { echo "http_load: $binary is not an executable (build the release preset first)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "http_load: wrk is not installed" >&2; exit 2; }
command -v python3 >/dev/null || { echo "http_load: python3 is needed for the report" >&2; exit 2; }
# The daemon needs a descriptor per connection, plus its own.
if (( $(ulimit -n) < connections + 64 )); then
  ulimit -n $((connections + 64)) 2>/dev/null || {
    echo "http_load: ulimit -n $(ulimit -n) is too low for $connections connections" >&2
    exit 2
  }
fi

mkdir -p "$outdir/wrk"
work="$(mktemp -d "${TMPDIR:-/tmp}/sydradb-http-load.XXXXXX")"
daemon_pid=""
sampler_pid=""
wrk_pid=""

cleanup() {
  local status=$?
  for pid in "$wrk_pid" "$sampler_pid"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  done
  kill_quietly "$daemon_pid"
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# start_daemon MODE: starts a daemon, sets daemon_pid and port.
start_daemon() {
  local mode="$1"
  rm -f "$work/port"
  "$binary" serve --listen 127.0.0.1 --port 0 --port-file "$work/port" --data-dir "$work/data" \
    --workers "$workers" --allocator-mode "$mode" --log-level warn \
    --set "max_connections=$((connections * 4 > 1024 ? connections * 4 : 1024))" \
    >"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 200); do
    [[ -s "$work/port" ]] && break
    alive "$daemon_pid" || { echo "http_load: the daemon exited:" >&2; cat "$work/daemon.log" >&2; exit 1; }
    sleep 0.05
  done
  [[ -s "$work/port" ]] || { echo "http_load: the daemon wrote no port file within 10 s" >&2; exit 1; }
  port="$(cat "$work/port")"
}

# stop_daemon: SIGTERM, bounded wait (15 s, then SIGKILL); sets daemon_exit to the exit
# status, or "killed".
stop_daemon() {
  stop_process "$daemon_pid" TERM 15
  daemon_exit="$stopped_exit"
  daemon_pid=""
}

csv="$outdir/runs.csv"
echo "round,endpoint,mode,requests_per_s,p50_ms,p99_ms,non_2xx,socket_errors,rss_before_kib,rss_peak_kib,rss_after_kib,daemon_exit" >"$csv"
echo "http_load: $rounds round(s) x 2 endpoints x 2 modes, ${duration} s each, $connections connections," \
  "$threads wrk threads, $workers daemon workers ($binary)"

for round in $(seq "$rounds"); do
  for endpoint in /status /debug/alloc/stats; do
    for mode in sharded system; do
      start_daemon "$mode"
      sleep 0.5
      before="$(rss_kib "$daemon_pid")"
      (
        while alive "$daemon_pid"; do
          rss_kib "$daemon_pid"
          sleep 0.5
        done
      ) >"$work/rss" &
      sampler_pid=$!
      name="r${round}_${mode}_$(echo "$endpoint" | tr -c 'a-z0-9\n' '_' | sed 's/^_//')"
      wrk --latency -t "$threads" -c "$connections" -d "${duration}s" --timeout 5s \
        "http://127.0.0.1:${port}${endpoint}" >"$outdir/wrk/$name.txt" 2>&1 &
      wrk_pid=$!
      wait "$wrk_pid" || { echo "http_load: wrk failed:" >&2; cat "$outdir/wrk/$name.txt" >&2; exit 1; }
      wrk_pid=""
      sleep 1
      after="$(rss_kib "$daemon_pid")"
      kill "$sampler_pid" 2>/dev/null || true
      wait "$sampler_pid" 2>/dev/null || true
      sampler_pid=""
      peak="$(sort -n "$work/rss" | tail -1)"
      stop_daemon
      python3 - "$outdir/wrk/$name.txt" "$round" "$endpoint" "$mode" "$before" "${peak:-0}" "$after" \
        "$daemon_exit" >>"$csv" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
round_, endpoint, mode, before, peak, after, exit_status = sys.argv[2:]
def ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)$", v)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
non2xx = int(m.group(1)) if m else 0
m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
socket_errors = sum(int(x) for x in m.groups()) if m else 0
peak = max(int(peak), int(before), int(after))
print(f"{round_},{endpoint},{mode},{rps:.1f},{p50:.3f},{p99:.3f},{non2xx},{socket_errors},{before},{peak},{after},{exit_status}")
EOF
      tail -1 "$csv" | awk -F, '{ printf "  round %s %-19s %-7s %10.0f req/s  p50 %7.3f ms  p99 %8.3f ms  non-2xx %s  socket errors %s  RSS %.1f/%.1f/%.1f MiB  exit %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9/1024, $10/1024, $11/1024, $12 }'
    done
  done
done

python3 - "$csv" "$duration" "$connections" "$threads" "$workers" "$rounds" <<'EOF' | tee "$outdir/summary.txt"
import csv, statistics, sys
path, duration, connections, threads, workers, rounds = sys.argv[1:]
rows = list(csv.DictReader(open(path)))
def med(endpoint, mode, key):
    return statistics.median(float(r[key]) for r in rows if r["endpoint"] == endpoint and r["mode"] == mode)
def total(endpoint, mode, key):
    return sum(int(r[key]) for r in rows if r["endpoint"] == endpoint and r["mode"] == mode)
print(f"\nwrk -t{threads} -c{connections} -d{duration}s --latency, daemon --workers {workers}; "
      f"medians of {rounds} interleaved round(s)\n")
table = [["endpoint", "allocator", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors",
          "RSS before MiB", "RSS peak MiB", "RSS after MiB"]]
for endpoint in ("/status", "/debug/alloc/stats"):
    for mode in ("sharded", "system"):
        table.append([endpoint, mode, f"{med(endpoint, mode, 'requests_per_s'):.0f}",
                      f"{med(endpoint, mode, 'p50_ms'):.3f}", f"{med(endpoint, mode, 'p99_ms'):.3f}",
                      str(total(endpoint, mode, "non_2xx")), str(total(endpoint, mode, "socket_errors")),
                      f"{med(endpoint, mode, 'rss_before_kib') / 1024:.1f}",
                      f"{med(endpoint, mode, 'rss_peak_kib') / 1024:.1f}",
                      f"{med(endpoint, mode, 'rss_after_kib') / 1024:.1f}"])
    def ratio(key):
        return f"{med(endpoint, 'sharded', key) / med(endpoint, 'system', key):.2f}x"
    table.append([endpoint, "ratio", ratio("requests_per_s"), ratio("p50_ms"), ratio("p99_ms"), "", "",
                  ratio("rss_before_kib"), ratio("rss_peak_kib"), ratio("rss_after_kib")])
widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
def line(row):
    return "| " + " | ".join(cell.ljust(w) if c < 2 else cell.rjust(w)
                             for c, (cell, w) in enumerate(zip(row, widths))) + " |"
print(line(table[0]))
print("|" + "|".join(("-" * (w + 1) + ":") if c >= 2 else "-" * (w + 2) for c, w in enumerate(widths)) + "|")
for row in table[1:]:
    print(line(row))
print("\nratio = sharded / system (req/s: higher is better; latency and RSS: lower is better)")
bad = [r for r in rows if int(r["non_2xx"]) or int(r["socket_errors"]) or r["daemon_exit"] != "0"]
for r in bad:
    print(f"PROBLEM: round {r['round']} {r['endpoint']} {r['mode']}: non-2xx {r['non_2xx']}, "
          f"socket errors {r['socket_errors']}, daemon exit {r['daemon_exit']}")
sys.exit(1 if bad else 0)
EOF
