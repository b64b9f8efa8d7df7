#!/usr/bin/env bash
# The whole test suite: formatting, then every unit, property, doc and end-to-end test
# of the workspace. One profile (release) only, so CI compiles RocksDB once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
# lavapipe is installed above, so the wgpu backend's tests must run, not skip.
export NEEDLE_REQUIRE_WGPU=1
cargo fmt --all -- --check
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# `failpoints` compiles in the planted bugs the consistency suite must catch; they
# stay off unless a test arms them (tests/e2e/consistency.rs).
cargo test --release --workspace --features failpoints --no-fail-fast "$@" 2>&1 | tee "$log"
# Benches are not run here (timings belong in benchmarks), but they must compile (with
# the same features, so the node is not compiled twice).
cargo bench --workspace --features failpoints --no-run
# One total over every test binary, as the last line.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
