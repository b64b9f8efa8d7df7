#!/usr/bin/env bash
# Runs on the GPU host from the repository root, after benches/gpu/bundle.sh ran
# here: CUDA parity tests, the wgpu tests on the GPU's own Vulkan driver, the
# PyTorch baseline and needle's benchmark on the same data, in one call.
# Logs go to $OUT (the device tool returns that folder), else /tmp/needle-gpu-out.
set -uo pipefail
b=.gpu-bundle
out="${OUT:-/tmp/needle-gpu-out}"
mkdir -p "$out"
data=/tmp/needle-gpu-data
export NEEDLE_KERNEL_CACHE=/tmp/needle-kernel-cache

# cudarc loads libcuda, libnvrtc and libcublas at run time: put CUDA's and the
# Python wheels' library folders on the path.
libdirs=$(ls -d /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib 2>/dev/null | tr '\n' ':')
pylibs=$(python3 -c 'import glob, site, os; print(":".join(sorted({os.path.dirname(p) for s in site.getsitepackages() for p in glob.glob(s + "/nvidia/**/lib/lib*.so*", recursive=True)})))' 2>/dev/null)
export LD_LIBRARY_PATH="${libdirs}${pylibs}:${LD_LIBRARY_PATH:-}"
echo "== libraries"; ldconfig -p | grep -E "libcuda.so|libvulkan" | head -3
for l in libnvrtc.so libcublas.so; do echo "$l: $(ls ${LD_LIBRARY_PATH//:/\/$l* } 2>/dev/null | head -2 | tr '\n' ' ')"; done

if command -v nvidia-smi >/dev/null; then
  gpu=1
  # Vulkan loader and GL dispatch libraries for wgpu (the NVIDIA ICD ships with the
  # driver but needs libglvnd), then the driver's ICD and EGL vendor files. Only on
  # the GPU host, whose image is thrown away after the run.
  for f in "$b"/debs/*.deb; do [ -e "$f" ] && dpkg -x "$f" /; done
  ldconfig
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -e "$icd" ] && export VK_DRIVER_FILES="$icd"
  egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [ -e "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
  require=(NEEDLE_REQUIRE_CUDA=1 NEEDLE_REQUIRE_WGPU=1)
  echo "== device"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/device.txt"
  nvcc --version 2>/dev/null | tail -2 | tee -a "$out/device.txt"
else
  # The CPU half still runs anywhere: CPU and wgpu parity, kernel unit tests.
  gpu=0
  require=()
  echo "== no NVIDIA GPU here: CPU half only (CUDA tests skip, no baseline)"
fi

if [ "$gpu" = 1 ]; then
  # One wgpu test with the Vulkan loader's diagnostics: if no adapter opens, the
  # reason is in vulkan.txt and the CUDA parity below still runs (wgpu not required).
  echo "== Vulkan probe"
  VK_LOADER_DEBUG=error,warn,driver NEEDLE_REQUIRE_WGPU=1 timeout 120 \
    "$b/bin/parity" wgpu_shards_larger_than_one_buffer --test-threads=1 --nocapture >"$out/vulkan.txt" 2>&1
  if [ $? = 0 ]; then grep -m1 "^wgpu:" "$out/vulkan.txt"; else
    echo "wgpu did not open on the GPU's Vulkan driver (see vulkan.txt):"; tail -25 "$out/vulkan.txt"
    require=(NEEDLE_REQUIRE_CUDA=1)
  fi
fi

echo "== parity (${require[*]:-nothing required})"
env "${require[@]}" timeout 300 "$b/bin/parity" --test-threads=1 --nocapture 2>&1 | tee "$out/parity.log" | grep -vE "^$"
env "${require[@]}" timeout 120 "$b/bin/kernels_unit" 2>&1 | tail -3 | tee -a "$out/parity.log"

if [ "$gpu" = 1 ]; then
  echo "== kernel resources (nvcc -Xptxas -v, sm_90)"
  # Both tile selects: warp_select.cu builds on select.cu, as module.rs joins them.
  cat kernels/cuda/select.cu kernels/cuda/warp_select.cu >/tmp/kernels.cu
  nvcc -arch=sm_90 -Xptxas -v -c /tmp/kernels.cu -o /tmp/kernels.o 2>&1 \
    | grep -E "Compiling|registers|spill|smem" | tee -a "$out/device.txt"
  echo "== baseline and benchmark (N=1,000,000 d=768 k=10)"
  PYTHONUNBUFFERED=1 timeout 300 python3 "$b/baseline.py" --dir "$data" 2>&1 | tee "$out/baseline.log" | grep -v "^ref "
  timeout 400 "$b/bin/gpu_compare" --data "$data" 2>&1 | tee "$out/compare.log"
  # Stage times of warm searches, host gaps included (NEEDLE_CUDA_TRACE).
  for mode in ${NEEDLE_GPU_TRACE_MODES-f16 tf32 tf32-warp}; do
    echo "== trace ($mode): third Q=1 search, then the first stages of Q=1024" | tee -a "$out/trace.txt"
    NEEDLE_CUDA_TRACE=1 timeout 60 "$b/bin/gpu_compare" --data "$data" --profile "$mode" 2>&1 \
      | grep "cuda trace" >"/tmp/trace-$mode.txt"
    n=$(grep -c "upload queries" "/tmp/trace-$mode.txt")
    awk -v n="$n" '/upload queries/{i++} i>=3 && i<=4' "/tmp/trace-$mode.txt" | head -24 | tee -a "$out/trace.txt"
    echo "(searches traced: $n)" | tee -a "$out/trace.txt"
  done
  # Last, so the figures above come back even if the profiler is slow or refused:
  # each stage of a Q=1 then a Q=1024 search, one precision per pass.
  if [ "${NEEDLE_GPU_PROFILE:-1}" = 1 ] && command -v ncu >/dev/null; then
    for mode in ${NEEDLE_GPU_PROFILE_MODES-tf32 f16}; do
      echo "== ncu ($mode)"
      timeout 100 ncu --clock-control none --launch-count 45 \
        --section SpeedOfLight --section LaunchStats --section Occupancy \
        "$b/bin/gpu_compare" --data "$data" --profile "$mode" >"$out/ncu-$mode.txt" 2>&1
      echo "ncu exit $?"
      grep -E "^  [a-zA-Z_].*\(|Duration|Memory Throughput|Compute \(SM\) Throughput|Registers Per|Achieved Occupancy" \
        "$out/ncu-$mode.txt" | head -120
    done
  fi
fi
