#!/usr/bin/env bash
# Builds and runs every test: the whole suite in release and under ASan+UBSan (with the
# allocator's debug checks on), and the concurrency and stress tests under TSan.
# Usage: bash tests/run_all.sh            (after deploy/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${SYDRA_JOBS:-2}"

run_preset() {
  local preset="$1"
  shift
  echo "=== ${preset}: configure, build, test $*"
  cmake --preset "${preset}" >/dev/null
  cmake --build --preset "${preset}" --parallel "${jobs}"
  ctest --preset "${preset}" --parallel "${jobs}" "$@"
}

run_preset release
run_preset asan
run_preset tsan -L 'concurrency|stress'
