//! Device selection: which wgpu adapter is "logical GPU i", opening it, and the CPU fallback.
//!
//! Adapters are enumerated on one backend only (Vulkan first, then Metal, DX12 and GL, taking the
//! first backend that has any), so the same physical device is never counted twice. Software
//! adapters such as lavapipe count when there is no hardware adapter, which gives GPU-less CI
//! machines one adapter; beside real GPUs they are left out. The order is stable: by PCI bus id
//! where the backend reports one, then by (vendor, device, name).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::kernels::Kernels;

/// Environment variable through which the runtime tells a GPU worker process its logical GPU
/// ids: comma-separated, e.g. `0` or `2,3`. Empty or missing means no GPU.
pub const GPU_IDS_ENV: &str = "RAY_RS_GPU_IDS";

/// Backends tried in this order; the first with at least one adapter is the one used.
const BACKEND_ORDER: [wgpu::Backends; 4] = [
    wgpu::Backends::VULKAN,
    wgpu::Backends::METAL,
    wgpu::Backends::DX12,
    wgpu::Backends::GL,
];

/// What kind of hardware an adapter is (wgpu's `DeviceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdapterKind {
    /// A discrete GPU with its own memory.
    DiscreteGpu,
    /// A GPU sharing memory with the CPU.
    IntegratedGpu,
    /// A virtualised GPU.
    VirtualGpu,
    /// A software implementation running on the CPU (lavapipe, llvmpipe, WARP).
    Software,
    /// Anything the driver did not classify.
    Other,
}

impl From<wgpu::DeviceType> for AdapterKind {
    fn from(t: wgpu::DeviceType) -> Self {
        match t {
            wgpu::DeviceType::DiscreteGpu => Self::DiscreteGpu,
            wgpu::DeviceType::IntegratedGpu => Self::IntegratedGpu,
            wgpu::DeviceType::VirtualGpu => Self::VirtualGpu,
            wgpu::DeviceType::Cpu => Self::Software,
            wgpu::DeviceType::Other => Self::Other,
        }
    }
}

/// Description of one adapter, in logical-GPU order (see [`adapters`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// Logical GPU id: the position in the stable order.
    pub logical_id: usize,
    /// Adapter name as the driver reports it, e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe (...)".
    pub name: String,
    /// Backend name ("Vulkan", "Gl", ...).
    pub backend: String,
    /// Hardware kind.
    pub kind: AdapterKind,
    /// PCI vendor id (or the backend's equivalent).
    pub vendor: u32,
    /// PCI device id (or the backend's equivalent).
    pub device: u32,
    /// PCI bus id such as `0000:01:00.0`, empty when the backend does not report one.
    pub pci_bus_id: String,
    /// Driver name and version, as reported.
    pub driver: String,
}

impl AdapterSummary {
    fn from_info(logical_id: usize, info: &wgpu::AdapterInfo) -> Self {
        let driver = match (info.driver.is_empty(), info.driver_info.is_empty()) {
            (false, false) => format!("{} {}", info.driver, info.driver_info),
            (false, true) => info.driver.clone(),
            (true, _) => info.driver_info.clone(),
        };
        Self {
            logical_id,
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            kind: info.device_type.into(),
            vendor: info.vendor,
            device: info.device,
            pci_bus_id: info.device_pci_bus_id.clone(),
            driver,
        }
    }
}

/// The enumeration, done once per process (creating a wgpu instance and asking the drivers is
/// slow, tens to hundreds of milliseconds).
struct Enumeration {
    adapters: Vec<wgpu::Adapter>,
    summaries: Vec<AdapterSummary>,
}

fn enumeration() -> &'static Enumeration {
    static ENUMERATION: OnceLock<Enumeration> = OnceLock::new();
    ENUMERATION.get_or_init(|| {
        let mut adapters = Vec::new();
        for backends in BACKEND_ORDER {
            if !wgpu::Instance::enabled_backend_features().contains(backends) {
                continue;
            }
            let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
                backends,
                flags: wgpu::InstanceFlags::empty().with_env(),
                ..wgpu::InstanceDescriptor::new_without_display_handle()
            });
            adapters = pollster::block_on(instance.enumerate_adapters(backends));
            if !adapters.is_empty() {
                break;
            }
        }
        let mut keyed: Vec<(wgpu::AdapterInfo, wgpu::Adapter)> =
            adapters.into_iter().map(|a| (a.get_info(), a)).collect();
        // Software adapters count only on machines without a hardware one: lavapipe stands in
        // for the GPU on CI, but must not show up as an extra GPU beside a real one.
        if keyed
            .iter()
            .any(|(info, _)| info.device_type != wgpu::DeviceType::Cpu)
        {
            keyed.retain(|(info, _)| info.device_type != wgpu::DeviceType::Cpu);
        }
        // Adapters with a PCI bus id first, ordered by it; the others by (vendor, device, name).
        keyed.sort_by(|(a, _), (b, _)| {
            (
                a.device_pci_bus_id.is_empty(),
                &a.device_pci_bus_id,
                a.vendor,
                a.device,
                &a.name,
            )
                .cmp(&(
                    b.device_pci_bus_id.is_empty(),
                    &b.device_pci_bus_id,
                    b.vendor,
                    b.device,
                    &b.name,
                ))
        });
        let summaries: Vec<AdapterSummary> = keyed
            .iter()
            .enumerate()
            .map(|(i, (info, _))| AdapterSummary::from_info(i, info))
            .collect();
        for s in &summaries {
            tracing::debug!(
                logical_id = s.logical_id,
                name = %s.name,
                backend = %s.backend,
                pci_bus_id = %s.pci_bus_id,
                "ray-gpu: adapter"
            );
        }
        Enumeration {
            adapters: keyed.into_iter().map(|(_, a)| a).collect(),
            summaries,
        }
    })
}

