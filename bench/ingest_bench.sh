#!/usr/bin/env bash
# Ingest load on the daemon with tsdb_load: the daemon's allocator in `sharded` and in
# `system` mode, interleaved within each round (round 1: sharded, system; round 2: system,
# sharded; ...). Each run gets a fresh daemon on 127.0.0.1 (port 0, port file, a temporary
# data directory, fsync=interval) and one tsdb_load run against it, which also polls
# /debug/alloc/stats on its own connection. Builds nothing. Prints the medians per mode
# (points/s, ingest p50/p99/p999, stats p99) and the ratio system/sharded.
#
# usage: bench/ingest_bench.sh [options]
#   --build DIR          build directory with cli/sydradb and bench/tsdb_load (default build/release)
#   --rounds R           rounds (default 3, or $ROUNDS)
#   --duration S         seconds per run (default 10, or $DURATION)
#   --connections C      tsdb_load connections (default 8)
#   --batch B            points per request (default 1000)
#   --series N           distinct series (default 1000)
#   --query-fraction F   share of range queries among requests (default 0)
#   --stats-poll-ms MS   /debug/alloc/stats poll period (default 100)
#   --workers W          daemon worker threads (default 2)
#   --out DIR            results directory (default build/ingest_bench)
#   --smoke              1 round of 2 s (checks the script still works)
#
# Output: DIR/runs.jsonl (tsdb_load's --json per run, with round and mode), DIR/summary.txt.
# Exit status: 0; 1 if a run had errors or a daemon did not exit 0 on SIGTERM; 2 on bad
# usage. The daemons it starts are stopped on exit, error or interrupt. The machine is
# shared and noisy (the load generator and the daemon share its two cores): quote the
# medians and the ratio, measured in one invocation.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

build="build/release"
rounds="${ROUNDS:-3}"
duration="${DURATION:-10}"
connections=8
batch=1000
series=1000
query_fraction=0
stats_poll_ms=100
workers=2
outdir="build/ingest_bench"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?}"; shift 2 ;;
    --rounds) rounds="${2:?}"; shift 2 ;;
    --duration) duration="${2:?}"; shift 2 ;;
    --connections) connections="${2:?}"; shift 2 ;;
    --batch) batch="${2:?}"; shift 2 ;;
    --series) series="${2:?}"; shift 2 ;;
    --query-fraction) query_fraction="${2:?}"; shift 2 ;;
    --stats-poll-ms) stats_poll_ms="${2:?}"; shift 2 ;;
    --workers) workers="${2:?}"; shift 2 ;;
    --out) outdir="${2:?}"; shift 2 ;;
    --smoke) rounds=1; duration=2; shift ;;
    -h | --help) usage ;;
    *) echo "ingest_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
