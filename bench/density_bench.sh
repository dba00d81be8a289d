#!/usr/bin/env bash
# Bytes per point on disk, ingest and single-series queries: sydradb (this build, and
# optionally a baseline build such as main) side by side with VictoriaMetrics, on the
# dataset of bench/tsdb_dataset.hpp, systems interleaved within each round (the order
# rotates from round to round). Builds nothing.
#
# Each run gets a fresh server on 127.0.0.1 with a temporary data directory:
#   sydradb   serve with a config file (defaults but compaction_interval_ms = 0, so that
#             "after flush" is what the flushes wrote), port 0 + port file; load; wait until
#             /status shows an empty memtable; measure the segment files (segment_stats:
#             index, timestamps, values) and the WAL; raw and 1 h-bucket queries of single
#             series (the raw answers verified against the generated points); SIGTERM;
#             the WAL after the stop; a restart and stop (the WAL after a restart);
#             `sydradb compact` (all segments into one) and the segment bytes again
#   vm        victoria-metrics -retentionPeriod=100y on a free port; load with JSON-line
#             /api/v1/import; /internal/force_flush, then wait for the data directory to stop
#             changing; measure every file under it (data/**/timestamps.bin, values.bin, the
#             rest of data/, indexdb/); the same queries (/api/v1/export verified,
#             query_range with avg_over_time); /internal/force_merge, wait, measure again;
#             SIGINT
# The server's CPU time (utime + stime from /proc) is taken from before the load to the end
# of the flush. Timestamps start at 2026-11-02T00:00Z (one month partition for
# VictoriaMetrics) unless --start-ms says otherwise.
#
# usage: bench/density_bench.sh [options]
#   --build DIR        build directory with cli/sydradb, bench/tsdb_dataset, bench/segment_stats
#                      (default build/release)
#   --baseline DIR     a second sydradb build directory (cli/sydradb), run as system "baseline"
#   --vm PATH          VictoriaMetrics binary (default /usr/bin/victoria-metrics; "none" skips it)
#   --rounds R         density rounds (default 3; 0 with --query-rounds: the latency phase only)
#   --dataset KIND     decimal (default), wide or entropy
#   --hosts N          hosts (default 250; 4 metrics each)
#   --points N         points per series (default 10000, at 10 s)
#   --batch B          points per request (default 10000)
#   --connections C    loader connections (default 4)
#   --queries Q        queries per kind and run (default 200)
#   --query-rounds R   after the density rounds, a latency phase: every system loaded once
#                      (after flush, as above) and kept running side by side, then R rounds
#                      of Q raw and Q 1 h-bucket queries against each in turn, the order
#                      rotating (default 0: no such phase). Medians of the per-round p50 and
#                      p99: the queries of all systems interleaved on one machine state.
#   --start-ms MS      first timestamp
#   --out DIR          results directory (default build/density_bench)
#   --smoke            1 round, 20 hosts x 600 points, 20 queries (checks the script works)
#
# Output: DIR/runs.jsonl (one object per run), DIR/queries.jsonl (the latency phase: one
# object per round, system and kind), DIR/summary.txt (medians per system, ratios against
# sydradb). Exit 0; 1 if a run failed (load or query errors, a verification
# mismatch, a server that did not stop cleanly); 2 on bad usage. Servers it starts are
# stopped on exit, error or interrupt.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

build="build/release"
baseline=""
vm="/usr/bin/victoria-metrics"
rounds=3
dataset=decimal
hosts=250
points=10000
batch=10000
connections=4
queries=200
query_rounds=0
start_ms=1793577600000
outdir="build/density_bench"
sample_s=1  # wait_stable's sampling period

