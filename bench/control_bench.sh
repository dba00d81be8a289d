#!/usr/bin/env bash
# Control requests under saturating ingest (issue 11's targets): while tsdb_load keeps
# ingest saturated (8 keep-alive connections posting 1000-point batches), a probe GETs a
# control endpoint on a FRESH connection 10 times a second (like a curl or a health check)
# and times it from connect to end of stream; before the load starts it probes the idle
# daemon the same way. Three arms, interleaved within each round (the order rotates):
#   sydradb    this build: ingest on the data listener, the probe on the control listener
#              (/debug/alloc/stats); `sydradb stats --watch 1` runs against the control
#              listener during the run and its frame intervals are reported
#   baseline   another sydradb binary (--baseline, e.g. today's main): one listener, so the
#              probe waits behind ingest like any request
#   victoria   VictoriaMetrics under its own import load (/api/v1/import, the same points as
#              JSON lines), the probe on its /metrics
# Each run gets a fresh server (127.0.0.1, a free port, a temporary data directory).
# Prints per-run lines and the medians over rounds, with the targets:
#   sydradb probe p99 under load < 5 ms, and <= 1/10 of victoria's /metrics p99;
#   sydradb probe p50 under load within 1 ms of its idle p50;
#   sydradb ingest points/s >= 0.97 x baseline's.
#
# usage: bench/control_bench.sh [options]
#   --build DIR          build directory with cli/sydradb and bench/tsdb_load (default build/release)
#   --baseline BIN       the baseline sydradb binary (default: none, arm skipped)
#   --victoria BIN       victoria-metrics binary (default /usr/bin/victoria-metrics; "none": skip)
#   --rounds R           rounds (default 5)
#   --duration S         seconds of load per run (default 20)
#   --idle S             seconds of idle probing before the load (default 5)
#   --connections C      tsdb_load connections (default 8)
#   --batch B            points per request (default 1000)
#   --series N           distinct series (default 1000)
#   --workers W          sydradb worker threads (default 2)
#   --probe-rate N       probes per second (default 10)
#   --out DIR            results directory (default build/control_bench)
#   --smoke              1 round of 2 s load, 1 s idle (checks the script still works)
#
# Output: DIR/runs.jsonl (tsdb_load's --json per run, with round, arm and the stats --watch
# frame intervals), DIR/summary.txt. Exit status: 0; 1 if a run had errors or a server did
# not stop cleanly; 2 on bad usage. Only the processes it starts are stopped, by their pid.
set -euo pipefail

build="build/release"
baseline=""
victoria="/usr/bin/victoria-metrics"
rounds=5
duration=20
idle=5
connections=8
batch=1000
series=1000
workers=2
probe_rate=10
outdir="build/control_bench"

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) build="${2:?}"; shift 2 ;;
    --baseline) baseline="${2:?}"; shift 2 ;;
    --victoria) victoria="${2:?}"; shift 2 ;;
    --rounds) rounds="${2:?}"; shift 2 ;;
    --duration) duration="${2:?}"; shift 2 ;;
    --idle) idle="${2:?}"; shift 2 ;;
    --connections) connections="${2:?}"; shift 2 ;;
    --batch) batch="${2:?}"; shift 2 ;;
    --series) series="${2:?}"; shift 2 ;;
    --workers) workers="${2:?}"; shift 2 ;;
    --probe-rate) probe_rate="${2:?}"; shift 2 ;;
    --out) outdir="${2:?}"; shift 2 ;;
    --smoke) rounds=1; duration=2; idle=1; shift ;;
    -h | --help) usage ;;
    *) echo "control_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
for n in "$rounds" "$duration" "$idle" "$connections" "$batch" "$series" "$workers" "$probe_rate"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "control_bench: '$n' is not a positive integer" >&2; exit 2; }
done
binary="$build/cli/sydradb"
load="$build/bench/tsdb_load"
for f in "$binary" "$load" ${baseline:+"$baseline"}; do
  [[ -x "$f" ]] || { echo "control_bench: $f is not an executable" >&2; exit 2; }
done
if [[ "$victoria" != none && ! -x "$victoria" ]]; then
  echo "control_bench: $victoria is not an executable (apt-get install victoria-metrics, or --victoria none)" >&2
  exit 2
fi
command -v python3 >/dev/null || { echo "control_bench: python3 is needed" >&2; exit 2; }

arms=(sydradb)
[[ -n "$baseline" ]] && arms+=(baseline)
[[ "$victoria" != none ]] && arms+=(victoria)

mkdir -p "$outdir"
work="$(mktemp -d "${TMPDIR:-/tmp}/sydradb-control-bench.XXXXXX")"
server_pid=""
watch_pid=""

