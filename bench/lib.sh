# Shell helpers shared by the daemon benchmarks (sourced, not run): the processes a script
# starts are watched and stopped by their pid, never by name.

# The leading comment block of the script ($0), as its usage text; exits 2.
usage() {
  sed -n '2,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
}

# Whether process $1 runs (a zombie does not).
alive() {
  local state
  state="$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# SIGTERM to our child $1, up to 30 s for it to exit, then SIGKILL. Sets stopped_exit to its
# exit status, or "killed" when it had to be killed.
stop_pid() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || true
  stopped_exit=killed
  for _ in $(seq 300); do
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
