#!/usr/bin/env bash
# The whole test suite. Installs what is missing; builds with warnings as errors and runs every unit and
# integration test (ctest); runs each libFuzzer target for 10 s over its seed corpus; then builds again
# with AddressSanitizer + UndefinedBehaviorSanitizer and runs the whole ctest suite once more.
# Integration tests start their own redis-server, APNs stand-in and services on free loopback ports.
# Exit status 0 only when everything passes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build
(cd build && ctest --output-on-failure -j2)
./scripts/fuzz.sh 10
./scripts/build.sh build-asan -DPASSKIT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j2)
