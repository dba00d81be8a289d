#!/usr/bin/env bash
# Builds and runs every test:
#   release  everything built; the preload tests (real programs under libsydralloc.so),
#            then every other test (unit, concurrency, stress, smoke, integration) with
#            libsydralloc.so as every process's malloc (LD_PRELOAD; the daemon keeps its own
#            operator new), then the Debian package: built, unpacked, its unit verified, its
#            binary started the way systemd would
#   asan     everything but the benchmark scripts' smoke runs (label smoke: release runs
#            them; the preset builds no benchmark), under AddressSanitizer +
#            UndefinedBehaviorSanitizer, with the allocator's debug checks (double free, wrong
#            owner, poisoning) on; the tests' own sources at -O0 (SYDRA_TEST_OPT), the
#            libraries and the daemon at -O2
#   tsan     the concurrency and stress tests under ThreadSanitizer; with
#            SYDRA_TSAN_INTEGRATION=1 the integration tests too (every daemon under TSan:
#            about ten more minutes on two cores, so CI leaves them out to stay under 30)
#   fuzz     the HTTP request, NDJSON ingest, WAL/segment reader, block codec, selector and
#            remote_write fuzzers for a bounded time (clang, libFuzzer)
# The asan and tsan presets compile with -g1 (line tables: enough for the sanitizers'
# reports; about 12 % faster than -g), at -O2 like release: -O1 is faster still but makes
# g++ 12 report false -Wstringop-overflow errors.
# Usage: bash tests/run_all.sh            (after deploy/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${SYDRA_JOBS:-2}"                # tests in parallel
build_jobs="${SYDRA_BUILD_JOBS:-3}"    # compile jobs: one more than the two cores covers I/O waits

run_preset() {
  local preset="$1" targets="$2"
  shift 2
  echo "=== ${preset}: configure, build ${targets:-all}, test $*"
  local start=$SECONDS
  cmake --preset "${preset}" >/dev/null
  if [ -n "${targets}" ]; then
    # shellcheck disable=SC2086  # targets is a word list
    cmake --build --preset "${preset}" --parallel "${build_jobs}" --target ${targets}
  else
    cmake --build --preset "${preset}" --parallel "${build_jobs}"
  fi
  ctest --preset "${preset}" --parallel "${jobs}" "$@"
  echo "=== ${preset}: done in $((SECONDS - start)) s"
}

# The release suite runs once, with libsydralloc.so preloaded (every test but the preload
# and fuzz labels); here only the preload label's own tests, which preload by themselves.
run_preset release "" -L preload
echo "=== release: the suite under LD_PRELOAD=libsydralloc.so"
start=$SECONDS
bash tests/preload/run_suite_preloaded.sh build/release --parallel "${jobs}"
echo "=== release under LD_PRELOAD: done in $((SECONDS - start)) s"
echo "=== release: the Debian package"
start=$SECONDS
bash deploy/test_package.sh build/release
echo "=== package: done in $((SECONDS - start)) s"
run_preset asan "" -LE smoke
if [[ "${SYDRA_TSAN_INTEGRATION:-0}" == 1 ]]; then
  run_preset tsan "alloc_tests storage_tests http_tests integration_tests sydradb" -L 'concurrency|stress|integration'
else
  run_preset tsan "alloc_tests storage_tests http_tests" -L 'concurrency|stress'
fi
run_preset fuzz "fuzz_http_request fuzz_ingest_parser fuzz_wal_reader fuzz_codec fuzz_selector fuzz_remote_write" -L fuzz
