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
  # the peer TSDB in benchmarks (bench/control_bench.sh starts its own on loopback)
  victoria-metrics
  # whole-program tools used by tests and docs (RSS, instruction counts)
  procps valgrind python3
  # packaging and its test: dpkg-shlibdeps (cpack), systemd-analyze, file, objdump
  dpkg-dev systemd file binutils strace
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Debian's victoria-metrics package enables and starts a system service when installed;
  # benchmarks and tests start their own. A policy-rc.d that refuses (exit 101) keeps the
  # maintainer scripts from starting it; it is removed afterwards.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT
  fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all ${#packages[@]} packages present"