while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?}"; shift 2 ;;
    --baseline) baseline="${2:?}"; shift 2 ;;
    --vm) vm="${2:?}"; shift 2 ;;
    --rounds) rounds="${2:?}"; shift 2 ;;
    --dataset) dataset="${2:?}"; shift 2 ;;
    --hosts) hosts="${2:?}"; shift 2 ;;
    --points) points="${2:?}"; shift 2 ;;
    --batch) batch="${2:?}"; shift 2 ;;
    --connections) connections="${2:?}"; shift 2 ;;
    --queries) queries="${2:?}"; shift 2 ;;
    --query-rounds) query_rounds="${2:?}"; shift 2 ;;
    --start-ms) start_ms="${2:?}"; shift 2 ;;
    --out) outdir="${2:?}"; shift 2 ;;
    --smoke) rounds=1; hosts=20; points=600; queries=20; query_rounds=1; sample_s=0.3; shift ;;
    -h | --help) usage ;;
    *) echo "density_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
for n in "$rounds" "$query_rounds"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "density_bench: '$n' is not a count" >&2; exit 2; }
done
((rounds + query_rounds > 0)) || { echo "density_bench: nothing to do (--rounds 0 and --query-rounds 0)" >&2; exit 2; }
for n in "$hosts" "$points" "$batch" "$connections" "$queries" "$start_ms"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "density_bench: '$n' is not a positive integer" >&2; exit 2; }
done
[[ "$dataset" =~ ^(decimal|wide|entropy)$ ]] || { echo "density_bench: --dataset is decimal, wide or entropy" >&2; exit 2; }
loader="$build/bench/tsdb_dataset"
stats="$build/bench/segment_stats"
declare -A binary=([sydradb]="$build/cli/sydradb")
systems=(sydradb)
if [[ -n "$baseline" ]]; then
  binary[baseline]="$baseline/cli/sydradb"
  systems+=(baseline)
fi
if [[ "$vm" != none ]]; then
  binary[vm]="$vm"
  systems+=(vm)
fi
for f in "$loader" "$stats" "${binary[@]}"; do
  [[ -x "$f" ]] || { echo "density_bench: $f is not an executable" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "density_bench: python3 is needed" >&2; exit 2; }
command -v curl >/dev/null || { echo "density_bench: curl is needed" >&2; exit 2; }

mkdir -p "$outdir"
work="$(mktemp -d "${TMPDIR:-/tmp}/sydradb-density-bench.XXXXXX")"
server_pid=""
ticks="$(getconf CLK_TCK)"
dataset_args=(--dataset "$dataset" --hosts "$hosts" --points "$points" --start-ms "$start_ms")

# Stops the server with `signal`, waits up to 60 s; sets server_exit (the exit status or "killed").
stop_server() {
  stop_process "$server_pid" "$1" 60
  server_exit="$stopped_exit"
  server_pid=""
}