for n in "$rounds" "$duration" "$connections" "$batch" "$series" "$workers"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "ingest_bench: '$n' is not a positive integer" >&2; exit 2; }
done
binary="$build/cli/sydradb"
load="$build/bench/tsdb_load"
for f in "$binary" "$load"; do
  [[ -x "$f" ]] || { echo "ingest_bench: $f is not an executable (build sydradb and tsdb_load first)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "ingest_bench: python3 is needed for the report" >&2; exit 2; }

mkdir -p "$outdir"
work="$(mktemp -d "${TMPDIR:-/tmp}/sydradb-ingest-bench.XXXXXX")"
daemon_pid=""

cleanup() {
  local status=$?
  kill_quietly "$daemon_pid"
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_daemon() {
  local mode="$1"
  rm -rf "$work/port" "$work/data"
  "$binary" serve --listen 127.0.0.1 --port 0 --port-file "$work/port" --data-dir "$work/data" \
    --workers "$workers" --allocator-mode "$mode" --fsync interval --log-level warn \
    >"$work/daemon.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 200); do
    [[ -s "$work/port" ]] && break
    alive "$daemon_pid" || { echo "ingest_bench: the daemon exited:" >&2; cat "$work/daemon.log" >&2; exit 1; }
    sleep 0.05
  done
  [[ -s "$work/port" ]] || { echo "ingest_bench: the daemon wrote no port file within 10 s" >&2; exit 1; }
  port="$(cat "$work/port")"
}

stop_daemon() {
  stop_pid "$daemon_pid"
  daemon_exit="$stopped_exit"
  daemon_pid=""
}

runs="$outdir/runs.jsonl"
: >"$runs"
failed=0
echo "ingest_bench: $rounds round(s) x 2 modes, ${duration} s each, $connections connections, $batch points/request," \
  "$series series, query fraction $query_fraction, $workers daemon workers, fsync=interval ($binary)"
for round in $(seq "$rounds"); do
  if (( round % 2 == 1 )); then modes=(sharded system); else modes=(system sharded); fi
  for mode in "${modes[@]}"; do
    start_daemon "$mode"
    load_status=0
    result="$("$load" --url "http://127.0.0.1:$port" --connections "$connections" --batch "$batch" \
      --series "$series" --duration "$duration" --query-fraction "$query_fraction" \
      --stats-poll-ms "$stats_poll_ms" --json)" || load_status=$?
    stop_daemon
    if [[ -z "$result" ]]; then
      echo "ingest_bench: round $round $mode: tsdb_load printed nothing (exit $load_status)" >&2
      failed=1
      continue
    fi
    [[ "$load_status" == 0 ]] || failed=1
    [[ "$daemon_exit" == 0 ]] || { echo "ingest_bench: round $round $mode: daemon exit $daemon_exit" >&2; failed=1; }
    python3 - "$round" "$mode" "$daemon_exit" "$result" >>"$runs" <<'EOF'
import json, sys
doc = json.loads(sys.argv[4])
doc.update(round=int(sys.argv[1]), mode=sys.argv[2], daemon_exit=sys.argv[3])
print(json.dumps(doc))
EOF
    python3 - "$result" "$round" "$mode" <<'EOF'
import json, sys
d = json.loads(sys.argv[1])
e = d["errors"]
print(f"  round {sys.argv[2]} {sys.argv[3]:8} {d['points_per_second']:>12,.0f} points/s  "
      f"ingest p50 {d['ingest']['p50_ms']:.2f} p99 {d['ingest']['p99_ms']:.2f} ms  "
      f"stats p99 {d['stats']['p99_ms']:.3f} ms  errors {e['transport'] + e['http'] + e['rejected_points']}")
EOF
  done
done

python3 - "$runs" <<'EOF' | tee "$outdir/summary.txt"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(mode, f):
    xs = [f(r) for r in runs if r["mode"] == mode]
    return statistics.median(xs) if xs else float("nan")
rows = [("points/s", lambda r: r["points_per_second"], "{:,.0f}"),
        ("requests/s", lambda r: r["requests_per_second"], "{:,.1f}"),
        ("ingest p50 ms", lambda r: r["ingest"]["p50_ms"], "{:.2f}"),
        ("ingest p99 ms", lambda r: r["ingest"]["p99_ms"], "{:.2f}"),
        ("ingest p999 ms", lambda r: r["ingest"]["p999_ms"], "{:.2f}"),
        ("query p50 ms", lambda r: r["query"]["p50_ms"], "{:.2f}"),
        ("query p99 ms", lambda r: r["query"]["p99_ms"], "{:.2f}"),
        ("stats p50 ms", lambda r: r["stats"]["p50_ms"], "{:.3f}"),
        ("stats p99 ms", lambda r: r["stats"]["p99_ms"], "{:.3f}"),
        ("stats max ms", lambda r: r["stats"]["max_ms"], "{:.3f}")]
print(f"medians of {len(runs) // 2 if runs else 0} round(s)")
print(f"{'':16}{'sharded':>14}{'system':>14}{'system/sharded':>16}")
queries = any(r["query"]["requests"] for r in runs)
for name, f, fmt in rows:
    if name.startswith("query") and not queries:
        continue
    a, b = med("sharded", f), med("system", f)
    ratio = b / a if a else float("nan")
    print(f"{name:16}{fmt.format(a):>14}{fmt.format(b):>14}{ratio:>16.2f}")
EOF
exit "$failed"
