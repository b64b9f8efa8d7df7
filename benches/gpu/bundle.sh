#!/usr/bin/env bash
# Builds the CUDA test and bench executables here (the GPU host has no Rust
# toolchain), strips them and bundles them with the GPU run script, the PyTorch
# baseline and the Vulkan loader into .gpu-bundle/ (git-ignored, under 64 MiB).
# Then, from the repository root, on the GPU host: bash .gpu-bundle/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
out=.gpu-bundle
rm -rf "$out"
mkdir -p "$out/bin" "$out/debs"

# name<TAB>path of each test/bench executable cargo reports.
executables() {
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        t = m["target"]
        name = "kernels_unit" if t["kind"] == ["lib"] else t["name"]
        print(name + "\t" + m["executable"])'
}
{
  cargo test --release -p needle-kernels --no-run --message-format=json
  cargo bench -p needle-kernels --bench gpu_compare --no-run --message-format=json
} 2>/dev/null | executables | while IFS=$'\t' read -r name path; do
  cp "$path" "$out/bin/$name"
  strip --strip-all "$out/bin/$name"
done
cp benches/gpu/run.sh benches/gpu/baseline.py "$out/"
# The GPU host has the NVIDIA Vulkan driver but neither the Vulkan loader nor the
# GL vendor-neutral dispatch libraries that the driver's ICD (libGLX_nvidia) needs.
(cd "$out/debs" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1) \
  || echo "bundle: Vulkan/GL packages not downloaded; wgpu will fail on the GPU host"
ls -la "$out/bin"
du -sh "$out"
