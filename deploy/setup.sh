#!/usr/bin/env bash
# Installs every Debian package sydradb needs to build, test and benchmark.
# Idempotent and non-interactive: safe to run on every CI run and on a fresh machine.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build clang lld clang-format clang-tidy libclang-rt-14-dev
  # test framework
  doctest-dev
  # the daemon: HTTP (Asio/Beast), JSON, logging, config, arguments, systemd notify
  libboost1.81-dev nlohmann-json3-dev libspdlog-dev libtomlplusplus-dev libcli11-dev libsystemd-dev
  libxxhash-dev libsimdjson-dev
  # label matchers: RE2 regular expressions (fully anchored, as Prometheus)
  libre2-dev
  # Prometheus remote_write / remote_read: protobuf messages (protoc runs at build time from
  # CMake), snappy block compression
  libprotobuf-dev protobuf-compiler libsnappy-dev
  pkg-config
  # peer allocators, loaded by bench/compare_allocators.sh through LD_PRELOAD
  libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev
  # plots of latency percentiles; HTTP load generator
  gnuplot-nox wrk curl
  # bench/codec_bench: what a zstd pass over segment blocks would save
  libzstd-dev
  # whole-program tools used by tests and docs (RSS, instruction counts)
  procps valgrind python3
  # packaging and its test: dpkg-shlibdeps (cpack), systemd-analyze, file, objdump
  dpkg-dev systemd file binutils strace
)

# Packages that ship a system service their maintainer scripts would start (and enable):
# only their tools are needed (promtool checks /metrics; tests start their own servers on
# loopback ports), so they are installed with starting services forbidden.
service_packages=(
  prometheus
  # the peer TSDB in benchmarks (bench/control_bench.sh starts its own on loopback)
  victoria-metrics
  # the Redis workload of bench/redis_workload.sh (the benchmark starts its own server)
  redis-server redis-tools
)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
missing_services=()
for p in "${service_packages[@]}"; do
  installed "$p" || missing_services+=("$p")
done

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
if ((${#missing[@]} + ${#missing_services[@]})); then
  $sudo apt-get update -qq
fi
if ((${#missing[@]})); then
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ((${#missing_services[@]})); then
  # invoke-rc.d and deb-systemd-invoke start nothing while /usr/sbin/policy-rc.d exits 101.
  # An existing policy is kept aside and put back, whatever happens.
  policy=/usr/sbin/policy-rc.d
  saved=""
  if [ -e "$policy" ]; then
    saved="$(mktemp)"
    $sudo cp -p "$policy" "$saved"
  fi
  restore_policy() {
    if [ -n "$saved" ]; then
      $sudo cp -p "$saved" "$policy"
      rm -f "$saved"
    else
      $sudo rm -f "$policy"
    fi
  }
  trap restore_policy EXIT
  printf '#!/bin/sh\n# deploy/setup.sh: no service starts while it installs packages\nexit 101\n' |
    $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  $sudo apt-get install -y -qq --no-install-recommends "${missing_services[@]}"
  restore_policy
  trap - EXIT
  # Not enabled either, so that no boot starts them (only where systemd runs).
  if [ -d /run/systemd/system ]; then
    for p in "${missing_services[@]}"; do
      $sudo systemctl disable --now "$p" >/dev/null 2>&1 || true
    done
  fi
fi
echo "setup: all $((${#packages[@]} + ${#service_packages[@]})) packages present"
