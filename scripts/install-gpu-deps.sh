#!/usr/bin/env bash
# Installs a Vulkan driver so that ray-gpu's WGSL compute kernels run on a machine without a GPU.
#
# On a fresh Debian bookworm machine (CI, a developer box) this brings Mesa's lavapipe, a software
# Vulkan implementation that runs on the CPU, plus the loader (libvulkan1) and EGL/GL bits that
# wgpu's GL backend falls back to. Idempotent: when a Vulkan ICD manifest is already present
# (/usr/share/vulkan/icd.d/*.json, or /etc/vulkan/icd.d/*.json where NVIDIA's driver puts its
# own; e.g. a real GPU driver or an earlier run) it does nothing. Must run as root (apt-get).
set -euo pipefail

icd_dir=/usr/share/vulkan/icd.d

icds() {
    compgen -G "${icd_dir}/*.json" || true
    compgen -G "/etc/vulkan/icd.d/*.json" || true
}

have_icd() {
    [ -n "$(icds)" ]
}

if have_icd; then
    echo "install-gpu-deps: Vulkan ICD present ($(icds | tr '\n' ' ')); nothing to do"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-gpu-deps: no Vulkan ICD manifest (looked in ${icd_dir} and /etc/vulkan/icd.d) and not root; run this script as root" >&2
    exit 1
fi

echo "install-gpu-deps: no Vulkan ICD manifest (looked in ${icd_dir} and /etc/vulkan/icd.d); installing Mesa (lavapipe) and the Vulkan loader"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    mesa-vulkan-drivers libvulkan1 libegl1 libegl-mesa0 libgl1-mesa-dri

if ! have_icd; then
    echo "install-gpu-deps: installation finished but still no ICD manifest in ${icd_dir}" >&2
    exit 1
fi
echo "install-gpu-deps: installed: $(icds | tr '\n' ' ')"
