#!/usr/bin/env bash
# Prometheus remote storage, sydradb against VictoriaMetrics in one invocation: starts this
# build's daemon and victoria-metrics on 127.0.0.1 with temporary data directories and runs
# bench/remote_bench (see its header: remote_write samples/s with identical
# WriteRequests, then remote_read p50/p99 beside VictoriaMetrics' query_range and export),
# the systems interleaved in every round. Builds nothing.
#
# usage: bench/remote_bench.sh [--build DIR] [--vm PATH] [--out DIR] [--smoke] [remote_bench options...]
#   --build DIR   build directory with cli/sydradb and bench/remote_bench (default build/release)
#   --vm PATH     VictoriaMetrics binary (default /usr/bin/victoria-metrics)
#   --out DIR     results: DIR/remote_bench.json, DIR/remote_bench.txt (default build/remote_bench)
#   --smoke       a few requests and queries (checks the script and both servers work)
# Other options go to remote_bench (--rounds, --requests, --connections, --queries, ...).
# Exit 0, or non-zero when a server or the benchmark failed. Servers are stopped on exit.
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

build="build/release" vm="/usr/bin/victoria-metrics" out="build/remote_bench"
args=()
while (($#)); do
  case "$1" in
    --build) build="$2"; shift 2 ;;
    --vm) vm="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) usage ;;
    *) args+=("$1"); shift ;;
  esac
done
mkdir -p "$out"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/remote_bench.XXXXXX")"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill_quietly "$pid"; done
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$scratch/sydradb" "$scratch/vm"
start_sydradb "$build/cli/sydradb" "$scratch/sydradb"
pids+=("$server_pid")
sydradb_url="http://127.0.0.1:$port"
start_vm "$vm" "$scratch/vm"
pids+=("$server_pid")
vm_url="http://127.0.0.1:$port"

"$build/bench/remote_bench" --sydradb "$sydradb_url" --vm "$vm_url" --json "$out/remote_bench.json" "${args[@]}" |
  tee "$out/remote_bench.txt"
