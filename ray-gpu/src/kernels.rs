//! The WGSL compute kernels (`src/shaders/*.wgsl`), compiled once per opened GPU, and the
//! host-side helpers that allocate buffers, bind them and record dispatches.

use wgpu::util::DeviceExt;

use crate::device::GpuContext;
use crate::error::{Error, Result};

/// Output block edge of one matmul workgroup (see `shaders/matmul.wgsl`).
pub(crate) const MATMUL_TILE: u32 = 128;
/// Invocations per workgroup of the element-wise kernels.
pub(crate) const ELEMENTWISE_WG: u32 = 256;

const PARAMS_WGSL: &str = include_str!("shaders/params.wgsl");
const REDUCE_WGSL: &str = include_str!("shaders/reduce.wgsl");

/// Uniform block of every kernel (32 bytes). Field meaning per kernel is documented in its
/// shader; the matmul kernel reads `u = [m, n, k, _]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    /// rows, cols, count, classes
    pub u: [u32; 4],
    /// scale, lr, unused, unused
    pub f: [f32; 4],
}

impl Params {
    pub(crate) fn new(rows: u32, cols: u32, count: u32, classes: u32) -> Self {
        Self {
            u: [rows, cols, count, classes],
            f: [0.0; 4],
        }
    }

    pub(crate) fn with_scale(mut self, scale: f32) -> Self {
        self.f[0] = scale;
        self
    }

    pub(crate) fn with_lr(mut self, lr: f32) -> Self {
        self.f[1] = lr;
        self
    }
}

/// All compute pipelines of one device.
pub(crate) struct Kernels {
    pub(crate) matmul: wgpu::ComputePipeline,
    pub(crate) matmul_tn: wgpu::ComputePipeline,
    pub(crate) add_bias: wgpu::ComputePipeline,
    pub(crate) softmax: wgpu::ComputePipeline,
    pub(crate) softmax_xent: wgpu::ComputePipeline,
    pub(crate) bias_grad: wgpu::ComputePipeline,
    pub(crate) sgd: wgpu::ComputePipeline,
    pub(crate) dense_logits: wgpu::ComputePipeline,
    pub(crate) dense_loss: wgpu::ComputePipeline,
    pub(crate) dense_backward: wgpu::ComputePipeline,
}

fn module(device: &wgpu::Device, label: &str, parts: &[&str]) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(parts.concat().into()),
    })
}

fn pipeline(
    device: &wgpu::Device,
    label: &str,
    module: &wgpu::ShaderModule,
    constants: &[(&str, f64)],
    zero_initialize_workgroup_memory: bool,
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: None,
        module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            zero_initialize_workgroup_memory,
        },
        cache: None,
    })
}

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let simple = |label: &str, src: &str| {
            let m = module(device, label, &[PARAMS_WGSL, src]);
            pipeline(device, label, &m, &[], true)
        };
        let row = |label: &str, src: &str| {
            let m = module(device, label, &[PARAMS_WGSL, REDUCE_WGSL, src]);
            pipeline(device, label, &m, &[], true)
        };
        let matmul_module = module(device, "matmul", &[include_str!("shaders/matmul.wgsl")]);
        // Every workgroup-memory word is written before it is read, so skip the zeroing prologue.
        let matmul = pipeline(
            device,
            "matmul",
            &matmul_module,
            &[("TRANSPOSE_LHS", 0.0)],
            false,
        );
        let matmul_tn = pipeline(
            device,
            "matmul_tn",
            &matmul_module,
            &[("TRANSPOSE_LHS", 1.0)],
            false,
        );
        Kernels {
            matmul,
            matmul_tn,
            add_bias: simple("add_bias", include_str!("shaders/add_bias.wgsl")),
            sgd: simple("sgd", include_str!("shaders/sgd.wgsl")),
            bias_grad: simple("bias_grad", include_str!("shaders/bias_grad.wgsl")),
            softmax: row("softmax", include_str!("shaders/softmax.wgsl")),
            softmax_xent: row("softmax_xent", include_str!("shaders/softmax_xent.wgsl")),
            dense_logits: simple("dense_logits", include_str!("shaders/dense_logits.wgsl")),
            dense_loss: simple("dense_loss", include_str!("shaders/dense_loss.wgsl")),
            dense_backward: simple(
                "dense_backward",
                include_str!("shaders/dense_backward.wgsl"),
            ),
        }
    }
}