/// Number of GPU adapters on this machine, counted on a single backend (Vulkan first). A
/// software adapter such as lavapipe counts only when there is no hardware adapter. Logical GPU
/// ids are `0..adapter_count()`.
pub fn adapter_count() -> usize {
    enumeration().adapters.len()
}

/// The adapters in logical-GPU order.
pub fn adapters() -> &'static [AdapterSummary] {
    &enumeration().summaries
}

/// Parses the value of [`GPU_IDS_ENV`]: comma-separated non-negative integers, whitespace
/// around them ignored. Empty means none.
pub fn parse_gpu_ids(value: &str) -> std::result::Result<Vec<usize>, String> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<usize>()
                .map_err(|_| format!("{GPU_IDS_ENV}={value:?}: {part:?} is not a GPU id"))
        })
        .collect()
}

/// An opened GPU: the wgpu device and queue plus the compiled kernels.
pub(crate) struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) summary: AdapterSummary,
    pub(crate) limits: wgpu::Limits,
    pub(crate) kernels: Kernels,
    errors: Arc<Mutex<Vec<String>>>,
}

impl GpuContext {
    fn open(logical_id: usize) -> Result<Arc<GpuContext>> {
        let e = enumeration();
        let adapter = e
            .adapters
            .get(logical_id)
            .ok_or_else(|| Error::Unsupported {
                op: "Device::for_gpu",
                detail: format!(
                    "no GPU adapter for logical GPU {logical_id} ({} found)",
                    e.adapters.len()
                ),
            })?;
        let summary = e.summaries[logical_id].clone();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("ray-gpu"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|err| Error::Gpu {
            device: describe_summary(&summary),
            detail: format!("request_device failed: {err}"),
        })?;

        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        {
            let errors = Arc::clone(&errors);
            let name = summary.name.clone();
            device.on_uncaptured_error(Arc::new(move |err: wgpu::Error| {
                let msg = err.to_string();
                tracing::error!(adapter = %name, "ray-gpu: wgpu error: {msg}");
                lock(&errors).push(msg);
            }));
        }
        {
            let errors = Arc::clone(&errors);
            let name = summary.name.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if reason == wgpu::DeviceLostReason::Destroyed {
                    return;
                }
                let msg = format!("device lost ({reason:?}): {msg}");
                tracing::error!(adapter = %name, "ray-gpu: {msg}");
                lock(&errors).push(msg);
            });
        }
        let kernels = Kernels::new(&device);
        tracing::info!(
            logical_id,
            adapter = %summary.name,
            backend = %summary.backend,
            "ray-gpu: opened GPU"
        );
        let ctx = Arc::new(GpuContext {
            device,
            queue,
            summary,
            limits,
            kernels,
            errors,
        });
        ctx.check("Device::for_gpu")?;
        Ok(ctx)
    }

    /// Returns the first error wgpu reported since the last check, if any.
    pub(crate) fn check(&self, op: &'static str) -> Result<()> {
        let mut errors = lock(&self.errors);
        if errors.is_empty() {
            return Ok(());
        }
        let detail = format!("{op}: {}", errors.join("; "));
        errors.clear();
        Err(Error::Gpu {
            device: self.describe(),
            detail,
        })
    }

    pub(crate) fn describe(&self) -> String {
        describe_summary(&self.summary)
    }

    /// Blocks until all submitted work has finished.
    pub(crate) fn wait_idle(&self, op: &'static str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|err| Error::Gpu {
                device: self.describe(),
                detail: format!("{op}: waiting for the GPU failed: {err}"),
            })?;
        self.check(op)
    }

    /// Blocks until the given submission has finished.
    pub(crate) fn wait_for(&self, op: &'static str, index: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|err| Error::Gpu {
                device: self.describe(),
                detail: format!("{op}: waiting for the GPU failed: {err}"),
            })?;
        self.check(op)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn describe_summary(s: &AdapterSummary) -> String {
    format!("{} ({}, logical GPU {})", s.name, s.backend, s.logical_id)
}

