//! Counting the node's GPUs when `Config::num_gpus` is not set.
//!
//! With the `gpu` feature the GPUs are the wgpu adapters `ray-gpu` opens (so logical GPU `i` is
//! the device `ray::gpu::Device::for_gpu(i)` opens). Without it, ray does not link wgpu and
//! counts GPUs from what their kernel drivers expose, as Ray does from `/proc/driver/nvidia`:
//!
//! - NVIDIA GPUs: the entries of `/proc/driver/nvidia/gpus/` (one per GPU, named by PCI bus id);
//! - every other GPU with a DRM render node, `/sys/class/drm/renderD*` (AMD, Intel, ...), by the
//!   device the node belongs to.
//!
//! A GPU seen both ways counts once. Display-only devices (a server's BMC, a VM's VGA) have no
//! render node and do not count, nor do software renderers (lavapipe is not a device).

use std::collections::BTreeSet;
use std::path::Path;

/// The number of GPUs on this machine, from the kernel's device nodes.
#[cfg_attr(feature = "gpu", allow(dead_code))]
pub(crate) fn count_from_device_nodes() -> usize {
    count_under(Path::new("/"))
}

/// [`count_from_device_nodes`] with `/proc` and `/sys` under `root` (tests use a fixture tree).
#[cfg_attr(feature = "gpu", allow(dead_code))]
fn count_under(root: &Path) -> usize {
    let mut devices = BTreeSet::new();
    if let Ok(entries) = std::fs::read_dir(root.join("proc/driver/nvidia/gpus")) {
        for entry in entries.flatten() {
            // Directory names are PCI bus ids such as `0000:01:00.0`.
            devices.insert(entry.file_name().to_string_lossy().to_lowercase());
        }
    }
    if let Ok(entries) = std::fs::read_dir(root.join("sys/class/drm")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with("renderD") {
                continue;
            }
            let device = entry.path().join("device");
            let driver = std::fs::read_link(device.join("driver")).ok();
            let driver = driver
                .as_deref()
                .and_then(Path::file_name)
                .map(|d| d.to_string_lossy().into_owned());
            // vgem is a virtual buffer-sharing device, not a GPU.
            if driver.as_deref() == Some("vgem") {
                continue;
            }
            // The device's own directory is named by its bus id (PCI: `0000:01:00.0`).
            let id = std::fs::canonicalize(&device)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_lowercase()))
                .unwrap_or(name);
            devices.insert(id);
        }
    }
    devices.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ray-gpu-detect-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A PCI device directory with a render node pointing at it, as sysfs lays them out.
    fn render_node(root: &Path, node: &str, bus_id: &str, driver: &str) {
        let device = root.join("sys/devices/pci0000:00").join(bus_id);
        std::fs::create_dir_all(&device).unwrap();
        let drivers = root.join("sys/bus/pci/drivers").join(driver);
        std::fs::create_dir_all(&drivers).unwrap();
        symlink(&drivers, device.join("driver")).unwrap();
        let class = root.join("sys/class/drm").join(node);
        std::fs::create_dir_all(&class).unwrap();
        symlink(&device, class.join("device")).unwrap();
    }

    #[test]
    fn gpus_are_counted_once_from_nvidia_entries_and_render_nodes() {
        let root = tree("mixed");
        assert_eq!(count_under(&root), 0, "an empty machine has no GPU");
        for id in ["0000:01:00.0", "0000:02:00.0"] {
            std::fs::create_dir_all(root.join("proc/driver/nvidia/gpus").join(id)).unwrap();
        }
        // The first NVIDIA GPU also has a render node (nvidia-drm); an AMD GPU has only one.
        render_node(&root, "renderD128", "0000:01:00.0", "nvidia");
        render_node(&root, "renderD129", "0000:03:00.0", "amdgpu");
        // A display-only device has a card node but no render node; vgem is not a GPU.
        std::fs::create_dir_all(root.join("sys/class/drm/card0")).unwrap();
        render_node(&root, "renderD130", "vgem", "vgem");
        assert_eq!(count_under(&root), 3);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
