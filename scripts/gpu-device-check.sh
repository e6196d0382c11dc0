#!/usr/bin/env bash
# One run of the GPU checks on a machine with a real GPU and no Rust toolchain (the device
# machine): prebuilt release binaries in .devbin/ (see the comment at the end), the Vulkan
# loader's .deb files in .gl/. Writes everything to $OUT/gpu-check.log.
set -uo pipefail
OUT=${OUT:-/tmp}
exec > >(tee "$OUT/gpu-check.log") 2>&1

for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
nvidia-smi -L
if ! compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null && ! compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
# The binaries find the shipped MNIST sample through the path they were built at.
mkdir -p /work && ln -sfn "$PWD" /work/main
export CI=true

echo "=== ray-gpu tests (CI=true: no adapter is a failure) ==="
for t in .devbin/test_*; do
    echo "--- $t"
    timeout 180 "$t" --test-threads=1 2>&1 | grep -E "^test |test result|panicked|adapter" | tail -60
done
echo "=== gpu_bench ==="
timeout 240 .devbin/gpu_bench --sizes 1024,4096 --cpu-max 1024
echo "=== mnist example: 200 and 1000 steps ==="
timeout 120 .devbin/mnist --steps 200
timeout 120 .devbin/mnist --steps 1000
echo "=== ray-bench --quick (16 cores) ==="
timeout 120 .devbin/ray-bench --quick
echo "=== done ==="

# Building .devbin here (x86_64):
#   cargo build --release --example mnist -p ray && cargo build --release -p ray-gpu --example gpu_bench
#   cargo build --release -p ray-bench
#   cargo test --release -p ray-gpu --no-run   (copy target/release/deps/{ops,model,device,mnist,ray_gpu}-* as test_*)
#   strip .devbin/*