/// Opens logical GPU `id` once per process and shares it afterwards.
fn open_shared(id: usize) -> Result<Arc<GpuContext>> {
    static OPENED: OnceLock<Mutex<HashMap<usize, Arc<GpuContext>>>> = OnceLock::new();
    let opened = OPENED.get_or_init(Mutex::default);
    // Holding the lock while opening keeps two threads from opening the same GPU twice.
    let mut map = lock(opened);
    if let Some(ctx) = map.get(&id) {
        return Ok(Arc::clone(ctx));
    }
    let ctx = GpuContext::open(id)?;
    map.insert(id, Arc::clone(&ctx));
    Ok(ctx)
}

#[derive(Clone)]
pub(crate) enum Backing {
    Cpu,
    Gpu(Arc<GpuContext>),
}

/// Where kernels run: one opened GPU adapter, or the CPU implementation of the same operations.
///
/// Cloning is cheap; clones share the GPU. Opening the same logical GPU twice in a process
/// returns the same underlying wgpu device.
#[derive(Clone)]
pub struct Device {
    pub(crate) backing: Backing,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.describe())
    }
}

impl Device {
    /// The CPU implementation, asked for explicitly (no warning).
    pub fn cpu() -> Device {
        Device {
            backing: Backing::Cpu,
        }
    }

    /// Opens logical GPU `id` (see [`adapters`] for the order), or returns an error saying why
    /// it cannot. Use this where a missing GPU must not be papered over.
    pub fn try_gpu(id: usize) -> Result<Device> {
        Ok(Device {
            backing: Backing::Gpu(open_shared(id)?),
        })
    }

    /// Opens logical GPU `id`. If there is no such adapter (or opening it fails) this returns the
    /// CPU implementation and logs one warning saying so, like TensorFlow's
    /// `allow_soft_placement=True`.
    pub fn for_gpu(id: usize) -> Device {
        match Self::try_gpu(id) {
            Ok(device) => device,
            Err(err) => {
                let why = match &err {
                    Error::Unsupported { detail, .. } => detail.clone(),
                    other => format!("opening logical GPU {id} failed: {other}"),
                };
                fallback_warning(&why)
            }
        }
    }

    /// Opens the first logical GPU listed in [`GPU_IDS_ENV`] (`RAY_RS_GPU_IDS`, set by the
    /// runtime in each GPU worker process). Empty, missing or unparsable means no GPU was
    /// assigned: the CPU implementation is returned with one warning.
    pub fn from_ray_env() -> Device {
        let value = std::env::var(GPU_IDS_ENV).unwrap_or_default();
        match parse_gpu_ids(&value) {
            Ok(ids) => match ids.first() {
                Some(&id) => Self::for_gpu(id),
                None => fallback_warning(&format!(
                    "{GPU_IDS_ENV} is empty or unset, so this process was given no GPU"
                )),
            },
            Err(msg) => fallback_warning(&msg),
        }
    }

    /// True when kernels run on a GPU adapter (software Vulkan included), false for the CPU
    /// implementation.
    pub fn is_gpu(&self) -> bool {
        matches!(self.backing, Backing::Gpu(_))
    }

    /// The adapter behind this device, `None` for the CPU implementation.
    pub fn adapter(&self) -> Option<&AdapterSummary> {
        match &self.backing {
            Backing::Cpu => None,
            Backing::Gpu(ctx) => Some(&ctx.summary),
        }
    }

    /// Human-readable description: adapter name, backend and logical id, or `"cpu"`.
    pub fn describe(&self) -> String {
        match &self.backing {
            Backing::Cpu => "cpu".to_string(),
            Backing::Gpu(ctx) => ctx.describe(),
        }
    }

    /// Blocks until every operation submitted on this device has finished on the GPU, and
    /// reports any error wgpu raised meanwhile. A no-op on the CPU.
    pub fn synchronize(&self) -> Result<()> {
        match &self.backing {
            Backing::Cpu => Ok(()),
            Backing::Gpu(ctx) => ctx.wait_idle("synchronize"),
        }
    }

    pub(crate) fn same_as(&self, other: &Backing) -> bool {
        match (&self.backing, other) {
            (Backing::Cpu, Backing::Cpu) => true,
            (Backing::Gpu(a), Backing::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

fn fallback_warning(why: &str) -> Device {
    let msg = format!(
        "ray-gpu: {why}; falling back to the CPU implementation \
         (like TensorFlow's allow_soft_placement=True)"
    );
    tracing::warn!("{msg}");
    eprintln!("{msg}");
    Device::cpu()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gpu_id_lists() {
        assert_eq!(parse_gpu_ids(""), Ok(vec![]));
        assert_eq!(parse_gpu_ids("  "), Ok(vec![]));
        assert_eq!(parse_gpu_ids("0"), Ok(vec![0]));
        assert_eq!(parse_gpu_ids("2, 3"), Ok(vec![2, 3]));
        let err = parse_gpu_ids("1,x").unwrap_err();
        assert!(err.contains("\"x\" is not a GPU id"), "{err}");
    }
}