kept_pids=()  # the latency phase's servers
cleanup() {
  local status=$?
  kill_quietly "$server_pid"
  for pid in "${kept_pids[@]}"; do kill_quietly "$pid"; done
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cpu_seconds() {
  awk -v t="$ticks" '{ print ($14 + $15) / t }' "/proc/$1/stat"
}

# Sum of the sizes of regular files under $1 whose path matches $2 (find -path pattern).
bytes_of() {
  find "$1" -type f -path "$2" -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'
}

status_field() {  # sydradb /status storage field
  curl -sf "http://127.0.0.1:$port/status" | python3 -c "import json, sys; print(json.load(sys.stdin)['storage']['$1'])"
}

# Waits until the bytes under $1 stay the same for 3 samples $sample_s s apart (at most
# 300 samples).
wait_stable() {
  local last=-1 same=0 now
  for _ in $(seq 300); do
    now="$(bytes_of "$1" '*')"
    if [[ "$now" == "$last" ]]; then
      same=$((same + 1))
      ((same >= 2)) && return 0
    else
      same=0
    fi
    last="$now"
    sleep "$sample_s"
  done
}

# Raw (verified) and 1 h buckets: two JSON lines into $2. A VictoriaMetrics answer that
# differs from the points sent is a finding (counted as mismatches), not a failed run.
queries_of() {
  local target="$1" out="$2"
  : >"$out"
  if ! "$loader" query --target "$target" --url "http://127.0.0.1:$port" "${dataset_args[@]}" --queries "$queries" \
    --verify --json >>"$out"; then
    [[ "$target" == vm && "$(tail -n 1 "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["errors"])' 2>/dev/null)" == 0 ]] ||
      run_failed=1
  fi
  "$loader" query --target "$target" --url "http://127.0.0.1:$port" "${dataset_args[@]}" --queries "$queries" \
    --step-ms 3600000 --json >>"$out" || run_failed=1
}

wait_sydradb_flushed() {  # until /status shows an empty memtable, at most 300 s
  for _ in $(seq 3000); do
    [[ "$(status_field memtable_points)" == 0 ]] && return 0
    sleep 0.1
  done
  echo "density_bench: the memtable is not empty after 300 s" >&2
  run_failed=1
}

run_sydradb() {
  local system="$1" dir="$2"
  local bin="${binary[$system]}"
  printf 'compaction_interval_ms = 0\n' >"$dir/sydradb.toml"
  start_sydradb "$bin" "$dir" --config "$dir/sydradb.toml"
  local cpu0 load cpu1 after_flush wal_flush wal_stop wal_restart compacted
  cpu0="$(cpu_seconds "$server_pid")"
  load="$("$loader" load --target sydradb --url "http://127.0.0.1:$port" "${dataset_args[@]}" --batch "$batch" \
    --connections "$connections" --json)" || run_failed=1
  wait_sydradb_flushed
  cpu1="$(cpu_seconds "$server_pid")"
  after_flush="$("$stats" --json "$dir/data/segments")" || run_failed=1
  wal_flush="$(bytes_of "$dir/data/wal" '*.log')"
  queries_of sydradb "$dir/query.jsonl"
  stop_server TERM
  [[ "$server_exit" == 0 ]] || { echo "density_bench: $system exit $server_exit" >&2; run_failed=1; }
  wal_stop="$(bytes_of "$dir/data/wal" '*.log')"
  printf 'compaction_interval_ms = 0\n' >"$dir/sydradb.toml"
  start_sydradb "$bin" "$dir" --config "$dir/sydradb.toml"
  stop_server TERM
  [[ "$server_exit" == 0 ]] || { echo "density_bench: $system exit $server_exit after restart" >&2; run_failed=1; }
  wal_restart="$(bytes_of "$dir/data/wal" '*.log')"
  "$bin" compact --data-dir "$dir/data" >/dev/null || run_failed=1
  compacted="$("$stats" --json "$dir/data/segments")" || run_failed=1
  python3 - "$system" "$load" "$cpu0" "$cpu1" "$after_flush" "$wal_flush" "$wal_stop" "$wal_restart" \
    "$compacted" "$dir/query.jsonl" >"$dir/result.json" <<'EOF'
import json, sys
system, load, cpu0, cpu1, flush, wal_flush, wal_stop, wal_restart, compacted, query = sys.argv[1:]
q = [json.loads(l) for l in open(query) if l.strip()]
flush, compacted = json.loads(flush), json.loads(compacted)
def split(s):
    v1 = s["v1_block_bytes"] > 0  # format-1 blocks interleave timestamps and values: no split
    return {"bytes": s["bytes"], "points": s["points"], "files": s["files"],
            "bytes_per_point": s["bytes_per_point"], "index_bytes_per_point": s["index_bytes_per_point"],
            "ts_bytes_per_point": None if v1 else s["ts_bytes_per_point"],
            "value_bytes_per_point": None if v1 else s["value_bytes_per_point"],
            "encodings": s["encodings"], "versions": s["versions"]}
print(json.dumps({"system": system, "load": json.loads(load), "server_cpu_s": float(cpu1) - float(cpu0),
                  "after_flush": split(flush), "merged": split(compacted),
                  "wal_bytes": {"after_flush": int(wal_flush), "after_stop": int(wal_stop),
                                "after_restart": int(wal_restart)},
                  "query_raw": q[0] if len(q) > 0 else None, "query_1h": q[1] if len(q) > 1 else None}))
EOF
}

vm_sizes() {  # JSON: the data directory by kind of file
  local d="$1/vm"
  printf '{"bytes":%s,"timestamps":%s,"values":%s,"data":%s,"indexdb":%s}' \
    "$(bytes_of "$d" '*')" "$(bytes_of "$d/data" '*/timestamps.bin')" "$(bytes_of "$d/data" '*/values.bin')" \
    "$(bytes_of "$d/data" '*')" "$(bytes_of "$d/indexdb" '*')"
}

# Asks for a flush until every point is in a part on disk: a part directory is named
# <rows>_<blocks>_..., and the rows of data/small and data/big add up to the points loaded
# (force_flush returns before the rows are written), at most 300 s.
vm_flush() {
  local dir="$1" want="$2" rows
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/internal/force_flush" >/dev/null || run_failed=1
    rows="$(find "$dir/vm/data/small" "$dir/vm/data/big" -mindepth 2 -maxdepth 2 -type d -printf '%f\n' 2>/dev/null |
      awk -F_ '{ s += $1 } END { print s + 0 }')"
    [[ "$rows" == "$want" ]] && return 0
    sleep 0.5
  done
  echo "density_bench: victoria-metrics has $rows of $want rows on disk after 300 s" >&2
  run_failed=1
}

