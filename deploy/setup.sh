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

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive

# Sets `missing` to the packages among the arguments that are not installed.
find_missing() {
  missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
}

find_missing "${packages[@]}"
if ((${#missing[@]})); then
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Peer databases for the benchmarks. Debian's packages enable and start a system service on
# install: a temporary policy-rc.d forbids the start, and the unit is disabled afterwards, so
# that no service is left running or starting at boot (benchmarks start their own server on
# loopback with a temporary directory).
service_packages=(victoria-metrics)
find_missing "${service_packages[@]}"
if ((${#missing[@]})); then
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod +x "$policy"
    own_policy=1
  fi
  status=0
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
  [ "$own_policy" -eq 0 ] || $sudo rm -f "$policy"
  [ "$status" -eq 0 ] || exit "$status"
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    for p in "${missing[@]}"; do $sudo systemctl disable --now "$p" >/dev/null 2>&1 || true; done
  fi
fi
echo "setup: all $((${#packages[@]} + ${#service_packages[@]})) packages present"
