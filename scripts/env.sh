# Sourced by the other scripts: shared build settings.
# Compiled dependencies (RocksDB's C++ is ~20 minutes) live outside the clone, so every
# clone on this machine, CI's included, reuses them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/needle-target}"
mkdir -p "$CARGO_TARGET_DIR"
# The Python virtual environment of the client tests (scripts/setup-python.sh).
export NEEDLE_VENV="${NEEDLE_VENV:-$HOME/.cache/needle-venv}"