run_vm() {
  local dir="$1"
  start_vm "$vm" "$dir"
  local cpu0 load cpu1 after_flush merged prefix
  cpu0="$(cpu_seconds "$server_pid")"
  load="$("$loader" load --target vm --url "http://127.0.0.1:$port" "${dataset_args[@]}" --batch "$batch" \
    --connections "$connections" --json)" || run_failed=1
  vm_flush "$dir" "$((hosts * 4 * points))"
  wait_stable "$dir/vm"
  cpu1="$(cpu_seconds "$server_pid")"
  after_flush="$(vm_sizes "$dir")"
  queries_of vm "$dir/query.jsonl"
  for prefix in $(ls "$dir/vm/data/small" 2>/dev/null); do
    curl -sf "http://127.0.0.1:$port/internal/force_merge?partition_prefix=$prefix" >/dev/null || run_failed=1
  done
  wait_stable "$dir/vm"
  merged="$(vm_sizes "$dir")"
  stop_server INT
  [[ "$server_exit" == 0 ]] || { echo "density_bench: victoria-metrics exit $server_exit" >&2; run_failed=1; }
  python3 - "$load" "$cpu0" "$cpu1" "$after_flush" "$merged" "$dir/query.jsonl" "$hosts" "$points" \
    >"$dir/result.json" <<'EOF'
import json, sys
load, cpu0, cpu1, flush, merged, query, hosts, points = sys.argv[1:]
q = [json.loads(l) for l in open(query) if l.strip()]
n = int(hosts) * 4 * int(points)
def split(s):
    s = json.loads(s)
    return {"bytes": s["bytes"], "points": n, "bytes_per_point": s["bytes"] / n,
            "index_bytes_per_point": (s["bytes"] - s["timestamps"] - s["values"]) / n,
            "ts_bytes_per_point": s["timestamps"] / n, "value_bytes_per_point": s["values"] / n,
            "indexdb_bytes": s["indexdb"]}
print(json.dumps({"system": "vm", "load": json.loads(load), "server_cpu_s": float(cpu1) - float(cpu0),
                  "after_flush": split(flush), "merged": split(merged),
                  "query_raw": q[0] if len(q) > 0 else None, "query_1h": q[1] if len(q) > 1 else None}))
EOF
}

runs="$outdir/runs.jsonl"
: >"$runs"
failed=0
echo "density_bench: $rounds round(s) of ${systems[*]}; dataset $dataset, $hosts hosts x 4 metrics x $points points" \
  "($((hosts * 4 * points)) points), $batch points/request, $connections connections, $queries queries per kind"
