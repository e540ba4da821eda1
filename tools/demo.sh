#!/usr/bin/env bash
# Sets up what is missing, builds, and runs the quickstart demo.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
./build/acache examples/quickstart.lua
