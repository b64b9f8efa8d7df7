//! One wgpu adapter, its device and the search pipelines.

use std::sync::Arc;

use parking_lot::Mutex;

use super::tile_plan::TilePlan;
use crate::{KernelError, Storage};

/// The two passes of `shaders/search.wgsl` for one storage type.
pub(crate) struct Pipelines {
    pub block_topk: wgpu::ComputePipeline,
    pub merge_blocks: wgpu::ComputePipeline,
}

pub struct WgpuDevice {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) plan: TilePlan,
    pub(crate) f32_pipelines: Pipelines,
    /// Present when the adapter has `shader-f16`: f16 shards are stored as f16.
    pub(crate) f16_pipelines: Option<Pipelines>,
    pub(crate) info: wgpu::AdapterInfo,
    /// Largest buffer one binding may cover: shards are split into chunks below it.
    pub(crate) max_binding_bytes: u64,
    /// An error wgpu raised outside any error scope. wgpu's default handler panics;
    /// needle keeps the message and reports it from the next wait instead.
    uncaptured: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for WgpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuDevice")
            .field("adapter", &self.info.name)
            .finish()
    }
}

fn unavailable(reason: impl Into<String>) -> KernelError {
    KernelError::BackendUnavailable {
        backend: "wgpu",
        reason: reason.into(),
    }
}

impl WgpuDevice {
    /// Opens the best adapter on the platform's native API. Hardware adapters are
    /// preferred (discrete, then integrated, then any); a software adapter is taken
    /// only when `allow_software`. Returns an error, never hangs, when none exists.
    pub fn open(allow_software: bool) -> Result<Arc<WgpuDevice>, KernelError> {
        let backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => 2,
            wgpu::DeviceType::Cpu => 3,
        };
        let best = adapters.into_iter().min_by_key(rank);
        let adapter = match best {
            None => return Err(unavailable("no Vulkan, Metal or DX12 adapter")),
            Some(a) if rank(&a) == 3 && !allow_software => {
                return Err(unavailable(format!(
                    "only a software adapter ({}), which is slower than the CPU backend",
                    a.get_info().name
                )))
            }
            Some(a) => a,
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let f16 = adapter.features().contains(wgpu::Features::SHADER_F16);
        let required_features = if f16 {
            wgpu::Features::SHADER_F16
        } else {
            wgpu::Features::empty()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("needle"),
            required_limits: limits.clone(),
            required_features,
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("adapter {} refused a device: {e}", info.name)))?;
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            *sink.lock() = Some(e.to_string());
        }));
        let plan = TilePlan::for_adapter(&limits, info.device_type == wgpu::DeviceType::Cpu);
        let f32_pipelines = pipelines(&device, &plan, false).map_err(|e| {
            unavailable(format!(
                "adapter {} refused the search shader: {e}",
                info.name
            ))
        })?;
        // An adapter that claims shader-f16 but cannot build the f16 shader keeps f16
        // collections as f32 instead of failing every search on them.
        let f16_pipelines = if f16 {
            pipelines(&device, &plan, true).ok()
        } else {
            None
        };
        let max_binding_bytes = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        Ok(Arc::new(WgpuDevice {
            device,
            queue,
            plan,
            f32_pipelines,
            f16_pipelines,
            info,
            max_binding_bytes,
            uncaptured,
        }))
    }

    /// Adapter name and API, e.g. `NVIDIA H100 (Vulkan, DiscreteGpu)`, and whether
    /// f16 collections are stored as f16 on it.
    pub fn describe(&self) -> String {
        let f16 = if self.f16_pipelines.is_some() {
            "f16 storage"
        } else {
            "no shader-f16: f16 collections kept as f32"
        };
        format!(
            "{} ({:?}, {:?}, {f16})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// What a shard asked to keep `storage` is kept as on this adapter.
    pub fn storage_for(&self, storage: Storage) -> Storage {
        match storage {
            Storage::F16 if self.f16_pipelines.is_some() => Storage::F16,
            _ => Storage::F32,
        }
    }

    pub(crate) fn pipelines(&self, storage: Storage) -> &Pipelines {
        match (storage, &self.f16_pipelines) {
            (Storage::F16, Some(p)) => p,
            _ => &self.f32_pipelines,
        }
    }

    /// Whether this is a software rasteriser such as lavapipe.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Blocks until the queue is idle, for at most 60 s: a wedged driver becomes an
    /// error, not a hung search.
    pub(crate) fn wait(&self) -> Result<(), KernelError> {
        self.wait_until(None)
    }

    /// As [`WgpuDevice::wait`], for one submission only: later ones keep running.
    pub(crate) fn wait_for(&self, submission: wgpu::SubmissionIndex) -> Result<(), KernelError> {
        self.wait_until(Some(submission))
    }

    fn wait_until(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<(), KernelError> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: submission,
                timeout: Some(std::time::Duration::from_secs(60)),
            })
            .map_err(|e| KernelError::device("waiting for the GPU", e))?;
        match self.uncaptured.lock().take() {
            Some(message) => Err(KernelError::Device {
                context: "wgpu",
                message,
            }),
            None => Ok(()),
        }
    }

    /// Runs `work` with wgpu's validation and out-of-memory errors captured and
    /// returned, so a buffer the adapter cannot allocate is an error, not a panic.
    pub(crate) fn checked<T>(
        &self,
        context: &'static str,
        work: impl FnOnce() -> Result<T, KernelError>,
    ) -> Result<T, KernelError> {
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let result = work();
        let invalid = pollster::block_on(validation.pop());
        let oom = pollster::block_on(out_of_memory.pop());
        match oom.or(invalid) {
            Some(e) => Err(KernelError::Device {
                context,
                message: e.to_string(),
            }),
            None => result,
        }
    }
}

