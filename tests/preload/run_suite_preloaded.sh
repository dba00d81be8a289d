#!/usr/bin/env bash
# The CI step for libsydralloc.so: the project's own test suite (every ctest test except
# the labels preload and fuzz) with the library as the malloc of every process ctest
# starts — the test programs, the daemon the integration tests start, the CLI.
#
# usage: tests/preload/run_suite_preloaded.sh BUILD_DIR [CTEST ARGS...]
#   BUILD_DIR  an unsanitized build with everything built, e.g. build/release
#              (cmake --build --preset release); the library is BUILD_DIR/alloc/libsydralloc.so
# Test programs that replace operator new themselves (the daemon, alloc_new_delete_tests)
# keep their own: the program's definitions come before the preloaded library's.
set -euo pipefail

build="${1:?usage: run_suite_preloaded.sh BUILD_DIR [CTEST ARGS...]}"
shift
lib="$(cd "$build" && pwd)/alloc/libsydralloc.so"
[[ -f "$lib" ]] || { echo "run_suite_preloaded: $lib not found (an unsanitized build of target sydralloc)" >&2; exit 2; }

# The library must really be the malloc: a child reports its stats at exit.
if ! LD_PRELOAD="$lib" SYDRA_ALLOC_STATS=1 ls / 2>&1 >/dev/null | grep -q '"small_pool"'; then
  echo "run_suite_preloaded: LD_PRELOAD=$lib did not take effect" >&2
  exit 1
fi

export LD_PRELOAD="$lib"
echo "LD_PRELOAD=$LD_PRELOAD"
exec ctest --test-dir "$build" --label-exclude 'preload|fuzz' --output-on-failure "$@"