for round in $(seq "$rounds"); do
  order=()
  for i in "${!systems[@]}"; do order+=("${systems[$(((i + round - 1) % ${#systems[@]}))]}"); done
  for system in "${order[@]}"; do
    dir="$work/run"
    rm -rf "$dir"
    mkdir -p "$dir"
    run_failed=0
    if [[ "$system" == vm ]]; then run_vm "$dir" || run_failed=1; else run_sydradb "$system" "$dir" || run_failed=1; fi
    result="$(cat "$dir/result.json" 2>/dev/null || true)"
    if [[ -z "$result" ]]; then
      echo "density_bench: round $round $system: no result" >&2
      failed=1
      continue
    fi
    [[ "$run_failed" == 0 ]] || failed=1
    python3 - "$round" "$result" >>"$runs" <<'EOF'
import json, sys
doc = json.loads(sys.argv[2])
doc["round"] = int(sys.argv[1])
print(json.dumps(doc))
EOF
    python3 - "$round" "$result" <<'EOF'
import json, sys
d = json.loads(sys.argv[2])
f, m = d["after_flush"], d["merged"]
qr, qh = d["query_raw"] or {}, d["query_1h"] or {}
print(f"  round {sys.argv[1]} {d['system']:9} {d['load']['points_per_s']:>11,.0f} points/s (p99 {d['load']['p99_ms']:.0f} ms, "
      f"server CPU {d['server_cpu_s']:.1f} s)  after flush {f['bytes_per_point']:.3f} B/point "
      f"(ts {f['ts_bytes_per_point'] or float('nan'):.3f}, values {f['value_bytes_per_point'] or float('nan'):.3f}), "
      f"merged {m['bytes_per_point']:.3f}  "
      f"query raw p50 {qr.get('p50_ms', float('nan')):.2f} ms, 1 h p50 {qh.get('p50_ms', float('nan')):.2f} ms")
EOF
  done
done

latency="$outdir/queries.jsonl"
: >"$latency"
if ((query_rounds > 0)); then
  echo "density_bench: latency phase: ${systems[*]} loaded side by side, $query_rounds round(s) of $queries queries per kind"
  declare -A kept_port
  for system in "${systems[@]}"; do
    dir="$work/kept-$system"
    mkdir -p "$dir"
    run_failed=0
    if [[ "$system" == vm ]]; then
      start_vm "$vm" "$dir"
    else
      printf 'compaction_interval_ms = 0\n' >"$dir/sydradb.toml"
      start_sydradb "${binary[$system]}" "$dir" --config "$dir/sydradb.toml"
    fi
    kept_pids+=("$server_pid")
    kept_port[$system]="$port"
    target=sydradb
    [[ "$system" == vm ]] && target=vm
    "$loader" load --target "$target" --url "http://127.0.0.1:$port" "${dataset_args[@]}" --batch "$batch" \
      --connections "$connections" --json >/dev/null || failed=1
    if [[ "$system" == vm ]]; then vm_flush "$dir" "$((hosts * 4 * points))"; else wait_sydradb_flushed; fi
    [[ "$run_failed" == 0 ]] || failed=1
    server_pid=""
  done
  for round in $(seq "$query_rounds"); do
    order=()
    for i in "${!systems[@]}"; do order+=("${systems[$(((i + round - 1) % ${#systems[@]}))]}"); done
    for system in "${order[@]}"; do
      port="${kept_port[$system]}"
      target=sydradb
      [[ "$system" == vm ]] && target=vm
      run_failed=0
      queries_of "$target" "$work/q.jsonl"
      [[ "$run_failed" == 0 ]] || failed=1
      python3 - "$round" "$system" "$work/q.jsonl" >>"$latency" <<'EOF'
import json, sys
for line in open(sys.argv[3]):
    if line.strip():
        d = json.loads(line)
        d.update(round=int(sys.argv[1]), system=sys.argv[2], kind="1h" if d["step_ms"] else "raw")
        print(json.dumps(d))
