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
  pkg-config
  # peer allocators, loaded by bench/compare_allocators.sh through LD_PRELOAD
  libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev
  # plots of latency percentiles; HTTP load generator
  gnuplot-nox wrk curl
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
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
echo "setup: all ${#packages[@]} packages present"
