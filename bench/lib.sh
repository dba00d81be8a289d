# Shell helpers shared by the benchmark scripts that start servers (sourced, not run); the
# processes a script starts are watched and stopped by their pid, never by name:
#   usage                      the leading comment block of the script ($0); exits 2
#   alive PID                  true while PID exists and is not a zombie
#   stop_process PID SIG SECS  sends SIG, waits up to SECS for the exit (then SIGKILL), and
#                              sets stopped_exit to the exit status, or "killed"
#   stop_pid PID               stop_process PID TERM 30
#   kill_quietly PID           TERM, up to 10 s, then KILL; never fails (for exit traps)
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
