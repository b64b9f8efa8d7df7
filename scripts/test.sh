#!/usr/bin/env bash
# The whole test suite: formatting, then every unit, property, doc and end-to-end test
# of the workspace. One profile (release) only, so CI compiles RocksDB once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup-python.sh
source scripts/env.sh
# lavapipe is installed above, so the wgpu backend's tests must run, not skip.
export NEEDLE_REQUIRE_WGPU=1
cargo fmt --all -- --check
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# `failpoints` compiles in the planted bugs the consistency suite must catch; they
# stay off unless a test arms them (tests/e2e/consistency.rs).
# A failure here still lets the client tests run and the closing line count it.
rust_rc=0
cargo test --release --workspace --features failpoints --no-fail-fast "$@" 2>&1 | tee "$log" || rust_rc=$?
# The Python client tests (tests/clients: the official qdrant-client against real
# `needle serve --qdrant-http` nodes, and the native API against its OpenAPI document),
# on the binary the end-to-end tests just used, checked against numpy ground truth.
clients_log="$(mktemp)"
trap 'rm -f "$log" "$clients_log"' EXIT
(cd tests/clients && NEEDLE_BIN="$CARGO_TARGET_DIR/release/needle" \
  "$NEEDLE_VENV/bin/python" -m pytest -q -p no:cacheprovider --color=no) 2>&1 | tee "$clients_log" || true
# Benches are not run here (timings belong in benchmarks), but they must compile (with
# the same features, so the node is not compiled twice).
cargo bench --workspace --features failpoints --no-run
# One total over every test binary and the client tests, as the last line; the
# client tests' own counts in brackets. A failure anywhere fails the script.
read -r qp qf < <(awk '/ (passed|failed)/ && / in [0-9.]+s/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^(failed|errors?)/) f += $i } }
     END { printf "%d %d\n", p, f }' "$clients_log")
if [ "$qp" -eq 0 ] && [ "$qf" -eq 0 ]; then qf=1; fi  # the client tests did not run at all
awk -v qp="$qp" -v qf="$qf" '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed (of which Python clients, qdrant-client and OpenAPI: %d passed, %d failed)\n", p + qp, f + qf, qp, qf; exit (f + qf > 0) }' "$log"
exit "$rust_rc"