/// The two passes for `plan`, or the validation error that refused them.
fn pipelines(device: &wgpu::Device, plan: &TilePlan, f16: bool) -> Result<Pipelines, String> {
    // A backend compiler refusing the shader is an internal error, not a validation one.
    let scopes = [
        wgpu::ErrorFilter::Validation,
        wgpu::ErrorFilter::Internal,
        wgpu::ErrorFilter::OutOfMemory,
    ]
    .map(|filter| device.push_error_scope(filter));
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(if f16 {
            "search.wgsl (f16)"
        } else {
            "search.wgsl"
        }),
        source: wgpu::ShaderSource::Wgsl(plan.shader_source(f16).into()),
    };
    // Bounds checks stay on; naga's loop bounding is turned off. Its counters make
    // every loop's trip count unknown to the driver, so constant-trip loops (the
    // tile's register blocking) are no longer unrolled: on lavapipe the search ran
    // 1.4x slower with them, and spent more of llvmpipe's per-invocation loop budget
    // (see search.rs, SOFTWARE_LOOP_BUDGET).
    // SAFETY: every loop in shaders/search.wgsl ends: each `for` steps a counter
    // towards a bound taken from the uniform parameters or the tile constants, and
    // `merge_if_full`'s doubling stops at a power of two no larger than CAP. Index
    // clamping stays on, so no read or write leaves its buffer either way.
    let checks = wgpu::ShaderRuntimeChecks {
        force_loop_bounding: false,
        ..wgpu::ShaderRuntimeChecks::checked()
    };
    let module = unsafe { device.create_shader_module_trusted(desc, checks) };
    let pipeline = |entry: &'static str| {
        device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        })
    };
    let built = Pipelines {
        block_topk: pipeline("block_topk"),
        merge_blocks: pipeline("merge_blocks"),
    };
    // Scopes pop innermost first; every one is popped, the first error is kept.
    let mut error = None;
    for scope in scopes.into_iter().rev() {
        if let Some(e) = pollster::block_on(scope.pop()) {
            error.get_or_insert(e.to_string());
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(built),
    }
}