/// One recorded dispatch: a pipeline, its bind group and the workgroup counts.
pub(crate) struct Dispatch<'a> {
    pub(crate) pipeline: &'a wgpu::ComputePipeline,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) groups: [u32; 3],
}

impl GpuContext {
    /// Bytes needed for `len` f32/u32 values, checked against the device's buffer limits.
    pub(crate) fn buffer_bytes(&self, op: &'static str, rows: usize, cols: usize) -> Result<u64> {
        let bytes = (rows as u64)
            .checked_mul(cols as u64)
            .and_then(|n| n.checked_mul(4));
        let limit = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size);
        match bytes {
            Some(b) if b <= limit => Ok(b),
            _ => Err(Error::Unsupported {
                op,
                detail: format!(
                    "a {rows}x{cols} f32 buffer exceeds the {limit}-byte storage buffer limit of {}",
                    self.describe()
                ),
            }),
        }
    }

    /// A storage buffer initialised with `data`.
    pub(crate) fn storage_init(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: data,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// An uninitialised (zero-filled by wgpu) storage buffer of `bytes` bytes.
    pub(crate) fn storage(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer holding `params`.
    pub(crate) fn uniform(&self, label: &str, params: Params) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Binds `buffers` to bindings 0, 1, 2, ... of group 0 of `pipeline`.
    pub(crate) fn bind(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Workgroups for a grid-stride kernel over `items` with `per_group` items per workgroup.
    pub(crate) fn groups_for(&self, items: usize, per_group: u32) -> u32 {
        let needed = items.div_ceil(per_group as usize).max(1);
        needed.min(self.limits.max_compute_workgroups_per_dimension as usize) as u32
    }

    /// Records `dispatches` into one compute pass of `encoder`.
    pub(crate) fn record(&self, encoder: &mut wgpu::CommandEncoder, dispatches: &[Dispatch<'_>]) {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("ray-gpu"),
            timestamp_writes: None,
        });
        for d in dispatches {
            pass.set_pipeline(d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
        }
    }

    /// Records `dispatches` into one command buffer and submits it (does not wait).
    pub(crate) fn submit(&self, dispatches: &[Dispatch<'_>]) -> wgpu::SubmissionIndex {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("ray-gpu"),
            });
        self.record(&mut encoder, dispatches);
        self.queue.submit([encoder.finish()])
    }

    /// Copies `bytes` bytes from the start of `buffer` back to the host, waiting for all work
    /// submitted before.
    pub(crate) fn read_bytes(
        &self,
        op: &'static str,
        buffer: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ray-gpu readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("ray-gpu readback"),
            });
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes);
        let index = self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |result| {
            // The receiver outlives this callback; a failed send only means nobody waits.
            let _ = tx.send(result);
        });
        self.wait_for(op, index)?;
        let mapped = rx
            .recv()
            .map_err(|_| self.gpu_error(op, "the buffer mapping callback never ran"))?;
        mapped.map_err(|err| self.gpu_error(op, &format!("mapping the buffer failed: {err}")))?;
        let data = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|err| self.gpu_error(op, &format!("reading the mapping failed: {err}")))?;
            view.to_vec()
        };
        staging.unmap();
        Ok(data)
    }

    /// Reads `len` f32 values from the start of `buffer`.
    pub(crate) fn read_f32(
        &self,
        op: &'static str,
        buffer: &wgpu::Buffer,
        len: usize,
    ) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(op, buffer, (len * 4) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    pub(crate) fn gpu_error(&self, op: &'static str, detail: &str) -> Error {
        Error::Gpu {
            device: self.describe(),
            detail: format!("{op}: {detail}"),
        }
    }
}
