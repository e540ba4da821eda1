#!/usr/bin/env bash
# Sets up what is missing, then builds and runs the whole test suite twice:
# under AddressSanitizer + UndefinedBehaviorSanitizer (C tests and specs),
# then the regular build (everything), ending with CTest's summary.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
jobs="$(nproc)"

echo "== sanitizer build (ASan + UBSan) =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DAC_SANITIZE=ON -DAC_WERROR=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ctest -j"$jobs" --output-on-failure -L "c|lua|example")

echo "== regular build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAC_WERROR=ON >/dev/null
cmake --build build -j"$jobs"
cd build && ctest -j"$jobs" --output-on-failure
