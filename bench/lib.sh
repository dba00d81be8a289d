# Shell helpers shared by the benchmark scripts that start servers (sourced, not run); the
# processes a script starts are watched and stopped by their pid, never by name:
#   usage                      the leading comment block of the script ($0); exits 2
#   alive PID                  true while PID exists and is not a zombie
#   stop_process PID SIG SECS  sends SIG, waits up to SECS for the exit (then SIGKILL), and
#                              sets stopped_exit to the exit status, or "killed"
#   stop_pid PID               stop_process PID TERM 30
#   kill_quietly PID           TERM, up to 10 s, then KILL; never fails (for exit traps)
#   free_port                  a TCP port free on 127.0.0.1 (bound and released)
#   start_sydradb BIN DIR ARGS...  `BIN serve` on 127.0.0.1, port 0 and DIR/port, data in
#                              DIR/data, log appended to DIR/server.log, then ARGS; waits
#                              (60 s at most) for the port; sets server_pid and port
#   start_vm BIN DIR ARGS...   victoria-metrics on a free port, data in DIR/vm, 100 years of
#                              retention, then ARGS; waits (60 s) for /health; sets
#                              server_pid and port
# PID must be a child of the calling shell (stop_process collects its status with wait).

usage() {
  sed -n '2,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
}

alive() {
  local state
  state="$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

stop_process() {
  local pid="$1" signal="$2" seconds="$3"
  kill "-$signal" "$pid" 2>/dev/null || true
  stopped_exit=killed
  for _ in $(seq $((seconds * 10))); do
    if ! alive "$pid"; then
      stopped_exit=0
      wait "$pid" || stopped_exit=$?
      return 0
    fi
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_pid() {
  stop_process "$1" TERM 30
}

kill_quietly() {
  local pid="$1"
  [[ -n "$pid" ]] && alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_sydradb() {
  local bin="$1" dir="$2" me
  shift 2
  me="$(basename "$0" .sh)"
  rm -f "$dir/port"
  "$bin" serve --listen 127.0.0.1 --port 0 --port-file "$dir/port" --data-dir "$dir/data" --log-level warn "$@" \
    >>"$dir/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 600); do
    [[ -s "$dir/port" ]] && break
    alive "$server_pid" || { echo "$me: sydradb exited:" >&2; cat "$dir/server.log" >&2; return 1; }
    sleep 0.1
  done
  [[ -s "$dir/port" ]] || { echo "$me: sydradb wrote no port file within 60 s" >&2; return 1; }
  port="$(cat "$dir/port")"
}

start_vm() {
  local bin="$1" dir="$2" me
  shift 2
  me="$(basename "$0" .sh)"
  port="$(free_port)"
  "$bin" -httpListenAddr "127.0.0.1:$port" -storageDataPath "$dir/vm" -retentionPeriod 100y -loggerLevel ERROR "$@" \
    >>"$dir/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && return 0
    alive "$server_pid" || { echo "$me: victoria-metrics exited:" >&2; cat "$dir/server.log" >&2; return 1; }
    sleep 0.1
  done
  echo "$me: victoria-metrics not healthy within 60 s" >&2
  return 1
}