cleanup() {
  local status=$?
  [[ -n "$watch_pid" ]] && kill -TERM "$watch_pid" 2>/dev/null || true
  [[ -n "$server_pid" ]] && alive "$server_pid" && stop_pid "$server_pid"
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for_file() {  # file, what
  for _ in $(seq 200); do
    [[ -s "$1" ]] && return 0
    alive "$server_pid" || { echo "control_bench: $2 exited:" >&2; cat "$work/server.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "control_bench: $2 wrote no $1 within 10 s" >&2
  exit 1
}

# Starts the arm's server; sets server_pid, data_url, probe_url, probe_path, format.
start_server() {
  local arm="$1"
  rm -rf "$work/data" "$work/port" "$work/control_port"
  case "$arm" in
    sydradb | baseline)
      local bin="$binary" extra=()
      if [[ "$arm" == sydradb ]]; then extra=(--set "control_port_file=$work/control_port"); else bin="$baseline"; fi
      "$bin" serve --listen 127.0.0.1 --port 0 --port-file "$work/port" --data-dir "$work/data" \
        --workers "$workers" --fsync interval --log-level warn "${extra[@]}" >"$work/server.log" 2>&1 &
      server_pid=$!
      wait_for_file "$work/port" "sydradb"
      data_url="http://127.0.0.1:$(cat "$work/port")"
      probe_url="$data_url"
      [[ "$arm" == sydradb ]] && probe_url="http://127.0.0.1:$(cat "$work/control_port")"
      probe_path=/debug/alloc/stats
      format=sydradb
      ;;
    victoria)
      local port
      port="$(free_port)"
      "$victoria" -storageDataPath="$work/data" -httpListenAddr="127.0.0.1:$port" -retentionPeriod=100y \
        -loggerLevel=ERROR >"$work/server.log" 2>&1 &
      server_pid=$!
      data_url="http://127.0.0.1:$port"
      for _ in $(seq 200); do
        curl -fsS "$data_url/health" >/dev/null 2>&1 && break
        alive "$server_pid" || { echo "control_bench: victoria-metrics exited:" >&2; cat "$work/server.log" >&2; exit 1; }
        sleep 0.05
      done
      probe_url="$data_url"
      probe_path=/metrics
      format=vm-import
      ;;
  esac
}

runs="$outdir/runs.jsonl"
: >"$runs"
failed=0
echo "control_bench: $rounds round(s) x ${#arms[@]} arms (${arms[*]}), ${idle} s idle + ${duration} s load each," \
  "$connections connections x $batch points, probe $probe_rate/s on fresh connections"
