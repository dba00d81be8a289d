#!/usr/bin/env bash
# The packaging check (CI): builds the Debian package from BUILD_DIR and proves that it
# installs what the service needs and that the daemon runs the way the unit runs it.
#
#   bash deploy/test_package.sh build/release
#
# 1. builds the `sydradb` target and runs cpack (DEB) in BUILD_DIR, into a scratch directory;
# 2. unpacks the .deb (dpkg-deb -x) into a scratch root and checks its files, their
#    contents, the control fields (name, version, architecture, Depends from
#    dpkg-shlibdeps, conffiles) and the maintainer scripts;
# 3. runs the package's sysusers.d and tmpfiles.d files against a scratch root (as root);
# 4. `systemd-analyze verify` on the unit (ExecStart pointed at the unpacked binary): any
#    output at all is a failure;
# 5. `systemd-analyze security --offline=true`: exposure at most 2.0 and the same line as
#    recorded in docs/operations.md;
# 6. starts the unpacked binary with the unit's ExecStart arguments (the packaged example
#    config, with data_dir moved to a temporary directory and port 0), NOTIFY_SOCKET and
#    WATCHDOG_USEC set: expects READY=1, WATCHDOG=1, an answer on /status, then on SIGTERM
#    STOPPING=1 and exit status 0;
# 7. runs it again under strace (ingest, query, stats, metrics, SIGTERM) and checks that every
#    system call it made passes the unit's SystemCallFilter= (skipped without strace).
# Exit status 0 when every check passed; otherwise every failed check is listed.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
src="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "$1" && pwd)"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/sydradb-package.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() { echo "ok: $*"; }
check() {  # check DESCRIPTION COMMAND...
  local what="$1"
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

for tool in cpack dpkg-deb dpkg-shlibdeps systemd-analyze file python3; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (bash deploy/setup.sh)" >&2; exit 1; }
done

# --- 1. the package ------------------------------------------------------------------------
cmake --build "$build" --target sydradb >/dev/null
(cd "$build" && cpack -G DEB -B "$scratch/out" >"$scratch/cpack.log" 2>&1) || {
  cat "$scratch/cpack.log" >&2
  echo "FAIL: cpack" >&2
  exit 1
}
shopt -s nullglob
debs=("$scratch"/out/sydradb_*.deb)
shopt -u nullglob
[ ${#debs[@]} -eq 1 ] || { echo "FAIL: expected one sydradb_*.deb, got: ${debs[*]:-none}" >&2; exit 1; }
deb="${debs[0]}"
pass "cpack built $(basename "$deb")"

# --- 2. files and control fields -------------------------------------------------------------
root="$scratch/root"
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$scratch/control"

for f in usr/bin/sydradb usr/lib/systemd/system/sydradb.service usr/lib/sysusers.d/sydradb.conf \
  usr/lib/tmpfiles.d/sydradb.conf etc/sydradb/sydradb.toml usr/share/doc/sydradb/README.md; do
  check "package has /$f" test -f "$root/$f"
done
for doc in "$src"/docs/*.md; do
  check "package has /usr/share/doc/sydradb/$(basename "$doc")" \
    cmp -s "$doc" "$root/usr/share/doc/sydradb/$(basename "$doc")"
done
check "unit is deploy/sydradb.service" cmp -s "$src/deploy/sydradb.service" "$root/usr/lib/systemd/system/sydradb.service"
check "sysusers.d file is deploy/sydradb.sysusers" cmp -s "$src/deploy/sydradb.sysusers" "$root/usr/lib/sysusers.d/sydradb.conf"
check "tmpfiles.d file is deploy/sydradb.tmpfiles" cmp -s "$src/deploy/sydradb.tmpfiles" "$root/usr/lib/tmpfiles.d/sydradb.conf"
check "example config is deploy/sydradb.toml" cmp -s "$src/deploy/sydradb.toml" "$root/etc/sydradb/sydradb.toml"
check "/usr/bin/sydradb is an executable ELF" test -x "$root/usr/bin/sydradb"
check "/usr/bin/sydradb is stripped" bash -c "file -b '$root/usr/bin/sydradb' | grep -q 'ELF.*stripped' && ! file -b '$root/usr/bin/sydradb' | grep -q 'not stripped'"
unexpected="$(cd "$root" && find . -type f | grep -v -E '^\./(usr/bin/sydradb|usr/lib/systemd/system/sydradb\.service|usr/lib/sysusers\.d/sydradb\.conf|usr/lib/tmpfiles\.d/sydradb\.conf|etc/sydradb/sydradb\.toml|usr/share/doc/sydradb/[^/]+\.md)$' || true)"
check "no other files in the package${unexpected:+: $unexpected}" test -z "$unexpected"

field() { dpkg-deb -f "$deb" "$1"; }
version="$(sed -n 's/^project(sydradb VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")"
check "Package: sydradb" test "$(field Package)" = sydradb
check "Version: $version (the CMake project version)" test "$(field Version)" = "$version"
check "Architecture: $(dpkg --print-architecture)" test "$(field Architecture)" = "$(dpkg --print-architecture)"
check "Maintainer is set" test -n "$(field Maintainer)"
check "Description is set" test -n "$(field Description)"
check "sydradb version prints the package version" \
  test "$("$root/usr/bin/sydradb" version)" = "sydradb $version"
depends="$(field Depends)"
echo "   Depends: $depends"
# The package names in Depends, one per line (alternatives and version constraints dropped).
dep_names="$(tr ',|' '\n\n' <<<"$depends" | sed -E 's/^ *([^ (]+).*/\1/' | sed '/^$/d')"
depends_on() { grep -qxF "$1" <<<"$dep_names"; }
for lib in libc6 libstdc++6 libsystemd0 libprotobuf32 libsnappy1v5; do
  check "Depends names $lib (dpkg-shlibdeps)" depends_on "$lib"
done
# Every shared library the binary needs comes from a package that Depends names, directly
# or as a virtual package it provides (libspdlog1.10 provides libspdlog1.10-fmt9).
for lib in $(objdump -p "$root/usr/bin/sydradb" | awk '/NEEDED/ {print $2}'); do
  owner="$(dpkg -S "*/$lib" 2>/dev/null | head -1 | cut -d: -f1)"
  covered=1
  if [ -n "$owner" ]; then
    for name in "$owner" $(dpkg-query -W -f='${Provides}' "$owner" 2>/dev/null | tr ',' '\n' | sed -E 's/^ *([^ (]+).*/\1/'); do
      depends_on "$name" && covered=0
    done
  fi
  check "$lib (package ${owner:-?}) is covered by Depends" test "$covered" -eq 0
done
check "conffiles lists /etc/sydradb/sydradb.toml" grep -qx /etc/sydradb/sydradb.toml "$scratch/control/conffiles"
for script in postinst prerm postrm; do
  check "$script is an executable shell script" bash -c "test -x '$scratch/control/$script' && sh -n '$scratch/control/$script'"
done
check "postinst runs systemd-sysusers" grep -q 'systemd-sysusers sydradb.conf' "$scratch/control/postinst"
check "postinst runs systemd-tmpfiles" grep -q 'systemd-tmpfiles --create sydradb.conf' "$scratch/control/postinst"
check "postinst reloads systemd" grep -q 'daemon-reload' "$scratch/control/postinst"

# --- 3. sysusers.d and tmpfiles.d, applied to a scratch root -----------------------------------
unit="$root/usr/lib/systemd/system/sydradb.service"
check "unit runs as the user the sysusers.d file creates" \
  bash -c "grep -qx 'User=sydradb' '$unit' && grep -Eq '^u sydradb ' '$root/usr/lib/sysusers.d/sydradb.conf'"
check "unit's StateDirectory is the example config's data_dir" \
  bash -c "grep -qx 'StateDirectory=sydradb' '$unit' && grep -qx 'data_dir = \"/var/lib/sydradb\"' '$root/etc/sydradb/sydradb.toml'"
if [ "$(id -u)" -eq 0 ]; then
  sysroot="$scratch/sysroot"
  mkdir -p "$sysroot/etc"
  check "systemd-sysusers creates the sydradb user" \
    bash -c "systemd-sysusers --root='$sysroot' '$root/usr/lib/sysusers.d/sydradb.conf' 2>'$scratch/sysusers.err' &&
             grep -q '^sydradb:x:[0-9]*:[0-9]*:sydradb time-series database:/var/lib/sydradb:/usr/sbin/nologin$' '$sysroot/etc/passwd'"
  check "systemd-tmpfiles creates /var/lib/sydradb for sydradb, mode 0700" \
    bash -c "systemd-tmpfiles --root='$sysroot' --create '$root/usr/lib/tmpfiles.d/sydradb.conf' &&
             uid=\$(awk -F: '\$1==\"sydradb\" {print \$3}' '$sysroot/etc/passwd') &&
             [ \"\$(stat -c '%u %a' '$sysroot/var/lib/sydradb')\" = \"\$uid 700\" ]"
else
  echo "skip: sysusers.d and tmpfiles.d need root"
fi

# --- 4. systemd-analyze verify ------------------------------------------------------------------
# verify checks that ExecStart exists: a copy of the unit whose ExecStart is the unpacked binary.
mkdir -p "$scratch/units"
sed "s#^ExecStart=/usr/bin/sydradb #ExecStart=$root/usr/bin/sydradb #" "$unit" >"$scratch/units/sydradb.service"
verify_out="$(systemd-analyze verify --man=no "$scratch/units/sydradb.service" 2>&1)" && verify_rc=0 || verify_rc=$?
if [ "$verify_rc" -eq 0 ] && [ -z "$verify_out" ]; then
  pass "systemd-analyze verify: no output"
else
  fail "systemd-analyze verify (exit $verify_rc): $verify_out"
fi

# --- 5. systemd-analyze security ----------------------------------------------------------------
security="$(systemd-analyze security --offline=true "$scratch/units/sydradb.service" 2>&1 || true)"
overall="$(grep -o 'Overall exposure level for sydradb.service: [0-9.]* [A-Z]*' <<<"$security" || true)"
exposure="$(awk '{print $(NF-1)}' <<<"$overall")"
echo "   $overall"
check "security exposure ${exposure:-?} is at most 2.0" \
  python3 -c "import sys; sys.exit(0 if '$exposure' and float('$exposure') <= 2.0 else 1)"
check "docs/operations.md records '$overall'" grep -qF "$overall" "$src/docs/operations.md"

# --- 6. the daemon as the unit starts it -------------------------------------------------------
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
run="$scratch/run"
mkdir -p "$run"
sed "s#^data_dir = .*#data_dir = \"$run/data\"#" "$root/etc/sydradb/sydradb.toml" >"$run/sydradb.toml"
printf 'http_port = 0\nport_file = "%s/port"\nworkers = 2\n' "$run" >>"$run/sydradb.toml"
argv="${exec_start/#\/usr\/bin\/sydradb /$root/usr/bin/sydradb }"
argv="${argv/ \/etc\/sydradb\/sydradb.toml/ $run/sydradb.toml}"
check "ExecStart is '/usr/bin/sydradb serve --config /etc/sydradb/sydradb.toml'" \
  test "$exec_start" = "/usr/bin/sydradb serve --config /etc/sydradb/sydradb.toml"
if python3 - "$run" $argv <<'PY'; then pass "daemon: READY=1, WATCHDOG=1, /status, SIGTERM -> STOPPING=1, exit 0"; else fail "daemon under NOTIFY_SOCKET (log: above)"; fi
import json, os, signal, socket, subprocess, sys, time, urllib.request

run, argv = sys.argv[1], sys.argv[2:]
sock_path = os.path.join(run, "notify.sock")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sock_path)
env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="1000000")
env.pop("WATCHDOG_PID", None)
log = open(os.path.join(run, "daemon.log"), "w+")
proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
messages = []

def fail(why):
    log.seek(0)
    sys.stderr.write(f"   {why}\n   notify messages: {messages}\n   daemon log:\n{log.read()}")
    if proc.poll() is None:
        proc.kill()
    sys.exit(1)

def wait_for(word, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except socket.timeout:
            break
        messages.append(data)
        if word in data.split("\n"):
            return data
    fail(f"no {word} within {seconds} s")

ready = wait_for("READY=1", 30)
if f"MAINPID={proc.pid}" not in ready.split("\n"):
    fail(f"READY message without MAINPID={proc.pid}: {ready!r}")
port = int(open(os.path.join(run, "port")).read())
with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as r:
    status = json.load(r)
    if r.status != 200 or status.get("status") != "ok":
        fail(f"/status answered {r.status} {status}")
wait_for("WATCHDOG=1", 5)  # WATCHDOG_USEC=1 s: a ping every half second
proc.send_signal(signal.SIGTERM)
wait_for("STOPPING=1", 15)
try:
    code = proc.wait(timeout=30)
except subprocess.TimeoutExpired:
    fail("still running 30 s after SIGTERM")
if code != 0:
    fail(f"exit status {code} after SIGTERM")
log.seek(0)
warnings = [l for l in log.read().splitlines() if "unknown key" in l or " error " in l]
if warnings:
    fail(f"warnings or errors in the log: {warnings}")
PY

# --- 7. the system calls the daemon makes are those the unit allows ----------------------------
# Under strace: start, ingest, query, stats, metrics, SIGTERM. Every system call it made must
# pass the unit's SystemCallFilter= lines (groups expanded by systemd-analyze); a call that
# does not would fail with EPERM under systemd (SystemCallErrorNumber=EPERM).
if command -v strace >/dev/null && strace -f -qq -o /dev/null true 2>/dev/null; then
  rm -rf "$run/data" "$run/port"
  if python3 - "$run" "$unit" $argv <<'PY'; then pass "every system call the daemon made passes the unit's SystemCallFilter"; else fail "system calls outside the unit's SystemCallFilter (above)"; fi
import functools, json, os, re, signal, socket, subprocess, sys, time, urllib.request

run, unit, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
trace = os.path.join(run, "strace.out")
sock_path = os.path.join(run, "notify-strace.sock")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sock_path)
sock.settimeout(60)
log = open(os.path.join(run, "daemon-strace.log"), "w")
proc = subprocess.Popen(["strace", "-f", "-qq", "-o", trace] + argv, stdout=log, stderr=subprocess.STDOUT,
                        env=dict(os.environ, NOTIFY_SOCKET=sock_path))
main_pid = None
while main_pid is None:
    fields = dict(l.split("=", 1) for l in sock.recv(4096).decode().split("\n") if "=" in l)
    if fields.get("READY") == "1":
        main_pid = int(fields["MAINPID"])
url = "http://127.0.0.1:" + open(os.path.join(run, "port")).read().strip()
line = json.dumps({"series": "cpu", "tags": {"host": "a"}, "ts": int(time.time() * 1000), "value": 1.5})
urllib.request.urlopen(urllib.request.Request(url + "/api/v1/ingest", data=(line + "\n").encode()), timeout=10).read()
for path in ["/api/v1/query/range?series=cpu&tags=%7B%22host%22%3A%22a%22%7D&start=0&end=9999999999999",
             "/debug/alloc/stats", "/metrics", "/status"]:
    urllib.request.urlopen(url + path, timeout=10).read()
os.kill(main_pid, signal.SIGTERM)
if proc.wait(timeout=60) != 0:
    sys.exit("   the daemon under strace did not exit 0")

@functools.lru_cache(None)
def expand(group):
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True, text=True).stdout
    names = set()
    for l in out.splitlines()[1:]:
        l = l.strip()
        if l and not l.startswith("#"):
            names |= expand(l) if l.startswith("@") else {l}
    return names

allow, deny = set(), set()
for line in open(unit):
    if line.startswith("SystemCallFilter="):
        value = line.split("=", 1)[1].strip()
        target = deny if value.startswith("~") else allow
        for item in value.lstrip("~").split():
            target |= expand(item) if item.startswith("@") else {item}
made = set()
for l in open(trace):
    m = re.match(r"\d+\s+([a-z0-9_]+)\(", l)
    if m:
        made.add(m.group(1))
outside = sorted(c for c in made if c not in allow or c in deny)
print(f"   {len(made)} distinct system calls")
if outside:
    sys.exit(f"   outside the filter: {outside}")
PY
else
  echo "skip: strace missing or not permitted (the system call check)"
fi

echo
if [ "$failures" -ne 0 ]; then
  echo "test_package: $failures check(s) failed" >&2
  exit 1
fi
echo "test_package: all checks passed ($(basename "$deb"))"
