#!/usr/bin/env bash
# fuzz.sh [SECONDS]: builds the libFuzzer targets with clang (build-fuzz/) and runs each one for SECONDS
# (default 30) over a copy of its seed corpus in fuzz/corpus/. A crash leaves its input in build-fuzz/
# and makes the script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
command -v clang >/dev/null || { echo "fuzz.sh needs clang (apt-get install clang)" >&2; exit 1; }
CC=clang cmake -S . -B build-fuzz -DPASSKIT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_path fuzz_httpdate fuzz_merge_patch fuzz_template_zip \
  fuzz_passjson_check fuzz_pkpass_reader fuzz_pkpass_strings
for target in path httpdate merge_patch template_zip passjson_check pkpass_reader pkpass_strings; do
  work=build-fuzz/corpus-$target
  mkdir -p "$work"
  cp -n fuzz/corpus/$target/* "$work"/ 2>/dev/null || true
  echo "== fuzz_$target for ${seconds}s"
  (cd build-fuzz && ./fuzz/fuzz_$target -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
      -print_final_stats=1 "corpus-$target" 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|SUMMARY|Done" )
done
