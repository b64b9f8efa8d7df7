#!/usr/bin/env bash
# The whole test suite: formatting, then every unit, property and end-to-end test of
# the workspace. One profile (release) only, so CI compiles RocksDB once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo fmt --all -- --check
cargo test --release --workspace --no-fail-fast "$@"
# Benches are not run here (timings belong in benchmarks), but they must compile.
cargo bench --workspace --no-run
