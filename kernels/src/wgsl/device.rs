//! One wgpu adapter, its device and the search pipeline.

use std::sync::Arc;

use parking_lot::Mutex;

use crate::KernelError;

/// The WGSL source of the search shader.
const SHADER: &str = include_str!("../../../shaders/search.wgsl");

pub struct WgpuDevice {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) pipeline: wgpu::ComputePipeline,
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
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("needle"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("adapter {} refused a device: {e}", info.name)))?;
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            *sink.lock() = Some(e.to_string());
        }));
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("search.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("block_topk"),
            layout: None,
            module: &module,
            entry_point: Some("block_topk"),
            compilation_options: Default::default(),
            cache: None,
        });
        let max_binding_bytes = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        Ok(Arc::new(WgpuDevice {
            device,
            queue,
            pipeline,
            info,
            max_binding_bytes,
            uncaptured,
        }))
    }

    /// Adapter name and API, e.g. `NVIDIA H100 (Vulkan)`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Whether this is a software rasteriser such as lavapipe.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Blocks until the queue is idle, for at most 60 s: a wedged driver becomes an
    /// error, not a hung search.
    pub(crate) fn wait(&self) -> Result<(), KernelError> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: None,
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
