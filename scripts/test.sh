#!/usr/bin/env bash
# The whole test suite. Installs what is missing; builds with warnings as errors and runs every unit and
# integration test (ctest); runs each libFuzzer target for 10 s over its seed corpus; then builds again
# with AddressSanitizer + UndefinedBehaviorSanitizer and runs the whole ctest suite once more.
# Between the two: the Kubernetes manifests are validated offline (tests/k8s/validate.sh) and the
# compose stack is built and run for real (tests/compose/run.sh); each needs ../shared beside the
# repository (and the compose test root, or a Docker engine) and is skipped without it.
# Integration tests start their own redis-server, APNs stand-in and services on free loopback ports.
# Exit status 0 only when everything passes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh build
(cd build && ctest --output-on-failure -j2)
skip_ok() { "$@" || { rc=$?; [ "$rc" -eq 77 ] || exit "$rc"; }; }
skip_ok tests/k8s/validate.sh
skip_ok tests/compose/run.sh
./scripts/fuzz.sh 10
./scripts/build.sh build-asan -DPASSKIT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j2)