for round in $(seq "$rounds"); do
  order=()
  for i in "${!arms[@]}"; do order+=("${arms[$(((i + round - 1) % ${#arms[@]}))]}"); done
  for arm in "${order[@]}"; do
    start_server "$arm"
    if [[ "$arm" == sydradb ]]; then
      # `sydradb stats --watch 1` on the control listener for the whole run; each frame's
      # arrival is stamped (seconds since the run started).
      "$binary" stats --watch 1 --url "$probe_url" 2>/dev/null > >(python3 -u -c '
import sys, time
t0 = time.monotonic()
for line in sys.stdin:
    if line.startswith("sydradb stats every"):
        print(f"{time.monotonic() - t0:.3f}", flush=True)
' >"$work/frames") &
      watch_pid=$!
    fi
    load_status=0
    result="$("$load" --url "$data_url" --format "$format" --connections "$connections" --batch "$batch" \
      --series "$series" --duration "$duration" --probe-url "$probe_url" --probe-path "$probe_path" \
      --probe-rate "$probe_rate" --probe-idle-seconds "$idle" --json)" || load_status=$?
    frames="[]"
    if [[ -n "$watch_pid" ]]; then
      kill -TERM "$watch_pid" 2>/dev/null || true
      wait "$watch_pid" 2>/dev/null || true
      watch_pid=""
      sleep 0.2  # the stamper ends at end of input
      frames="[$(paste -sd, "$work/frames")]"
    fi
    stop_pid "$server_pid"
    server_exit="$stopped_exit"
    server_pid=""
    if [[ -z "$result" ]]; then
      echo "control_bench: round $round $arm: tsdb_load printed nothing (exit $load_status)" >&2
      failed=1
      continue
    fi
    [[ "$load_status" == 0 ]] || failed=1
    [[ "$server_exit" == 0 ]] || { echo "control_bench: round $round $arm: server exit $server_exit" >&2; failed=1; }
    python3 - "$round" "$arm" "$server_exit" "$result" "$frames" "$idle" "$duration" "$runs" <<'EOF'
import json, sys
doc = json.loads(sys.argv[4])
frames = json.loads(sys.argv[5])
idle, duration = float(sys.argv[6]), float(sys.argv[7])
# Intervals between `stats --watch 1` frames that arrived during the load.
load_frames = [t for t in frames if idle <= t <= idle + duration + 0.5]
doc.update(round=int(sys.argv[1]), arm=sys.argv[2], server_exit=sys.argv[3],
           watch_intervals=[round(b - a, 3) for a, b in zip(load_frames, load_frames[1:])])
with open(sys.argv[8], "a") as out:
    out.write(json.dumps(doc) + "\n")
e, w = doc["errors"], doc["watch_intervals"]
idle_p, load_p = doc["probe_idle"], doc["probe_load"]
watch = f"  watch: {len(w)} gaps, max {max(w):.2f} s" if w else ""
print(f"  round {doc['round']} {doc['arm']:9} {doc['points_per_second']:>11,.0f} points/s  "
      f"probe idle p50 {idle_p['p50_ms']:.2f} p99 {idle_p['p99_ms']:.2f}  "
      f"load p50 {load_p['p50_ms']:.2f} p99 {load_p['p99_ms']:.2f} ms  "
      f"errors {e['transport'] + e['http'] + e['rejected_points']}{watch}")
EOF
  done
done

python3 - "$runs" <<'EOF' | tee "$outdir/summary.txt"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
arms = [a for a in ("sydradb", "baseline", "victoria") if any(r["arm"] == a for r in runs)]
def med(arm, f):
    xs = [f(r) for r in runs if r["arm"] == arm]
    return statistics.median(xs) if xs else float("nan")
rows = [("points/s", lambda r: r["points_per_second"], "{:,.0f}"),
        ("ingest p99 ms", lambda r: r["ingest"]["p99_ms"], "{:.2f}"),
        ("probe idle p50 ms", lambda r: r["probe_idle"]["p50_ms"], "{:.3f}"),
        ("probe idle p99 ms", lambda r: r["probe_idle"]["p99_ms"], "{:.3f}"),
        ("probe load p50 ms", lambda r: r["probe_load"]["p50_ms"], "{:.3f}"),
        ("probe load p99 ms", lambda r: r["probe_load"]["p99_ms"], "{:.3f}"),
        ("probe load max ms", lambda r: r["probe_load"]["max_ms"], "{:.3f}"),
        ("probes under load", lambda r: r["probe_load"]["requests"], "{:.0f}")]
n = len([r for r in runs if r["arm"] == "sydradb"])
print(f"medians of {n} round(s)")
print(f"{'':20}" + "".join(f"{a:>14}" for a in arms))
for name, f, fmt in rows:
    print(f"{name:20}" + "".join(f"{fmt.format(med(a, f)):>14}" for a in arms))
p99 = med("sydradb", lambda r: r["probe_load"]["p99_ms"])
p50_delta = med("sydradb", lambda r: r["probe_load"]["p50_ms"] - r["probe_idle"]["p50_ms"])
print("targets:")
print(f"  sydradb control p99 under load {p99:.3f} ms < 5 ms: {'met' if p99 < 5 else 'MISSED'}")
if "victoria" in arms:
    vm = med("victoria", lambda r: r["probe_load"]["p99_ms"])
    print(f"  ... and <= 1/10 of victoria /metrics p99 {vm:.3f} ms (ratio {p99 / vm:.3f}): "
          f"{'met' if p99 <= vm / 10 else 'MISSED'}")
print(f"  sydradb control p50 under load - idle p50 = {p50_delta:.3f} ms (median of rounds) <= 1 ms: "
      f"{'met' if p50_delta <= 1 else 'MISSED'}")
if "baseline" in arms:
    ratio = med("sydradb", lambda r: r["points_per_second"]) / med("baseline", lambda r: r["points_per_second"])
    per_round = []
    for rnd in sorted({r["round"] for r in runs}):
        a = [r for r in runs if r["round"] == rnd and r["arm"] == "sydradb"]
        b = [r for r in runs if r["round"] == rnd and r["arm"] == "baseline"]
        if a and b:
            per_round.append(a[0]["points_per_second"] / b[0]["points_per_second"])
    print(f"  ingest points/s sydradb/baseline {ratio:.3f} (per round: "
          f"{', '.join(f'{x:.3f}' for x in per_round)}; median {statistics.median(per_round):.3f}) >= 0.97: "
          f"{'met' if ratio >= 0.97 else 'MISSED'}")
gaps = [g for r in runs if r["arm"] == "sydradb" for g in r["watch_intervals"]]
if gaps:
    print(f"  sydradb stats --watch 1 under load: {len(gaps)} refresh intervals, median {statistics.median(gaps):.3f} s, "
          f"max {max(gaps):.3f} s")
EOF
exit "$failed"
