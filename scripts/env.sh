# Sourced by the other scripts: shared build settings.
# Compiled dependencies (RocksDB's C++ is ~20 minutes) live outside the clone, so every
# clone on this machine, CI's included, reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/needle-target}"
mkdir -p "$CARGO_TARGET_DIR"
