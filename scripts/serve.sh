#!/usr/bin/env bash
# Installs what the build needs, builds, and runs a single node on the defaults:
# data in ./needle-data, HTTP on 127.0.0.1:8080, the best available backend.
# Extra arguments go to `needle serve` (see `needle serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
exec cargo run --release --bin needle -- serve "$@"