EOF
    done
  done
  for pid in "${kept_pids[@]}"; do
    stop_process "$pid" TERM 60
    [[ "$stopped_exit" == 0 ]] || { echo "density_bench: a latency-phase server exit $stopped_exit" >&2; failed=1; }
  done
  kept_pids=()
fi

python3 - "$runs" "$latency" <<'EOF' | tee "$outdir/summary.txt"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
lat = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
systems = [s for s in ("sydradb", "baseline", "vm") if any(r["system"] == s for r in runs + lat)]
def med(system, f):
    xs = [f(r) for r in runs if r["system"] == system]
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")
def wal(key):
    return lambda r: r["wal_bytes"][key] / 1e6 if "wal_bytes" in r else None
rows = [
    ("ingest points/s", lambda r: r["load"]["points_per_s"], "{:,.0f}"),
    ("ingest p99 ms", lambda r: r["load"]["p99_ms"], "{:.1f}"),
    ("server CPU s", lambda r: r["server_cpu_s"], "{:.2f}"),
    ("B/point after flush", lambda r: r["after_flush"]["bytes_per_point"], "{:.3f}"),
    ("  timestamps", lambda r: r["after_flush"]["ts_bytes_per_point"], "{:.3f}"),
    ("  values", lambda r: r["after_flush"]["value_bytes_per_point"], "{:.3f}"),
    ("  index, other", lambda r: r["after_flush"]["index_bytes_per_point"], "{:.3f}"),
    ("B/point merged", lambda r: r["merged"]["bytes_per_point"], "{:.3f}"),
    ("  timestamps", lambda r: r["merged"]["ts_bytes_per_point"], "{:.3f}"),
    ("  values", lambda r: r["merged"]["value_bytes_per_point"], "{:.3f}"),
    ("  index, other", lambda r: r["merged"]["index_bytes_per_point"], "{:.3f}"),
    ("WAL MB after flush", wal("after_flush"), "{:.1f}"),
    ("WAL MB after stop", wal("after_stop"), "{:.1f}"),
    ("WAL MB after restart", wal("after_restart"), "{:.1f}"),
    ("query raw p50 ms", lambda r: r["query_raw"]["p50_ms"], "{:.2f}"),
    ("query raw p99 ms", lambda r: r["query_raw"]["p99_ms"], "{:.2f}"),
    ("query 1h p50 ms", lambda r: r["query_1h"]["p50_ms"], "{:.2f}"),
    ("query 1h p99 ms", lambda r: r["query_1h"]["p99_ms"], "{:.2f}"),
    ("raw answers differing", lambda r: r["query_raw"].get("mismatches", 0) / max(r["query_raw"]["queries"], 1), "{:.0%}"),
]
n = min(sum(1 for r in runs if r["system"] == s) for s in systems) if systems else 0
print(f"medians of {n} round(s); ratios: the other system / sydradb")
if not runs:
    rows = []
header = f"{'':22}" + "".join(f"{s:>12}" for s in systems) + "".join(f"{s + '/sydradb':>18}" for s in systems[1:])
print(header)
for name, f, fmt in rows:
    vals = [med(s, f) for s in systems]
    line = f"{name:22}" + "".join(f"{fmt.format(v):>12}" for v in vals)
    for v in vals[1:]:
        line += f"{(v / vals[0] if vals[0] else float('nan')):>18.2f}"
    print(line)
if lat:
    rounds = max(d["round"] for d in lat)
    print(f"latency phase: medians over {rounds} round(s) of the per-round figures, systems loaded side by side")
    for kind in ("raw", "1h"):
        for pct in ("p50_ms", "p99_ms"):
            vals = []
            for s in systems:
                xs = [d[pct] for d in lat if d["system"] == s and d["kind"] == kind]
                vals.append(statistics.median(xs) if xs else float("nan"))
            line = f"{'query ' + kind + ' ' + pct.replace('_ms', ' ms'):22}" + "".join(f"{v:>12.3f}" for v in vals)
            for v in vals[1:]:
                line += f"{(v / vals[0] if vals[0] else float('nan')):>18.2f}"
            print(line)
EOF
exit "$failed"
