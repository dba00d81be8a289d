#!/usr/bin/env bash
# Runs a sydradb cluster on loopback with Prometheus' own machinery, no cluster code of ours:
# NODES sydradb nodes, a writer that sends each series to REPLICAS of them (hashmod
# relabeling, relabel-node.yml.in: one remote_write per node), and a reader Prometheus with
# one remote_read per node that merges what they answer. docs/scaling.md explains the set-up
# on N hosts.
#
# Usage: deploy/cluster/run.sh [--nodes N] [--replicas R] [--base-port P] [--dir DIR]
#                              [--writer vmagent|prometheus] [--sydradb BIN]
#   --nodes      sydradb nodes (default 3)
#   --replicas   nodes each series is written to (default 1; 2 = survive one node down)
#   --base-port  node i listens on P+2i (data) and P+2i+1 (control); the writer on P+2N,
#                the reader Prometheus on P+2N+1 (default 19100)
#   --dir        where configs, data and logs go (default: a new temporary directory)
#   --writer     vmagent (default when /usr/bin/vmagent exists: it also takes pushes, e.g.
#                /api/v1/import/prometheus and /api/v1/write) or prometheus (scrapes only)
#   --sydradb    the sydradb binary (default: build/release/sydradb, else sydradb on PATH)
# Once everything answers, DIR/cluster.env holds NODE_URLS, WRITER_URL, READER_URL and
# DIR/pids/<name>.pid each process's pid; the script then waits until SIGINT or SIGTERM and
# stops what it started. A node may be stopped by its pid meanwhile (a failure drill).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../../bench/lib.sh"

nodes=3 replicas=1 base_port=19100 dir="" writer="" sydradb=""
while (($#)); do
  case "$1" in
    --nodes) nodes="$2"; shift 2 ;;
    --replicas) replicas="$2"; shift 2 ;;
    --base-port) base_port="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --writer) writer="$2"; shift 2 ;;
    --sydradb) sydradb="$2"; shift 2 ;;
    *) usage ;;
  esac
done
if ((nodes < 1 || replicas < 1 || replicas > nodes)); then
  echo "run.sh: need 1 <= --replicas <= --nodes" >&2
  exit 2
fi
[[ -n "$writer" ]] || { [[ -x /usr/bin/vmagent ]] && writer=vmagent || writer=prometheus; }
if [[ -z "$sydradb" ]]; then
  sydradb="$here/../../build/release/sydradb"
  [[ -x "$sydradb" ]] || sydradb="$(command -v sydradb)"
fi
[[ -n "$dir" ]] || dir="$(mktemp -d "${TMPDIR:-/tmp}/sydradb-cluster.XXXXXX")"
mkdir -p "$dir/pids" "$dir/logs"

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill_quietly "$pid"; done
}
trap cleanup EXIT
trap 'exit 0' INT TERM

start() {  # start NAME COMMAND...: in the background, logging to DIR/logs/NAME.log
  local name="$1"
  shift
  "$@" >"$dir/logs/$name.log" 2>&1 &
  pids+=("$!")
  echo "$!" >"$dir/pids/$name.pid"
}

wait_http() {  # wait_http NAME URL: up to 60 s for a 200
  for _ in $(seq 600); do
    curl -fsS -o /dev/null "$2" 2>/dev/null && return 0
    alive "$(cat "$dir/pids/$1.pid")" || { echo "run.sh: $1 exited:" >&2; tail -20 "$dir/logs/$1.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "run.sh: $1 did not answer $2 in 60 s" >&2
  exit 1
}

# The nodes.
node_urls=() targets=()
for ((i = 0; i < nodes; i++)); do
  port=$((base_port + 2 * i))
  start "node$i" "$sydradb" serve --port "$port" --control-port "$((port + 1))" --data-dir "$dir/node$i"
  node_urls+=("http://127.0.0.1:$port")
  targets+=("'127.0.0.1:$((port + 1))'")
done
for ((i = 0; i < nodes; i++)); do wait_http "node$i" "${node_urls[i]}/health"; done

# Node i keeps the shards s with (i - s) mod nodes < replicas.
relabel() {  # relabel NODE: relabel-node.yml.in filled in for it
  local keep="" r
  for ((r = 0; r < replicas; r++)); do keep+="${keep:+|}$((((($1 - r) % nodes) + nodes) % nodes))"; done
  sed -e "s/@NODE@/$1/g; s/@NODES@/$nodes/g; s/@REPLICAS@/$replicas/g; s/@KEEP@/$keep/g" "$here/relabel-node.yml.in"
}
target_list="$(IFS=,; echo "${targets[*]}")"

writer_port=$((base_port + 2 * nodes))
case "$writer" in
  vmagent)
    sed "s/@TARGETS@/$target_list/" "$here/vmagent-scrape.yml.in" >"$dir/vmagent-scrape.yml"
    args=(-httpListenAddr="127.0.0.1:$writer_port" -promscrape.config="$dir/vmagent-scrape.yml"
          -remoteWrite.tmpDataPath="$dir/vmagent" -remoteWrite.flushInterval=200ms
          # remote_write 1.0 wants labels sorted by name; sydradb refuses unsorted ones (400)
          -sortLabels)
    for ((i = 0; i < nodes; i++)); do
      relabel "$i" >"$dir/relabel-node$i.yml"
      args+=(-remoteWrite.url="${node_urls[i]}/api/v1/write" -remoteWrite.urlRelabelConfig="$dir/relabel-node$i.yml")
    done
    start writer /usr/bin/vmagent "${args[@]}"
    ;;
  prometheus)
    {
      sed "s/@TARGETS@/$target_list/" "$here/prometheus-writer.yml.in"
      for ((i = 0; i < nodes; i++)); do
        printf '  - url: %s/api/v1/write\n    queue_config: {batch_send_deadline: 1s}\n    write_relabel_configs:\n' \
          "${node_urls[i]}"
        relabel "$i" | sed -n '/^[- ]/s/^/      /p'
      done
    } >"$dir/writer.yml"
    start writer /usr/bin/prometheus --config.file="$dir/writer.yml" --storage.tsdb.path="$dir/writer-data" \
      --web.listen-address="127.0.0.1:$writer_port" --log.level=warn
    ;;
  *) usage ;;
esac

reader_port=$((writer_port + 1))
{
  cat "$here/prometheus-reader.yml.in"
  for url in "${node_urls[@]}"; do printf '  - url: %s/api/v1/read\n    read_recent: true\n' "$url"; done
} >"$dir/reader.yml"
start reader /usr/bin/prometheus --config.file="$dir/reader.yml" --storage.tsdb.path="$dir/reader-data" \
  --web.listen-address="127.0.0.1:$reader_port" --log.level=warn

writer_url="http://127.0.0.1:$writer_port" reader_url="http://127.0.0.1:$reader_port"
if [[ "$writer" == vmagent ]]; then wait_http writer "$writer_url/health"; else wait_http writer "$writer_url/-/ready"; fi
wait_http reader "$reader_url/-/ready"
{
  echo "NODE_URLS=\"${node_urls[*]}\""
  echo "WRITER_URL=$writer_url"
  echo "READER_URL=$reader_url"
} >"$dir/cluster.env.tmp"
mv "$dir/cluster.env.tmp" "$dir/cluster.env"
echo "run.sh: $nodes nodes (${node_urls[*]}), $writer writer $writer_url ($replicas replica(s) per series), reader $reader_url; configs and logs in $dir"
while :; do sleep 1; done
