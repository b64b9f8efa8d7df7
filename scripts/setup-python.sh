#!/usr/bin/env bash
# Creates the Python virtual environment the client tests (and comparison benches)
# run in, idempotently: outside the clone, like the build cache, and rebuilt only
# when the requirements change. Prints nothing when it is already up to date.
#   scripts/setup-python.sh                      # tests/clients/requirements.txt
#   scripts/setup-python.sh benches/requirements.txt
# Use it with: source scripts/env.sh; "$NEEDLE_VENV/bin/python" ...
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
requirements=("$@")
if [ "${#requirements[@]}" -eq 0 ]; then requirements=(tests/clients/requirements.txt); fi
# The stamp names the requirements and the interpreter; a venv whose Python no
# longer runs (the interpreter was upgraded or removed) is made again.
stamp_name="$( (cat "${requirements[@]}"; python3 --version) | sha256sum | cut -c1-16)"
stamp="$NEEDLE_VENV/.installed-$stamp_name"
# pip must run in it: after an interpreter upgrade the venv's Python may start while
# its site-packages are gone.
usable() { "$NEEDLE_VENV/bin/python" -m pip --version >/dev/null 2>&1; }
if [ -f "$stamp" ] && usable; then exit 0; fi
if [ -d "$NEEDLE_VENV" ] && ! usable; then
  echo "setup-python: $NEEDLE_VENV is broken; making it again"
  rm -rf "$NEEDLE_VENV"
fi
if [ ! -x "$NEEDLE_VENV/bin/python" ]; then
  echo "setup-python: creating $NEEDLE_VENV"
  python3 -m venv "$NEEDLE_VENV"
fi
args=()
for r in "${requirements[@]}"; do args+=(-r "$r"); done
echo "setup-python: installing ${requirements[*]}"
"$NEEDLE_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
touch "$stamp"
